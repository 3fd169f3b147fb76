import CBFloat16GEMM
import Dispatch
import LowRankCore
import Synchronization

/// The register tiles of a product's columns not yet taken, shared by its threads. Each take is
/// a share of what is left (guided scheduling): chunks start wide, each packing whole panels of W,
/// and shrink to one tile at the end, so that the threads finish within about a tile of each other,
/// and a thread slowed by another process on its core takes less rather than the others waiting for it.
final class TileCounter: Sendable {
    private let next = Atomic<Int>(0)
    let tiles: Int, share: Int

    /// Each take is at most 1/`share` of the tiles left.
    init(tiles: Int, share: Int) { (self.tiles, self.share) = (tiles, share) }

    /// The next chunk of tiles, or nil when none is left.
    func take() -> Range<Int>? {
        var first = next.load(ordering: .relaxed)
        while first < tiles {
            let last = first + Swift.max(1, (tiles - first) / share)
            let (exchanged, original) = next.compareExchange(expected: first, desired: last, ordering: .relaxed)
            if exchanged { return first..<last }
            first = original
        }
        return nil
    }
}

/// The `medium` matmul precision on the CPU, PyTorch's for a bfloat16 model's frozen weights: a
/// bfloat16 W multiplies activations rounded to bfloat16 (to nearest even, once per
/// product, while they are packed), every sum in f32 (VDPBF16PS, `Sources/CBFloat16GEMM`). The
/// adapters' own products, the DoRA norm's `A·Wᵀ` and every reduction stay f32; f16 and quantized
/// weights are widened to f32 as before (no f16 dot product here), and f32 weights go to sgemm.
///
/// Bound: each product element differs from the f32 one by at most `2⁻⁸·Σ|a_k·w_k|` (the rounding
/// of A) plus f32 summation error (`BFloat16ProductTests`).
extension CPUBackend {
    /// A thread's chunk of a product's columns is at most 1/(this × threads) of the tiles left.
    static let chunkShare = 2

    /// Whether this CPU has AVX-512 BF16 (else `medium` computes as `highest`).
    public static let hasBFloat16DotProducts = lowrank_bf16_gemm_supported() != 0

    /// What `weightProduct` does with A when W is bfloat16.
    enum ActivationPrecision {
        /// A rounded to bfloat16 under `medium`: the frozen layer's products.
        case weight
        /// A kept in f32 (W widened): products that feed a norm.
        case f32
    }

    /// Whether a product of A with `w` rounds A to bfloat16.
    func roundsActivations(for w: Tensor, _ precision: ActivationPrecision) -> Bool {
        precision == .weight && w.dtype == .bf16 && w.shape.count > 0 && Self.hasBFloat16DotProducts && matmulPrecision == .medium
    }

    /// `C[m, n] = alpha·op(A)·op(W) + beta·C` for a bfloat16 W `[rows, columns]` (row-major, as
    /// stored): op(A) packed once into bfloat16 strips by all threads, then the threads take chunks
    /// of C's columns (whole register tiles, `TileCounter`) in turn, each packing its own panels of W.
    func bfloat16Product(_ a: UnsafePointer<Float>, transposeA: Bool, m: Int, _ b: UnsafePointer<UInt16>, rows: Int, columns: Int,
                         transposeW: Bool, _ c: UnsafeMutablePointer<Float>, alpha: Float, beta: Float) {
        let (n, k) = transposeW ? (rows, columns) : (columns, rows)
        guard m > 0 else { return }
        let stripRows = Int(lowrank_bf16_strip_rows()), tileColumns = Int(lowrank_bf16_tile_columns())
        let strips = (m + stripRows - 1) / stripRows, tiles = (n + tileColumns - 1) / tileColumns
        let packedCount = lowrank_bf16_packed_a_count(Int32(m), Int32(k)), workspaceCount = lowrank_bf16_workspace_count()
        withScratch(packedCount) { packedFloats in
            let packed = UnsafeMutableRawPointer(packedFloats).assumingMemoryBound(to: UInt32.self)
            parallelFor(strips, minimumPerThread: 4) { s in
                lowrank_bf16_pack_a(transposeA ? 1 : 0, Int32(m), Int32(k), a, Int32(transposeA ? m : k),
                                    Int32(s.lowerBound), Int32(s.upperBound), packed)
            }
            let workers = Swift.min(threads, tiles), next = TileCounter(tiles: tiles, share: Self.chunkShare * workers)
            withScratch(workers * workspaceCount) { workspaces in
                let body = UncheckedSendable { (worker: Int) in
                    let workspace = UnsafeMutableRawPointer(workspaces + worker * workspaceCount).assumingMemoryBound(to: UInt32.self)
                    while let chunk = next.take() {
                        let first = chunk.lowerBound * tileColumns, last = Swift.min(n, chunk.upperBound * tileColumns)
                        lowrank_bf16_gemm_columns(transposeW ? 1 : 0, Int32(m), Int32(last - first), Int32(k), alpha, packed,
                                                  b + (transposeW ? first * columns : first), Int32(columns), beta, c + first,
                                                  Int32(n), workspace)
                    }
                }
                if workers == 1 { body.value(0) } else { DispatchQueue.concurrentPerform(iterations: workers) { body.value($0) } }
            }
        }
    }
}
