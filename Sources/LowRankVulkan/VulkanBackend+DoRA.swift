import LowRankCore

/// `Shaders/dora_norm.comp`: one workgroup per row of W, a dot product over r.
struct DoRANormKernel: Kernel {
    /// `BAAT`: where `B·(A·Aᵀ)` comes from. At r up to 32 each workgroup sums its row's r² terms
    /// itself from A·Aᵀ (4 KiB, read from cache), one dispatch and one barrier fewer per DoRA
    /// layer's forward (7 a decoder block); above, the matmul kernel's tiles form it, as the r²
    /// loop per row reads too much (issue #21's item 6; on lavapipe the norm measured slower with
    /// the loop at r = 64, and within the noise at 8 to 32).
    enum BAAT: ShaderChoice {
        case product, rowLoop
        static let macro = "BAAT"
        init(rank: Int) { self = rank <= 32 ? .rowLoop : .product }
    }

    struct Push: BitwiseCopyable {
        var rows: UInt32
        var r: UInt32
        var scale: Float
        var eps: Float
    }

    static let shader = Shader.doraNorm
    var b: DType
    var m: DType
    var baat: BAAT

    var defines: [String: String] { b.operandDefines("B") + m.operandDefines("M") + baat.defines }

    static var variants: [DoRANormKernel] {
        BAAT.allCases.flatMap { baat in DType.cover(operands: 2).map { DoRANormKernel(b: $0[0], m: $0[1], baat: baat) } }
    }
}

/// `Shaders/dora_compose.comp`: one invocation per element.
struct DoRAComposeKernel: Kernel {
    struct Push: BitwiseCopyable {
        var count: UInt32
        var columns: UInt32
        var scale: Float
    }

    static let shader = Shader.doraCompose
    var base: DType
    var lora: DType
    var g: DType
    var c: DType

    var defines: [String: String] {
        base.operandDefines("BASE") + lora.operandDefines("L") + g.operandDefines("G") + c.operandDefines("C", written: true)
    }

    static var variants: [DoRAComposeKernel] { DType.cover(operands: 4).map { DoRAComposeKernel(base: $0[0], lora: $0[1], g: $0[2], c: $0[3]) } }
}

extension VulkanBackend {
    /// W, A, B, m, ‖W‖²_row -> n, g: `A·Wᵀ` (W as the matmul's B operand, so a quantized W is
    /// dequantized as it loads) and `A·Aᵀ` by the matmul kernel (its split-K and tiles for skinny
    /// products), `B·(A·Aᵀ)` by it too above rank 32 (`DoRANormKernel.BAAT`), then
    /// `Shaders/dora_norm.comp`'s dot product per row. Transients: `[r, d_out]`, `[r, r]` and
    /// (above rank 32) `[d_out, r]` f32, never `[d_out, d_in]`; no bound on r.
    func encodeDoRANorm(scale: Float, _ operands: DoRANormOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (w, a, b, m, wsq) = (operands.w, operands.a, operands.b, operands.magnitude, operands.weightSquaredNorm)
        let dOut = w.shape[0], r = a.shape[0], product = DoRANormKernel.BAAT(rank: r)
        let aw = try scratch([r, dOut]), aat = try scratch([r, r])
        try dispatchMatmul(MatmulCall(a: a, b: w, c: aw, transposeB: true))
        try dispatchMatmul(MatmulCall(a: a, b: a, c: aat, transposeB: true))
        var baat = aat
        if product == .product {
            baat = try scratch([dOut, r])
            // A·Aᵀ is symmetric, so B·(A·Aᵀ) is the x·Wᵀ form with it as W.
            try dispatchMatmul(MatmulCall(a: b, b: aat, c: baat, transposeB: true))
        }
        try dispatch(DoRANormKernel(b: b.dtype, m: m.dtype, baat: product),
                     [.read(wsq), .read(aw), .read(b), .read(baat), .read(m), .write(outputs[0]), .write(outputs[1])],
                     push: .init(rows: UInt32(dOut), r: UInt32(r), scale: scale, eps: DoRAOptions.normEpsilon),
                     groups: rowGroups(dOut))
    }

