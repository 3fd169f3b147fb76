import LowRankCore

/// `Shaders/lora_backward.comp`: partial sums of `du`, `dB` (and DoRA's `dm`) from one read of G.
struct LoRABackwardKernel: Kernel {
    /// `RC`: the rank columns one workgroup covers.
    enum RankBlock: Int, CaseIterable {
        case sixteen = 16, thirtyTwo = 32
        init(rank: Int) { self = rank <= 16 ? .sixteen : .thirtyTwo }
    }

    /// `DORA`: G⊙g in the branch; `DORA_DM`: dm's partial sums beside it.
    enum DoRA: CaseIterable {
        case normOnly, withMagnitude
    }

    struct Push: BitwiseCopyable {
        var t: UInt32
        var dOut: UInt32
        var r: UInt32
        var eps: Float
    }

    static let shader = Shader.loraBackward
    var g: DType
    var b: DType
    var u: DType
    var rankBlock: RankBlock
    var dora: DoRA?

    var defines: [String: String] {
        var d = g.operandDefines("G") + b.operandDefines("B") + u.operandDefines("U") + ["RC": "\(rankBlock.rawValue)", "DORA": (dora != nil).define]
        if let dora { d["DORA_DM"] = (dora == .withMagnitude).define }
        return d
    }

    static var variants: [LoRABackwardKernel] {
        let doras: [DoRA?] = [nil] + DoRA.allCases
        return RankBlock.allCases.flatMap { rankBlock in
            doras.flatMap { dora in
                DType.cover(operands: 3).map { t in LoRABackwardKernel(g: t[0], b: t[1], u: t[2], rankBlock: rankBlock, dora: dora) }
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

    /// G, x, W, A, B, u -> dx, dA, dB: the branch gradients `du` and `dB` from one read of G,
    /// `dA = duᵀ·dropout(x)`, and `dx = G·W + (du·A) ⊙ mask` in one pass.
    func encodeLoRABackward(_ o: LoRAOptions, _ operands: LoRABackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (g, x, w, a, b, u) = (operands.gradient, operands.x, operands.w, operands.a, operands.b, operands.u)
        let (dx, dA, dB) = (outputs[0], outputs[1], outputs[2])
        let mask = DropoutMask(probability: o.dropout, seed: o.seed)
        let du = try scratch([x.shape[0], a.shape[0]])
        try encodeBranchGradients(g: g, b: b, u: u, du: du, dB: dB, scale: o.scale)
        try dispatchMatmul(MatmulCall(a: du, b: x, c: dA, transposeA: true, dropout: (mask, .b)))
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

    /// `du = s·G·B` and `dB = s·Gᵀ·u` (with DoRA, G⊙g in both, and dm beside them) from one read
    /// of G (`Shaders/lora_backward.comp`, then ordered sums of its partials). Past one binding, G,
    /// u and inner are read in windows of rows; dB and dm then gather in f32, window by window in
    /// order, so the result stays deterministic.
    func encodeBranchGradients(g: Tensor, b: Tensor, u: Tensor, du: Tensor, dB: Tensor, scale: Float, dora: DoRABranch? = nil) throws {
        let t = g.shape[0], dOut = g.shape[1], r = b.shape[1]
        let rows = try branchWindowRows(g: g, u: u, r: r, inner: dora?.magnitude != nil)
        let chunks = { (rows: Int) in (rows + 255) / 256 }, columnBlocks = (dOut + 127) / 128
        let kernel = LoRABackwardKernel(g: g.dtype, b: b.dtype, u: u.dtype, rankBlock: .init(rank: r),
                                        dora: dora.map { $0.magnitude == nil ? .normOnly : .withMagnitude })
        let rankBlock = kernel.rankBlock.rawValue
        let duPartial = try scratch([columnBlocks, rows, r]), dBPartial = try scratch([chunks(rows), dOut, r])
        let dmPartial = dora != nil ? try scratch([chunks(rows), dOut]) : nil
        let windowed = rows < t
        let dBSum = windowed ? try scratch([dOut, r]) : nil
        let dmSum = windowed && dora?.magnitude != nil ? try scratch([dOut]) : nil
        // Without a trainable magnitude the dm part reads a stand-in and writes nothing.
        let standIn = dora != nil && dora?.magnitude == nil ? try scratch([1]) : nil
        for (index, first) in stride(from: 0, to: t, by: rows).enumerated() {
            let span = first..<min(first + rows, t), n = span.count
            var bindings: [TensorBinding] = [.read(g, (first * dOut)..<(span.upperBound * dOut)), .read(b),
                                             .read(u, (first * r)..<(span.upperBound * r)),
                                             .write(duPartial, 0..<(columnBlocks * n * r)), .write(dBPartial, 0..<(chunks(n) * dOut * r))]
            if let dora {
                let inner: TensorBinding = dora.magnitude.map { .read($0.inner, (first * dOut)..<(span.upperBound * dOut)) } ?? .read(standIn!)
                bindings += [.read(dora.g), .read(dora.norm), inner, .write(dmPartial!, 0..<(chunks(n) * dOut))]
            }
            try dispatch(kernel, bindings, push: .init(t: UInt32(n), dOut: UInt32(dOut), r: UInt32(r), eps: DoRAOptions.normEpsilon),
                         groups: (columnBlocks, chunks(n), (r + rankBlock - 1) / rankBlock))
            try encodeSumBlocks(duPartial, blocks: columnBlocks, into: du, at: (first * r)..<(span.upperBound * r), scale: scale)
            try encodeSumBlocks(dBPartial, blocks: chunks(n), into: dBSum ?? dB, scale: windowed ? 1 : scale, accumulate: index > 0)
            if let dm = dora?.magnitude?.dm {
                try encodeSumBlocks(dmPartial!, blocks: chunks(n), into: dmSum ?? dm, scale: 1, accumulate: index > 0)
            }
        }
        if let dBSum { try encodeSumBlocks(dBSum, blocks: 1, into: dB, scale: scale) }
        if let dmSum, let dm = dora?.magnitude?.dm { try encodeSumBlocks(dmSum, blocks: 1, into: dm, scale: 1) }
    }

    /// Rows of G per window of the branch-gradient pass: all of them when every operand and partial
    /// fits one binding, else a multiple of 128 rows (so that windows start on 256-byte boundaries
    /// in every operand) small enough that they do.
    private func branchWindowRows(g: Tensor, u: Tensor, r: Int, inner: Bool) throws -> Int {
        let t = g.shape[0], dOut = g.shape[1], columnBlocks = (dOut + 127) / 128
        // Bytes per row of each windowed binding; dB's partial grows by one [d_out, r] per 256 rows.
        let perRow = [dOut * g.dtype.byteSize, r * u.dtype.byteSize, columnBlocks * r * 4, inner ? dOut * 4 : 0].max()!
        let perChunk = dOut * r * 4
        let fits = { (rows: Int) in rows * perRow <= self.maxBindingBytes && (rows + 255) / 256 * perChunk <= self.maxBindingBytes }
        if fits(t) { return t }
        let rows = min(maxBindingBytes / perRow, maxBindingBytes / perChunk * 256) / 128 * 128
        guard rows > 0, fits(rows) else {
            throw LowRankError(.unsupported, "the LoRA branch gradients of \(g.descriptor) with r = \(r) need more than one binding per 128 rows on \(info.name)",
                               context: [("maxStorageBufferRange", "\(maxBindingBytes)")])
        }
        return rows
    }
}
