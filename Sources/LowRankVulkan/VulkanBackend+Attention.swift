import LowRankCore

/// `Shaders/attention.comp`: one workgroup of 64 per (row, head).
struct AttentionKernel: Kernel {
    enum Pass: ShaderChoice {
        /// out and logsumexp per (row, query head).
        case forward
        /// dq per (row, query head).
        case queryGradient
        /// dk and dv per (key row, KV head).
        case keyValueGradient
        static let macro = "PASS"
    }

    struct Push: BitwiseCopyable {
        var rows: UInt32
        var qHeads: UInt32
        var kvHeads: UInt32
        var headDim: UInt32
        var sequence: UInt32
        var scale: Float
    }

    static let shader = Shader.attention
    var pass: Pass
    var q: DType
    var k: DType
    var v: DType
    /// G's and out's dtypes, in the backward passes.
    struct Backward: Hashable {
        var gradient: DType
        var out: DType
    }

    var backward: Backward?
    var c: DType

    var defines: [String: String] {
        pass.defines + q.operandDefines("Q") + k.operandDefines("K") + v.operandDefines("V") + c.operandDefines("C", written: true)
            + (backward.map { $0.gradient.operandDefines("G") + $0.out.operandDefines("O") } ?? [:])
    }

    static var variants: [AttentionKernel] {
        DType.cover(operands: 6).flatMap { t in
            Pass.allCases.map { AttentionKernel(pass: $0, q: t[0], k: t[1], v: t[2], backward: $0 == .forward ? nil : Backward(gradient: t[3], out: t[4]), c: t[5]) }
        }
    }
}

extension VulkanBackend {
    /// q, k, v -> out, logsumexp.
    func encodeAttention(_ o: AttentionOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (q, k, v) = (inputs[0], inputs[1], inputs[2])
        if let problem = attentionProblem(headDim: q.shape[2]) { throw LowRankError(.unsupported, problem) }
        let kernel = AttentionKernel(pass: .forward, q: q.dtype, k: k.dtype, v: v.dtype, backward: nil, c: outputs[0].dtype)
        try dispatch(kernel, [.read(q), .read(k), .read(v), .write(outputs[0]), .write(outputs[1])],
                     push: attentionPush(o, q: q, k: k), groups: rowGroups(q.shape[0] * q.shape[1]))
    }

    /// G, q, k, v, out, logsumexp -> dq (per (row, query head)), dk and dv (per (key row, KV head)).
    func encodeAttentionBackward(_ o: AttentionOptions, _ operands: AttentionBackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (g, q, k, v, out, lse) = (operands.gradient, operands.q, operands.k, operands.v, operands.out, operands.logsumexp)
        if let problem = attentionProblem(headDim: q.shape[2]) { throw LowRankError(.unsupported, problem) }
        let reads: [TensorBinding] = [.read(q), .read(k), .read(v), .read(g), .read(out), .read(lse)]
        let push = attentionPush(o, q: q, k: k)
        let kernel = { (pass: AttentionKernel.Pass, c: Tensor) in
            AttentionKernel(pass: pass, q: q.dtype, k: k.dtype, v: v.dtype, backward: .init(gradient: g.dtype, out: out.dtype), c: c.dtype)
        }
        try dispatch(kernel(.queryGradient, outputs[0]), reads + [.write(outputs[0])], push: push, groups: rowGroups(q.shape[0] * q.shape[1]))
        try dispatch(kernel(.keyValueGradient, outputs[1]), reads + [.write(outputs[1]), .write(outputs[2])], push: push,
                     groups: rowGroups(k.shape[0] * k.shape[1]))
    }

    /// Why attention cannot run here: each invocation holds 4 of a head's columns.
    func attentionProblem(headDim: Int) -> String? {
        headDim > 256 ? "attention.comp holds a head of at most 256 columns; this one has \(headDim)" : nil
    }

    private func attentionPush(_ o: AttentionOptions, q: Tensor, k: Tensor) -> AttentionKernel.Push {
        .init(rows: UInt32(q.shape[0]), qHeads: UInt32(q.shape[1]), kvHeads: UInt32(k.shape[1]), headDim: UInt32(q.shape[2]),
              sequence: UInt32(o.sequenceLength), scale: o.scale(headDim: q.shape[2]))
    }
}
