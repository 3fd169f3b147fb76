import Foundation
import LowRank
@testable import LowRankVulkan
import Testing

/// The cooperative-matrix flash attention (`Shaders/attention_coopmat.comp`): its tiles and path choice
/// without such a device, and its forward and backward against the CPU backend on a device that has
/// cooperative matrices (elsewhere those tests are cancelled; `tools/coopmat-check.sh --swift-tests
/// Coopmat` runs them on Debian sid's lavapipe).
@Suite struct CoopmatAttentionTests {
    private static let rdna3 = VulkanDeviceInfo.CooperativeMatrixShape(m: 16, n: 16, k: 16, a: "f16", b: "f16", c: "f32", result: "f32",
                                                                       saturating: false, scope: "subgroup")
    private static let lavapipe = VulkanDeviceInfo.CooperativeMatrixShape(m: 8, n: 8, k: 8, a: "f16", b: "f16", c: "f32", result: "f32",
                                                                          saturating: false, scope: "subgroup")

    /// The largest block that fits the device and the budget (RDNA3's 12 subgroups per SIMD), else the
    /// smallest that fits the device: every pass and head on RDNA3's 64 KiB (what `tools/isa-report.sh`
    /// measures), all on 16 rows there; a matrix side that does not divide 16 rows has none.
    @Test func tilesAreTheLargestThatFit() {
        for shared in [32768, 49152, 65536] {
            for shape in [Self.rdna3, Self.lavapipe] {
                for pass in AttentionCoopmatKernel.Pass.allCases {
                    let limit = min(shared, AttentionCoopmatKernel.Tile.sharedBudget)
                    for headDimMax in AttentionKernel.Tile.headDims {
                        guard let tile = AttentionCoopmatKernel.Tile.largest(pass: pass, headDimMax: headDimMax, shape: shape, subgroupSize: 32,
                                                                              sharedBytes: shared) else {
                            #expect(shared < 65536, "no tile for \(pass), head ≤ \(headDimMax) in 64 KiB")
                            continue
                        }
                        var larger = tile
                        larger.block *= 2
                        #expect(tile.sharedBytes(pass) <= shared && tile.workgroupSize == 128)
                        if tile.sharedBytes(pass) <= limit {
                            #expect(tile.block == AttentionCoopmatKernel.Tile.blocks.first || larger.sharedBytes(pass) > limit)
                        } else {
                            #expect(tile.block == AttentionCoopmatKernel.Tile.blocks.last)
                        }
                    }
                }
            }
        }
        for headDimMax in AttentionKernel.Tile.headDims {
            let forward = AttentionCoopmatKernel.Tile.largest(pass: .forward, headDimMax: headDimMax, shape: Self.rdna3, subgroupSize: 64, sharedBytes: 65536)
            #expect(forward?.block == 16 && forward?.keys(.forward) == 64, "forward, head ≤ \(headDimMax): \(String(describing: forward))")
            for pass in [AttentionCoopmatKernel.Pass.queryGradient, .keyValueGradient] {
                let tile = AttentionCoopmatKernel.Tile.largest(pass: pass, headDimMax: headDimMax, shape: Self.rdna3, subgroupSize: 64, sharedBytes: 65536)
                #expect(tile?.block == 16, "\(pass), head ≤ \(headDimMax): \(String(describing: tile))")
            }
        }
        let wide = AttentionCoopmatKernel.Tile.largest(pass: .keyValueGradient, headDimMax: 256, shape: Self.rdna3, subgroupSize: 64, sharedBytes: 65536)
        #expect(wide?.block == 16 && wide?.description == "16 rows in 16×16×16, head ≤ 256")
        var odd = Self.rdna3
        odd.k = 32
        #expect(AttentionCoopmatKernel.Tile.largest(pass: .forward, headDimMax: 64, shape: odd, subgroupSize: 64, sharedBytes: 65536) == nil)
        // Every variant has its RDNA3 tile (the constants the machine-code report compiles it with).
        #expect(AttentionCoopmatKernel.variants.allSatisfy { $0.measuredSpecialization.count == AttentionCoopmatKernel.Constants.names.count })
    }

