import CBFloat16GEMM
import LowRankCore

/// A tensor attention's block products read as their B operand: its f32 elements, and under
/// bfloat16 products a copy rounded to bfloat16 (to nearest even) once per op.
struct AttentionOperand {
    let floats: UnsafeMutablePointer<Float>
    let bfloat16: UnsafeMutablePointer<UInt16>?
}

/// One thread's buffers for bfloat16 block products: op(A) packed, a block of q and one of G
/// packed once and read against every key block, and B's panels.
struct AttentionProductScratch {
    let packed, query, gradient: UnsafeMutablePointer<UInt32>
    let workspace: UnsafeMutablePointer<UInt32>
}

/// Attention's block products (`QKᵀ`, `P·V`, and backward's `G·Vᵀ`, `Pᵀ·G`, `dSᵀ·q`, `dS·k`): f32
/// sgemm, or, under `medium` for a bfloat16 model (`AttentionOptions.computeDType`), bfloat16 products
/// with f32 sums as PyTorch's CPU flash attention computes that model's bfloat16 q, k and v: the A
/// side (a block of q or G, P or dS) rounded to bfloat16 as it is packed, the B side read from its
/// bfloat16 copy (`Sources/CBFloat16GEMM`'s kernel, one call per block on the block's thread).
extension CPUBackend {
    /// Whether attention with these options multiplies in bfloat16.
    func attentionRoundsToBFloat16(_ o: AttentionOptions) -> Bool {
        o.computeDType == .bf16 && matmulPrecision == .medium && Self.hasBFloat16DotProducts
    }

    /// `body` gets each of `tensors` (f32, `counts[i]` elements) as an operand, with a bfloat16 copy when `bfloat16`.
    func withAttentionOperands(_ tensors: [UnsafeMutablePointer<Float>], counts: [Int], bfloat16: Bool, _ body: ([AttentionOperand]) -> Void) {
        guard bfloat16 else { return body(tensors.map { AttentionOperand(floats: $0, bfloat16: nil) }) }
        let offsets = counts.reduce(into: [0]) { $0.append($0.last! + ($1 + 1) / 2 * 2) }
        withScratch(offsets.last! / 2) { floats in
            let copies = UnsafeMutableRawPointer(floats).assumingMemoryBound(to: UInt16.self)
            for (i, tensor) in tensors.enumerated() {
                parallelFor(counts[i]) { r in
                    convertFromFloat(tensor + r.lowerBound, count: r.count, dtype: .bf16, into: copies + offsets[i] + r.lowerBound)
                }
            }
            body(tensors.indices.map { AttentionOperand(floats: tensors[$0], bfloat16: copies + offsets[$0]) })
        }
    }

    /// One thread's scratch for products whose op(A) is at most `rows × extent` and op(B) at most
    /// `extent × extent`; nil for f32 products. B's workspace is sized to those panels, not the
    /// kernel's whole block (512 KiB, which a thread's allocator mapped and faulted in afresh each op).
    func withAttentionScratch(bfloat16: Bool, rows: Int, extent: Int, _ body: (AttentionProductScratch?) -> Void) {
        guard bfloat16 else { return body(nil) }
        let tile = Int(lowrank_bf16_tile_columns())
        let packedCount = lowrank_bf16_packed_a_count(Int32(rows), Int32(extent)), workspaceCount = (extent + tile - 1) / tile * tile * ((extent + 1) / 2)
        withScratch(3 * packedCount + workspaceCount) { floats in
            let words = UnsafeMutableRawPointer(floats).assumingMemoryBound(to: UInt32.self)
            body(AttentionProductScratch(packed: words, query: words + packedCount, gradient: words + 2 * packedCount, workspace: words + 3 * packedCount))
        }
    }

    /// Rounds op(A) (`m × k`, rows `lda` apart) to bfloat16 into `packed`, the layout `blockProduct` multiplies.
    func packBlock(_ a: UnsafePointer<Float>, m: Int, k: Int, lda: Int, into packed: UnsafeMutablePointer<UInt32>, transpose: Bool = false) {
        let strips = (m + Int(lowrank_bf16_strip_rows()) - 1) / Int(lowrank_bf16_strip_rows())
        lowrank_bf16_pack_a(transpose ? 1 : 0, Int32(m), Int32(k), a, Int32(lda), 0, Int32(strips), packed)
    }

    /// `C[m, n] = alpha·op(A)·op(B) + beta·C` with B `b`'s elements from `offset` on, on the calling
    /// thread (sgemm's split does not start for a block); `strides` as `sgemm`'s. `packedA`: op(A)
    /// already packed by `packBlock` (bfloat16 products only).
    func blockProduct(_ a: UnsafePointer<Float>, transpose ta: Bool, _ b: AttentionOperand, at offset: Int, transpose tb: Bool,
                      _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, alpha: Float, beta: Float, strides: (a: Int, b: Int, c: Int),
                      scratch: AttentionProductScratch?, packedA: UnsafePointer<UInt32>? = nil) {
        guard let scratch, let bfloat16 = b.bfloat16, m > 0, n > 0, k > 0 else {
            return sgemm(a, transpose: ta, b.floats + offset, transpose: tb, c, m: m, n: n, k: k, alpha: alpha, beta: beta, strides: strides)
        }
        if packedA == nil { packBlock(a, m: m, k: k, lda: strides.a, into: scratch.packed, transpose: ta) }
        lowrank_bf16_gemm_columns(tb ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, packedA ?? UnsafePointer(scratch.packed), bfloat16 + offset,
                                  Int32(strides.b), beta, c, Int32(strides.c), scratch.workspace)
    }
}
