import LowRank
@testable import LowRankVulkan
import Testing

/// The tiled attention kernels (`Shaders/attention.comp`) against the CPU backend at shapes that
/// span several query and key tiles, with sequence boundaries inside tiles, grouped KV heads and
/// head dims 64, 128 and 256 (tiles of 32, 16, 8 or 4 rows on lavapipe's 32 KiB of shared memory),
/// forward and backward, with the validation layer and synchronization validation; packed runs of
/// rows (`AttentionOptions.packed`) likewise, sequences of one row and of several tiles among them.
@Suite("Flash attention")
struct FlashAttentionTests {
    typealias Shape = AttentionShape

    static let shapes = [
        Shape(rows: 74, sequence: 37, qHeads: 4, kvHeads: 2, headDim: 64),
        Shape(rows: 42, sequence: 21, qHeads: 3, kvHeads: 1, headDim: 128),
        Shape(rows: 26, sequence: 13, qHeads: 2, kvHeads: 2, headDim: 256),
        Shape(rows: 40, sequence: 20, qHeads: 4, kvHeads: 1, headDim: 72, dtype: .bf16),
        Shape(rows: 148, sequence: 74, qHeads: 4, kvHeads: 2, headDim: 64, packed: [9, 1, 37]),
        Shape(rows: 42, sequence: 42, qHeads: 3, kvHeads: 1, headDim: 128, packed: [5, 30]),
        Shape(rows: 40, sequence: 20, qHeads: 4, kvHeads: 1, headDim: 72, dtype: .bf16, packed: [3, 7]),
    ]

    /// out, logsumexp, dq, dk and dv in f32 within 1e-6 of the CPU backend's, relative to each
    /// tensor's largest value (both sum in f32, in different orders; measured: at most 2.4e-7), bf16
    /// results within one unit in the last place (measured: 1.1e-6); the backward run twice gives
    /// the same bits (no atomics).
    @Test(arguments: shapes)
    func matchesTheCPUBackend(_ s: Shape) throws {
        let a = try AttentionInputs(s)
        let want = try [a.out, a.lse] + a.backward(try BackendKind.cpu.open()).map { try $0.floats() }
        try onBackend(.vulkan) { backend in
            let got = try a.forward(backend) + a.backward(backend)
            // A bf16 result is rounded once on each backend: sums in other orders may round to a
            // neighbour, one unit in the last place (2⁻⁷ of the largest value at most).
            let bounds = s.dtype == .f32 ? [1e-6, 1e-6, 1e-6, 1e-6, 1e-6] : [8e-3, 1e-6, 8e-3, 8e-3, 8e-3]
            for (i, name) in ["out", "logsumexp", "dq", "dk", "dv"].enumerated() {
                let error = relativeError(try got[i].floats(), want[i].map(Double.init))
                #expect(error <= bounds[i], "\(name) at \(s.testDescription): \(error)")
            }
            let again = try a.backward(backend)
            for i in 0..<3 { #expect(try again[i].floats() == got[i + 2].floats(), "backward output \(i) twice") }
        }
    }

    /// The tile the host picks for every head dim up to 256 and lavapipe's 32 KiB, 48 KiB and
    /// 64 KiB of shared memory (and more) is one of the variants `ShaderTests` compiles, fits, and is
    /// the largest that fits; a head of 257 columns has none.
    @Test func tilesFitTheDeviceAndAreCompiledVariants() {
        let compiled = Set(AttentionKernel.variants.filter { !$0.packed }.map { [$0.pass] as [AnyHashable] + [$0.tile] })
        let packed = Set(AttentionKernel.variants.filter(\.packed).map { [$0.pass] as [AnyHashable] + [$0.tile] })
        for shared in [32768, 49152, 65536] {
            for pass in AttentionKernel.Pass.allCases {
                for headDim in 1...256 {
                    guard let tile = AttentionKernel.Tile.largest(headDim: headDim, pass: pass, sharedBytes: shared) else {
                        Issue.record("no tile for head dim \(headDim), \(pass), \(shared) bytes"); continue
                    }
                    #expect(compiled.contains([pass, tile]), "\(tile) for \(pass) is not a compiled variant")
                    #expect(pass == .cachedForward || packed.contains([pass, tile]), "\(tile) for \(pass) is not a compiled packed variant")
                    #expect(tile.sharedBytes(pass) <= shared && tile.headDimMax >= headDim)
                    let larger = AttentionKernel.Tile(block: tile.block * 2, headDimMax: tile.headDimMax)
                    #expect(tile.block == AttentionKernel.Tile.blocks.first || larger.sharedBytes(pass) > shared)
                }
                #expect(AttentionKernel.Tile.largest(headDim: 257, pass: pass, sharedBytes: shared) == nil)
            }
        }
    }

    /// A head wider than 256 columns is a clear error on the device, naming the kernel and the head.
    @Test func headDimBeyondTheTilesIsAClearError() throws {
        try onBackend(.vulkan) { backend in
            let (t, d) = (2, 257)
            let q = try Tensor(randomValues(t * d, seed: 310), shape: [t, 1, d], on: backend)
            #expect(backend.unsupportedReason(.attention(AttentionOptions(sequenceLength: t)), inputs: [q.descriptor, q.descriptor, q.descriptor])?
                .contains("257") == true)
            do {
                _ = try Ops.execute(.attention(AttentionOptions(sequenceLength: t)), [q, q, q])
                Issue.record("a head of 257 columns ran")
            } catch let error as LowRankError {
                #expect("\(error)".contains("attention.comp") && "\(error)".contains("257"), "\(error)")
            }
        }
    }
}
