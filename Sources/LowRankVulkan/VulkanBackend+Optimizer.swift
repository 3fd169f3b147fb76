import LowRankCore

/// `Shaders/adamw.comp`: one invocation per parameter.
struct AdamWKernel: Kernel {
    struct Push: BitwiseCopyable {
        var count: UInt32
        var decay: Float
        var oneMinusBeta1: Float
        var beta2: Float
        var oneMinusBeta2: Float
        var bias2Root: Float
        var epsilon: Float
        var negativeStep: Float
    }

    static let shader = Shader.adamW
    var param: DType
    var grad: DType

    var defines: [String: String] { param.operandDefines("P", written: true) + grad.operandDefines("G") }

    static var variants: [AdamWKernel] { DType.cover(operands: 2).map { AdamWKernel(param: $0[0], grad: $0[1]) } }
}

extension VulkanBackend {
    /// param, grad, m, v -> param, m, v in place, in windows past one binding.
    func encodeAdamW(_ o: AdamWOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (param, grad, m, v) = (outputs[0], inputs[1], outputs[1], outputs[2])
        let s = o.stepScalars
        try dispatchPerElement(AdamWKernel(param: param.dtype, grad: grad.dtype), count: param.shape.count,
                               window: windowElements([param, grad, m, v])) { elements in
            ([.write(param, elements), .read(grad, elements), .write(m, elements), .write(v, elements)],
             .init(count: UInt32(elements.count), decay: s.decay, oneMinusBeta1: s.oneMinusBeta1, beta2: s.beta2,
                   oneMinusBeta2: s.oneMinusBeta2, bias2Root: s.bias2Root, epsilon: s.epsilon, negativeStep: s.negativeStep))
        }
    }
}
