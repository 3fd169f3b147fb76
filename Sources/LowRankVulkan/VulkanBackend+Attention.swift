import LowRankCore

extension VulkanBackend {
    /// q, k, v -> out, logsumexp (`Shaders/attention.comp` PASS 0), one workgroup per (row, query head).
    func encodeAttention(_ o: AttentionOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (q, k, v) = (inputs[0], inputs[1], inputs[2])
        if let problem = attentionProblem(headDim: q.shape[2]) { throw LowRankError(.unsupported, problem) }
        try dispatch(attentionKernel(pass: 0, inputs, out: outputs[0]), [.read(q), .read(k), .read(v), .write(outputs[0]), .write(outputs[1])],
                     push: attentionPush(o, q: q, k: k), groups: rowGroups(q.shape[0] * q.shape[1]))
    }

    /// G, q, k, v, out, logsumexp -> dq (PASS 1, per (row, query head)), dk and dv (PASS 2, per (key row, KV head)).
    func encodeAttentionBackward(_ o: AttentionOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (g, q, k, v, out, lse) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5])
        if let problem = attentionProblem(headDim: q.shape[2]) { throw LowRankError(.unsupported, problem) }
        let reads: [TensorBinding] = [.read(q), .read(k), .read(v), .read(g), .read(out), .read(lse)]
        let push = attentionPush(o, q: q, k: k)
        try dispatch(attentionKernel(pass: 1, inputs, out: outputs[0]), reads + [.write(outputs[0])], push: push,
                     groups: rowGroups(q.shape[0] * q.shape[1]))
        try dispatch(attentionKernel(pass: 2, inputs, out: outputs[1]), reads + [.write(outputs[1]), .write(outputs[2])], push: push,
                     groups: rowGroups(k.shape[0] * k.shape[1]))
    }

    /// Why attention cannot run here: each invocation holds 4 of a head's columns.
    func attentionProblem(headDim: Int) -> String? {
        headDim > 256 ? "attention.comp holds a head of at most 256 columns; this one has \(headDim)" : nil
    }

    private func attentionKernel(pass: Int, _ inputs: [Tensor], out: Tensor) -> KernelKey {
        // Backward's inputs start with G: q, k, v are inputs 1...3 there.
        let qkv = pass == 0 ? Array(inputs[0...2]) : Array(inputs[1...3])
        var defines = ["PASS": "\(pass)", "Q_T": qkv[0].dtype.glslType, "K_T": qkv[1].dtype.glslType, "V_T": qkv[2].dtype.glslType,
                       "C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32]
        if pass > 0 { (defines["G_T"], defines["O_T"]) = (inputs[0].dtype.glslType, inputs[4].dtype.glslType) }
        return KernelKey(shader: "attention.comp", defines: defines, bindings: [5, 7, 8][pass])
    }

    private func attentionPush(_ o: AttentionOptions, q: Tensor, k: Tensor) -> PushConstants {
        PushConstants([UInt32(q.shape[0]), UInt32(q.shape[1]), UInt32(k.shape[1]), UInt32(q.shape[2]), UInt32(o.sequenceLength),
                       o.scale(headDim: q.shape[2])])
    }
}