    /// x, W, A, B, m, ‖W‖²_row [, bias] -> y, u, n, g [, inner]. The compose runs in the epilogue of
    /// the matmul that forms the base product, so y is written once: without dropout that product is
    /// also the frozen layer's output; with dropout the frozen output is one matmul and the composed
    /// term, over `dropout(x)·Wᵀ`, is added onto it by a second.
    func encodeDoRAForward(_ o: DoRAOptions, _ operands: DoRAForwardOperands<Tensor>, _ outputs: DoRAForwardResults<Tensor>) throws {
        let (x, w, a, b, bias) = (operands.x, operands.w, operands.a, operands.b, operands.bias)
        let (y, u, g, inner) = (outputs.y, outputs.u, outputs.g, outputs.inner)
        try encodeDoRANorm(scale: o.lora.scale, operands.norm, [outputs.norm, g])
        let mask = DropoutMask(probability: o.lora.dropout, seed: o.lora.seed)
        try dispatchMatmul(MatmulCall(a: x, b: a, c: u, transposeB: true, dropout: (mask, .a)))
        if mask.isIdentity {
            try dispatchMatmul(MatmulCall(a: x, b: w, c: y, transposeB: true, bias: bias, second: (u, b, o.lora.scale),
                                          vector: (g, .doraCompose(addBase: true)), inner: inner))
        } else {
            try dispatchMatmul(MatmulCall(a: x, b: w, c: y, transposeB: true, bias: bias))
            try dispatchMatmul(MatmulCall(a: x, b: w, c: y, transposeB: true, accumulate: true, second: (u, b, o.lora.scale),
                                          dropout: (mask, .a), vector: (g, .doraCompose(addBase: false)), inner: inner))
        }
    }

    /// G, x, W, A, B, u, n, g [, inner] -> dx, dA, dB [, dm]: one dispatch gives the LoRA branch's
    /// `du = s·(G⊙g)·B` and `dB = s·(G⊙g)ᵀ·u` and `dm` (`Shaders/lora_backward.comp` with DORA);
    /// then `dA = duᵀ·dropout(x)` and, where it is wanted, `dx` in one pass,
    /// `(g⊙G)·W + du·A` without dropout.
    func encodeDoRABackward(_ o: DoRAOptions, _ operands: DoRABackwardOperands<Tensor>, _ outputs: DoRABackwardResults<Tensor>) throws {
        let (gradient, x, w, a, b, u, g) = (operands.gradient, operands.x, operands.w, operands.a, operands.b, operands.u, operands.g)
        let (dx, dA, dB) = (outputs.dx, outputs.dA, outputs.dB)
        let du = try scratch([x.shape[0], a.shape[0]])
        let magnitude = operands.inner.flatMap { inner in outputs.dm.map { (inner, $0) } }
        try encodeBranchGradients(g: gradient, b: b, u: u, du: du, dB: dB, scale: o.lora.scale,
                                  dora: DoRABranch(g: g, norm: operands.norm, magnitude: magnitude))

        let mask = DropoutMask(probability: o.lora.dropout, seed: o.lora.seed)
        try dispatchMatmul(MatmulCall(a: du, b: x, c: dA, transposeA: true, dropout: (mask, .b)))
        guard o.lora.inputGradient else { return }
        if mask.isIdentity {
            try dispatchMatmul(MatmulCall(a: gradient, b: w, c: dx, second: (du, a, 1), vector: (g, .scaleA(offset: 0))))
        } else {
            // dx = G·W + mask ⊙ (((g − 1)⊙G)·W + du·A)
            try dispatchMatmul(MatmulCall(a: gradient, b: w, c: dx))
            try dispatchMatmul(MatmulCall(a: gradient, b: w, c: dx, accumulate: true, second: (du, a, 1),
                                          dropout: (mask, .products), vector: (g, .scaleA(offset: -1))))
        }
    }

    /// base, lora, g -> y (`Shaders/dora_compose.comp`), in windows of whole rows past one binding.
    func encodeDoRACompose(scale: Float, _ inputs: [Tensor], _ out: Tensor) throws {
        let (base, lora, g) = (inputs[0], inputs[1], inputs[2])
        let count = out.shape.count, columns = out.shape.columns
        let kernel = DoRAComposeKernel(base: base.dtype, lora: lora.dtype, g: g.dtype, c: out.dtype)
        try dispatchPerElement(kernel, count: count, window: windowElements([base, lora, out], unit: columns).map { $0 * columns }) { elements in
            ([.read(base, elements), .read(lora, elements), .read(g), .write(out, elements)],
             .init(count: UInt32(elements.count), columns: UInt32(columns), scale: scale))
        }
    }
}
