import LowRankCore

extension DType {
    /// The GLSL element type a binding of this dtype is declared with (bf16 travels as raw bits).
    var glslType: String {
        switch self {
        case .f32: "float"
        case .f16: "float16_t"
        case .bf16: "uint16_t"
        case .u8: "uint8_t"
        case .i8: "int8_t"
        case .i32: "int"
        case .i64: "int64_t"
        }
    }

    /// The common.glsl function that rounds an f32 result into this dtype.
    var glslFromF32: String {
        switch self {
        case .f16: "f32_to_f16"
        case .bf16: "f32_to_bf16"
        default: "f32_to_f32"
        }
    }
}

/// One launch of `Shaders/matmul.comp`:
/// `C = alpha·op(A)·op(B) [+ alpha2·op(A2)·op(B2) ⊙ dropout] [+ bias] [+ C]`.
struct MatmulCall {
    enum DropoutTarget { case a, b, second }

    var a: Tensor
    var b: Tensor
    var c: Tensor
    var transposeA = false
    var transposeB = false
    var alpha: Float = 1
    var bias: Tensor?
    var accumulate = false
    /// The second product, with the same layouts over its own inner dimension.
    var second: (a: Tensor, b: Tensor, alpha: Float)?
    var dropout: (mask: DropoutMask, target: DropoutTarget)?
}

extension VulkanBackend {
    func encodeMatmul(_ o: MatmulOptions, _ inputs: [Tensor], _ c: Tensor) throws {
        try dispatchMatmul(MatmulCall(a: inputs[0], b: inputs[1], c: c, transposeA: o.transposeA, transposeB: o.transposeB,
                                      alpha: o.alpha, bias: o.hasBias ? inputs[2] : nil, accumulate: o.accumulate))
    }

    func dispatchMatmul(_ call: MatmulCall) throws {
        let m = call.c.shape[0], n = call.c.shape[1]
        let k = call.transposeA ? call.a.shape[0] : call.a.shape[1]
        let k2 = call.second.map { call.transposeA ? $0.a.shape[0] : $0.a.shape[1] } ?? 0
        let flag = { (b: Bool) in b ? "1" : "0" }
        let target = call.dropout.flatMap { $0.mask.isIdentity ? nil : $0.target }
        var defines = [
            "A_T": call.a.dtype.glslType, "B_T": call.b.dtype.glslType, "C_T": call.c.dtype.glslType,
            "C_FROM_F32": call.c.dtype.glslFromF32,
            "TRANS_A": flag(call.transposeA), "TRANS_B": flag(call.transposeB),
            "HAS_BIAS": flag(call.bias != nil), "ACCUMULATE": flag(call.accumulate), "SECOND": flag(call.second != nil),
            "DROPOUT_A": flag(target == .a), "DROPOUT_B": flag(target == .b), "DROPOUT_SECOND": flag(target == .second),
        ]
        var tensors: [(Tensor, writes: Bool)] = [(call.a, false), (call.b, false), (call.c, true)]
        if let bias = call.bias {
            defines["BIAS_T"] = bias.dtype.glslType
            tensors.append((bias, false))
        }
        if let second = call.second {
            defines["A2_T"] = second.a.dtype.glslType
            defines["B2_T"] = second.b.dtype.glslType
            tensors += [(second.a, false), (second.b, false)]
        }
        let mask = call.dropout?.mask ?? DropoutMask(probability: 0, seed: 0)
        let push = PushConstants([UInt32(m), UInt32(n), UInt32(k), UInt32(k2), call.alpha, call.second?.alpha ?? 0,
                                  mask.seed, mask.threshold, mask.keepScale])
        try dispatch(KernelKey(shader: "matmul.comp", defines: defines, bindings: tensors.count), tensors, push: push,
                     groups: ((n + 63) / 64, (m + 63) / 64, 1))
    }
}