    /// Without cooperative matrices (bookworm's lavapipe) attention stays on the scalar kernel.
    @Test func devicesWithoutCooperativeMatricesKeepTheScalarKernel() throws {
        let shared = try #require(try BackendKind.vulkan.open() as? VulkanBackend)
        guard case .failure = shared.coopmat else { try Test.cancel("\(shared.info.name) has cooperative matrices") }
        #expect(AttentionCoopmatKernel.Pass.allCases.allSatisfy { shared.attentionCoopmatTile($0, headDim: 64, dtypes: [.f16, .f16, .f16]) == nil })
    }

    typealias Shape = AttentionShape

    /// f32 tensors hold f16 values, so that staging them as f16 is exact (as it is for f16, and for
    /// bf16 within f16's range) and the bound below holds for every dtype.
    private static func values(_ s: Shape) -> DType { s.dtype == .f32 ? .f16 : s.dtype }

    /// Sequences that end inside tiles (lavapipe's: 8×8×8 matrices, subgroups of 8, 32 KiB, so 32 or 16 rows
    /// forward, one or two invocations a softmax row, and 16 backward), grouped heads, the fixtures' head of 8, heads
    /// of 64 and 128 and one of 72 (columns beyond the head in the staged tiles); f32 and bf16 operands
    /// under `MatmulPrecision.high` (staged as f16), their outputs in their dtype; packed rows (`AttentionOptions.packed`,
    /// FlashAttentionTests' shapes): sequences of one row and of several tiles, starting inside tiles, so that query
    /// tiles start after whole key tiles (the dk/dv pass's query tiles end there) and see none of some rows' keys.
    static let shapes = [
        Shape(rows: 74, sequence: 37, qHeads: 4, kvHeads: 2, headDim: 64, dtype: .f16),
        Shape(rows: 42, sequence: 21, qHeads: 3, kvHeads: 1, headDim: 128, dtype: .f16),
        Shape(rows: 150, sequence: 75, qHeads: 4, kvHeads: 2, headDim: 8, dtype: .f16),
        Shape(rows: 40, sequence: 20, qHeads: 4, kvHeads: 1, headDim: 72, dtype: .f16),
        Shape(rows: 51, sequence: 17, qHeads: 2, kvHeads: 2, headDim: 64, dtype: .f32),
        Shape(rows: 45, sequence: 45, qHeads: 2, kvHeads: 1, headDim: 64, dtype: .bf16),
        Shape(rows: 148, sequence: 74, qHeads: 4, kvHeads: 2, headDim: 64, dtype: .f16, packed: [9, 1, 37]),
        Shape(rows: 42, sequence: 42, qHeads: 3, kvHeads: 1, headDim: 128, dtype: .f16, packed: [5, 30]),
        Shape(rows: 40, sequence: 20, qHeads: 4, kvHeads: 1, headDim: 72, dtype: .bf16, packed: [3, 7]),
    ]

