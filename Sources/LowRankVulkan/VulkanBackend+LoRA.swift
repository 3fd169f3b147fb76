import LowRankCore

extension VulkanBackend {
    /// x, W, A, B [, bias] -> y, u: `u = dropout(x)·Aᵀ` first, then one pass that writes
    /// `y = x·Wᵀ + b + s·u·Bᵀ` once, the LoRA term in the matmul's epilogue.
    func encodeLoRAForward(_ o: LoRAOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (x, w, a, b) = (inputs[0], inputs[1], inputs[2], inputs[3])
        let (y, u) = (outputs[0], outputs[1])
        let mask = DropoutMask(probability: o.dropout, seed: o.seed)
        try dispatchMatmul(MatmulCall(a: x, b: a, c: u, transposeB: true, dropout: (mask, .a)))
        if o.accumulate {
            try dispatchMatmul(MatmulCall(a: u, b: b, c: y, transposeB: true, alpha: o.scale, accumulate: true))
        } else {
            try dispatchMatmul(MatmulCall(a: x, b: w, c: y, transposeB: true, bias: o.hasBias ? inputs[4] : nil,
                                          second: (u, b, o.scale)))
        }
    }

    /// G, x, W, A, B, u -> dx, dA, dB: the branch gradients `du` and `dB` from one read of G,
    /// `dA = duᵀ·dropout(x)`, and `dx = G·W + (du·A) ⊙ mask` in one pass.
    func encodeLoRABackward(_ o: LoRAOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (g, x, w, a, b, u) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5])
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

    /// `du = s·G·B` and `dB = s·Gᵀ·u` (with DoRA, G⊙g in both, and dm beside them). One read of G
    /// (`Shaders/lora_backward.comp`, then ordered sums of its partials) where G fits one binding;
    /// for LoRA, two split matmuls where it does not.
    func encodeBranchGradients(g: Tensor, b: Tensor, u: Tensor, du: Tensor, dB: Tensor, scale: Float, dora: DoRABranch? = nil) throws {
        let t = g.shape[0], dOut = g.shape[1], r = b.shape[1]
        let columnBlocks = (dOut + 127) / 128, rowChunks = (t + 255) / 256
        let partialBytes = max(columnBlocks * t, rowChunks * dOut) * r * 4
        guard g.byteCount <= maxBindingBytes, partialBytes <= maxBindingBytes else {
            guard dora == nil else {
                throw LowRankError(.unsupported, "DoRA backward reads G in one binding; \(g.descriptor) exceeds \(maxBindingBytes) bytes on \(info.name): use fewer tokens per step")
            }
            try dispatchMatmul(MatmulCall(a: g, b: b, c: du, alpha: scale))
            try dispatchMatmul(MatmulCall(a: g, b: u, c: dB, transposeA: true, alpha: scale))
            return
        }
        let rankBlock = r <= 16 ? 16 : 32
        let duPartial = try scratch([columnBlocks, t, r])
        let dBPartial = try scratch([rowChunks, dOut, r])
        var defines = ["G_T": g.dtype.glslType, "B_T": b.dtype.glslType, "U_T": u.dtype.glslType, "RC": "\(rankBlock)",
                       "DORA": "0"]
        var bindings: [TensorBinding] = [.read(g), .read(b), .read(u), .write(duPartial), .write(dBPartial)]
        var dmPartial: Tensor?
        if let dora {
            defines["DORA"] = "1"
            defines["DORA_DM"] = dora.magnitude == nil ? "0" : "1"
            dmPartial = try scratch([rowChunks, dOut])
            // Without a trainable magnitude the dm part reads a stand-in and writes nothing.
            bindings += [.read(dora.g), .read(dora.norm), .read(try dora.magnitude?.inner ?? scratch([1])), .write(dmPartial!)]
        }
        try dispatch(KernelKey(shader: "lora_backward.comp", defines: defines, bindings: bindings.count), bindings,
                     push: PushConstants([UInt32(t), UInt32(dOut), UInt32(r), DoRAOptions.normEpsilon]),
                     groups: (columnBlocks, rowChunks, (r + rankBlock - 1) / rankBlock))
        try encodeSumBlocks(duPartial, into: du, scale: scale)
        try encodeSumBlocks(dBPartial, into: dB, scale: scale)
        if let dm = dora?.magnitude?.dm { try encodeSumBlocks(dmPartial!, into: dm, scale: 1) }
    }
}
