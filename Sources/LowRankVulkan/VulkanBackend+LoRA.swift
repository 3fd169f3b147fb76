import LowRankCore

/// `Shaders/lora_backward.comp`: `du` and `dB` (and DoRA's `dm`), each whole, in one dispatch.
struct LoRABackwardKernel: Kernel {
    /// `RC`: the rank columns one workgroup covers.
    enum RankBlock: Int, CaseIterable {
        case sixteen = 16, thirtyTwo = 32
        init(rank: Int) { self = rank <= 16 ? .sixteen : .thirtyTwo }
    }

    /// `DU_BM`: du's rows per workgroup, the dB pass's 64 or one per thread (256 / RC). Where
    /// T's blocks of 64 are fewer than d_out's, the du pass (every thread a sum over d_out) is the
    /// dispatch's long pole, and where its workgroups would also fill at most half of a GPU's
    /// compute units (`cores`, as split-K reckons them), one output per thread spreads it over
    /// 64 / (256 / RC) times as many; each output stays one thread's ordered sum, so the bits do
    /// not change. Not on a CPU-type device (`cores` nil): lavapipe runs a workgroup on one thread,
    /// and there the smaller blocks made the dispatch 2.5× slower (1,293 against 486 ms at
    /// T = 256, d_out = 4096, r = 16), for parallelism its few threads already had.
    enum DuRows: CaseIterable {
        case block, onePerThread

        init(t: Int, dOut: Int, rankBlocks: Int, cores: Int?) {
            let blocks = (t + 63) / 64
            self = if let cores, blocks < (dOut + 63) / 64, blocks * rankBlocks * 2 <= cores { .onePerThread } else { .block }
        }

        func rows(_ rankBlock: RankBlock) -> Int { self == .block ? 64 : 256 / rankBlock.rawValue }
    }

    /// `DORA`: G⊙g in the branch; `DORA_DM`: dm beside it.
    enum DoRA: CaseIterable {
        case normOnly, withMagnitude
    }

    struct Push: BitwiseCopyable {
        var t: UInt32
        var dOut: UInt32
        var r: UInt32
        var eps: Float
        var scale: Float
    }

    static let shader = Shader.loraBackward
    var g: DType
    var b: DType
    var u: DType
    var rankBlock: RankBlock
    var duRows: DuRows
    var dora: DoRA?
    /// dB and dm add onto the values they hold (a window of G's rows after the first).
    var accumulate: Bool

    var defines: [String: String] {
        var d = g.operandDefines("G") + b.operandDefines("B") + u.operandDefines("U")
            + ["RC": "\(rankBlock.rawValue)", "DU_BM": "\(duRows.rows(rankBlock))", "DORA": (dora != nil).define, "ACCUMULATE": accumulate.define]
        if let dora { d["DORA_DM"] = (dora == .withMagnitude).define }
        return d
    }

    static var variants: [LoRABackwardKernel] {
        let doras: [DoRA?] = [nil] + DoRA.allCases
        return RankBlock.allCases.flatMap { rankBlock in
            DuRows.allCases.flatMap { duRows in
                doras.flatMap { dora in
                    [false, true].flatMap { accumulate in
                        DType.cover(operands: 3).map { t in
                            LoRABackwardKernel(g: t[0], b: t[1], u: t[2], rankBlock: rankBlock, duRows: duRows, dora: dora, accumulate: accumulate)
                        }
                    }
                }
            }
        }
    }
}

extension VulkanBackend {
    /// x, W, A, B [, bias] -> y, u: `u = dropout(x)·Aᵀ` first, then one pass that writes
    /// `y = x·Wᵀ + b + s·u·Bᵀ` once, the LoRA term in the matmul's epilogue.
    func encodeLoRAForward(_ o: LoRAOptions, _ operands: LoRAForwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (x, w, a, b) = (operands.x, operands.w, operands.a, operands.b)
        let (y, u) = (outputs[0], outputs[1])
        let mask = DropoutMask(probability: o.dropout, seed: o.seed)
        try dispatchMatmul(MatmulCall(a: x, b: a, c: u, transposeB: true, dropout: (mask, .a)))
        if o.accumulate {
            try dispatchMatmul(MatmulCall(a: u, b: b, c: y, transposeB: true, alpha: o.scale, accumulate: true))
        } else {
            try dispatchMatmul(MatmulCall(a: x, b: w, c: y, transposeB: true, bias: operands.bias,
                                          second: (u, b, o.scale)))
        }
    }