    /// out, logsumexp, dq, dk and dv against the CPU backend (f32 sums of the same values): each element
    /// within 2⁻¹⁰ of its magnitude (Σ p·|v| for out; Σ |dS|·|k|, Σ |dS|·|q| and Σ p·|G| for the
    /// gradients, from a float64 recomputation) plus a unit in the last place of its value (2⁻¹⁰ for f16
    /// and f32, 2⁻⁷ for bf16: its own rounding to a 16-bit output against the CPU's) and 2⁻²⁰ of the tensor's largest (f32 sums in other orders, f16 subnormals): P and
    /// dS are rounded to f16 (2⁻¹¹ each) to enter their products, whose f16 operands multiply exactly into
    /// f32 sums. The logsumexp is the f32 path's: within 2⁻²⁰ of the largest. The backward run twice gives
    /// the same bits.
    @Test(arguments: shapes)
    func matchesTheCPUBackend(_ s: Shape) throws {
        let shared = try #require(try BackendKind.vulkan.open() as? VulkanBackend)
        guard case .success = shared.coopmat else { try Test.cancel("\(shared.info.name): no cooperative matrices") }
        let backend = try VulkanBackend(instance: shared.instance, index: shared.info.index)
        backend.matmulPrecision = s.dtype == .f16 ? .highest : .high
        for pass in AttentionCoopmatKernel.Pass.allCases {
            #expect(backend.attentionCoopmatTile(pass, headDim: s.headDim, dtypes: Array(repeating: s.dtype, count: 5)) != nil, "\(pass) is not on the coopmat kernel")
        }
        let a = try AttentionInputs(s, values: Self.values(s))
        let want = try [a.out, a.lse] + a.backward(try BackendKind.cpu.open()).map { try $0.floats() }
        let got = try (a.forward(backend) + a.backward(backend)).map { try $0.floats() }
        let again = try a.backward(backend).map { try $0.floats() }
        #expect(again == Array(got[2...]), "the backward run twice differs")
        // One unit in the last place of a 16-bit output (the CPU's rounding and the device's may differ by one).
        let rounding = s.dtype == .bf16 ? 0x1p-7 : 0x1p-10
        let magnitudes = Self.magnitudes(s, a)
        for (i, name) in ["out", "logsumexp", "dq", "dk", "dv"].enumerated() {
            let largest = want[i].map { abs(Double($0)) }.max() ?? 0
            var worst = 0.0
            for e in want[i].indices {
                let bound = 0x1p-10 * magnitudes[i][e] + rounding * abs(Double(want[i][e])) + 0x1p-20 * largest
                worst = max(worst, abs(Double(got[i][e]) - Double(want[i][e])) / bound)
            }
            #expect(worst <= 1, "\(name) at \(s.testDescription): \(worst) of its bound")
        }
        try backend.synchronize()
        let messages = try backend.drainValidationMessages()
        #expect(messages.isEmpty, "validation messages:\n\(messages.joined(separator: "\n"))")
    }

    /// Per element of out, logsumexp (none: zeros), dq, dk and dv, the sum of the magnitudes of the terms
    /// that enter it through a product with a rounded P or dS, in float64.
    private static func magnitudes(_ s: Shape, _ a: AttentionInputs) -> [[Double]] {
        let (q, k, v, g, out, lse) = (a.q, a.k, a.v, a.g, a.out, a.lse)
        let (d, group, scale) = (s.headDim, s.qHeads / s.kvHeads, Double(a.options.scale(headDim: s.headDim)))
        var outMag = [Double](repeating: 0, count: q.count), dq = outMag, dk = [Double](repeating: 0, count: k.count), dv = dk
        for t in 0..<s.rows {
            for h in 0..<s.qHeads {
                let kh = h / group, qi = (t * s.qHeads + h) * d
                var delta = 0.0
                for c in 0..<d { delta += Double(g[qi + c]) * Double(out[qi + c]) }
                for j in (a.starts.map { Int($0[t]) } ?? t / s.sequence * s.sequence)...t {
                    let ki = (j * s.kvHeads + kh) * d
                    var score = 0.0, dp = 0.0
                    for c in 0..<d {
                        score += Double(q[qi + c]) * Double(k[ki + c])
                        dp += Double(g[qi + c]) * Double(v[ki + c])
                    }
                    let p = exp(score * scale - Double(lse[t * s.qHeads + h])), ds = abs(p * (dp - delta) * scale)
                    for c in 0..<d {
                        outMag[qi + c] += p * abs(Double(v[ki + c]))
                        dq[qi + c] += ds * abs(Double(k[ki + c]))
                        dk[ki + c] += ds * abs(Double(q[qi + c]))
                        dv[ki + c] += p * abs(Double(g[qi + c]))
                    }
                }
            }
        }
        return [outMag, [Double](repeating: 0, count: lse.count), dq, dk, dv]
    }
}
