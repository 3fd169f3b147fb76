import LowRankCore

extension VulkanBackend {
    /// Why `dora_norm.comp` cannot take rank `r`: its row of B must fit shared memory.
    func doraRankProblem(_ r: Int) -> String? {
        let maxRank = info.limits.maxComputeSharedMemoryBytes / 4 - 64
        return r > maxRank ? "DoRA's norm kernel holds a row of B in shared memory: r = \(r) exceeds \(maxRank) on \(info.name)" : nil
    }

    /// W, A, B, m, ‖W‖²_row -> n, g: `A·Wᵀ` (W as the matmul's B operand, so a quantized W is
    /// dequantized as it loads) and `A·Aᵀ` by the matmul kernel, then `Shaders/dora_norm.comp` per
    /// row. Transients: `[r, d_out]` and `[r, r]` f32, never `[d_out, d_in]`.
    func encodeDoRANorm(scale: Float, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (w, a, b, m, wsq) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4])
        let dOut = w.shape[0], r = a.shape[0]
        if let reason = doraRankProblem(r) { throw LowRankError(.unsupported, reason) }
        let aw = try scratch([r, dOut]), aat = try scratch([r, r])
        try dispatchMatmul(MatmulCall(a: a, b: w, c: aw, transposeB: true))
        try dispatchMatmul(MatmulCall(a: a, b: a, c: aat, transposeB: true))
        let sharedRow = (r + 63) / 64 * 64
        try dispatch(KernelKey(shader: "dora_norm.comp",
                               defines: ["B_T": b.dtype.glslType, "M_T": m.dtype.glslType, "MAX_R": "\(sharedRow)"], bindings: 7),
                     [.read(wsq), .read(aw), .read(b), .read(aat), .read(m), .write(outputs[0]), .write(outputs[1])],
                     push: PushConstants([UInt32(dOut), UInt32(r), scale, DoRAOptions.normEpsilon]),
                     groups: rowGroups(dOut))
    }

    /// x, W, A, B, m, ‖W‖²_row [, bias] -> y, u, n, g [, inner]. The compose runs in the epilogue of
    /// the matmul that forms the base product, so y is written once: without dropout that product is
    /// also the frozen layer's output; with dropout the frozen output is one matmul and the composed
    /// term, over `dropout(x)·Wᵀ`, is added onto it by a second.
    func encodeDoRAForward(_ o: DoRAOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (x, w, a, b) = (inputs[0], inputs[1], inputs[2], inputs[3])
        let (y, u, g) = (outputs[0], outputs[1], outputs[3])
        let inner = o.trainableMagnitude ? outputs[4] : nil
        let bias = o.lora.hasBias ? inputs[6] : nil
        try encodeDoRANorm(scale: o.lora.scale, [w, a, b, inputs[4], inputs[5]], [outputs[2], g])
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

    /// G, x, W, A, B, u, n, g [, inner] -> dx, dA, dB [, dm]: one read of G gives the LoRA branch's
    /// `du = s·(G⊙g)·B` and `dB = s·(G⊙g)ᵀ·u` and the partial sums of `dm`, summed in order
    /// (`Shaders/lora_backward.comp` with DORA); then `dA = duᵀ·dropout(x)` and `dx` in one pass,
    /// `(g⊙G)·W + du·A` without dropout.
    func encodeDoRABackward(_ o: DoRAOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (gradient, x, w, a, b, u, n, g) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], inputs[6], inputs[7])
        let (dx, dA, dB) = (outputs[0], outputs[1], outputs[2])
        let du = try scratch([x.shape[0], a.shape[0]])
        try encodeBranchGradients(g: gradient, b: b, u: u, du: du, dB: dB, scale: o.lora.scale,
                                  dora: DoRABranch(g: g, norm: n, magnitude: o.trainableMagnitude ? (inputs[8], outputs[3]) : nil))

        let mask = DropoutMask(probability: o.lora.dropout, seed: o.lora.seed)
        try dispatchMatmul(MatmulCall(a: du, b: x, c: dA, transposeA: true, dropout: (mask, .b)))
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
        let key = KernelKey(shader: "dora_compose.comp",
                            defines: ["BASE_T": base.dtype.glslType, "L_T": lora.dtype.glslType, "G_T": g.dtype.glslType,
                                      "C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32],
                            specialization: [UInt32(elementWorkgroupSize)], bindings: 4)
        try dispatchPerElement(key, count: count, window: windowElements([base, lora, out], unit: columns).map { $0 * columns }) { elements in
            ([.read(base, elements), .read(lora, elements), .read(g), .write(out, elements)],
             PushConstants([UInt32(elements.count), UInt32(columns), scale]))
        }
    }
}