    /// G, x, W, A, B, u -> dx, dA, dB: the branch gradients `du` and `dB` in one dispatch,
    /// `dA = duᵀ·dropout(x)`, and `dx = G·W + (du·A) ⊙ mask` in one pass, where it is wanted.
    func encodeLoRABackward(_ o: LoRAOptions, _ operands: LoRABackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (g, x, w, a, b, u) = (operands.gradient, operands.x, operands.w, operands.a, operands.b, operands.u)
        let (dx, dA, dB) = (outputs[0], outputs[1], outputs[2])
        let mask = DropoutMask(probability: o.dropout, seed: o.seed)
        let du = try scratch([x.shape[0], a.shape[0]])
        try encodeBranchGradients(g: g, b: b, u: u, du: du, dB: dB, scale: o.scale)
        try dispatchMatmul(MatmulCall(a: du, b: x, c: dA, transposeA: true, dropout: (mask, .b)))
        // No gradient flows through x (the first block's projections): dx is left unspecified.
        guard o.inputGradient else { return }
        if o.accumulate {
            try dispatchMatmul(MatmulCall(a: du, b: a, c: dx, accumulate: true, dropout: (mask, .product)))
        } else {
            try dispatchMatmul(MatmulCall(a: g, b: w, c: dx, second: (du, a, 1), dropout: (mask, .second)))
        }
    }

    /// DoRA's share of the branch-gradient pass: the column scale g, the norm n, and (when m is
    /// trainable) `inner` and the `dm` it produces.
    struct DoRABranch {
        var g: Tensor
        var norm: Tensor
        var magnitude: (inner: Tensor, dm: Tensor)?
    }

    /// `du = s·G·B` and `dB = s·Gᵀ·u` (with DoRA, G⊙g in both, and dm beside them) in one
    /// dispatch (`Shaders/lora_backward.comp`). Past one binding, G, u, du and inner are bound in
    /// windows of rows, and the windows add onto dB and dm in order, so the result stays deterministic.
    func encodeBranchGradients(g: Tensor, b: Tensor, u: Tensor, du: Tensor, dB: Tensor, scale: Float, dora: DoRABranch? = nil,
                               duRows chosenRows: LoRABackwardKernel.DuRows? = nil) throws {
        let t = g.shape[0], dOut = g.shape[1], r = b.shape[1]
        let rows = try branchWindowRows(g: g, u: u, dB: dB, inner: dora?.magnitude != nil)
        let rankBlock = LoRABackwardKernel.RankBlock(rank: r), rankBlocks = (r + rankBlock.rawValue - 1) / rankBlock.rawValue
        // Without a trainable magnitude the dm part reads and writes stand-ins.
        let standIns = dora != nil && dora?.magnitude == nil ? (try scratch([1]), try scratch([1])) : nil
        for first in stride(from: 0, to: t, by: rows) {
            let span = first..<min(first + rows, t)
            let duRows = chosenRows ?? .init(t: span.count, dOut: dOut, rankBlocks: rankBlocks, cores: info.kind == .cpu ? nil : splitKCores)
            let kernel = LoRABackwardKernel(g: g.dtype, b: b.dtype, u: u.dtype, rankBlock: rankBlock, duRows: duRows,
                                            dora: dora.map { $0.magnitude == nil ? .normOnly : .withMagnitude }, accumulate: first > 0)
            var bindings: [TensorBinding] = [.read(g, (first * dOut)..<(span.upperBound * dOut)), .read(b),
                                             .read(u, (first * r)..<(span.upperBound * r)),
                                             .write(du, (first * r)..<(span.upperBound * r)), .write(dB)]
            if let dora {
                if let (inner, dm) = dora.magnitude {
                    bindings += [.read(dora.g), .read(dora.norm), .read(inner, (first * dOut)..<(span.upperBound * dOut)), .write(dm)]
                } else {
                    bindings += [.read(dora.g), .read(dora.norm), .read(standIns!.0), .write(standIns!.1)]
                }
            }
            let rowBlocks = max((span.count + duRows.rows(rankBlock) - 1) / duRows.rows(rankBlock), (dOut + 63) / 64)
            try dispatch(kernel, bindings, push: .init(t: UInt32(span.count), dOut: UInt32(dOut), r: UInt32(r), eps: DoRAOptions.normEpsilon, scale: scale),
                         groups: (rowBlocks, rankBlocks, 2))
        }
    }

    /// Rows of G per window of the branch-gradient pass: all of them when every operand fits one
    /// binding, else a multiple of 128 rows (so that windows start on 256-byte boundaries in every
    /// operand) small enough that they do.
    private func branchWindowRows(g: Tensor, u: Tensor, dB: Tensor, inner: Bool) throws -> Int {
        let t = g.shape[0], dOut = g.shape[1], r = u.shape[1]
        // Bytes per row of each windowed binding (du's rows are f32 like inner's).
        let perRow = [dOut * g.dtype.byteSize, r * u.dtype.byteSize, r * 4, inner ? dOut * 4 : 0].max()!
        guard dB.byteCount <= maxBindingBytes else {
            throw LowRankError(.unsupported, "the LoRA branch gradient \(dB.descriptor) needs more than one binding on \(info.name)",
                               context: [("maxStorageBufferRange", "\(maxBindingBytes)")])
        }
        if t * perRow <= maxBindingBytes { return t }
        let rows = maxBindingBytes / perRow / 128 * 128
        guard rows > 0 else {
            throw LowRankError(.unsupported, "the LoRA branch gradients of \(g.descriptor) with r = \(r) need more than one binding per 128 rows on \(info.name)",
                               context: [("maxStorageBufferRange", "\(maxBindingBytes)")])
        }
        return rows
    }
}
