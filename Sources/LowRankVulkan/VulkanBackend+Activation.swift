import LowRankCore

extension Activation: ShaderChoice {
    static let macro = "ACT"
}

/// `Shaders/activation.comp`: `f(x)`, or `G ⊙ f′(x)` backward.
struct ActivationKernel: Kernel {
    struct Push: BitwiseCopyable {
        var count: UInt32
    }

    static let shader = Shader.activation
    var function: Activation
    var x: DType
    /// G's dtype: the backward pass.
    var gradient: DType?
    var c: DType

    var defines: [String: String] {
        function.defines + x.operandDefines("X") + c.operandDefines("C", written: true) + gradient.backwardDefines("G")
    }

    static var variants: [ActivationKernel] {
        Activation.allCases.flatMap { function in
            DType.cover(operands: 3).flatMap { t in
                [nil, t[1]].map { ActivationKernel(function: function, x: t[0], gradient: $0, c: t[2]) }
            }
        }
    }
}

extension VulkanBackend {
    /// x -> f(x), or x, G -> G ⊙ f′(x) when given G, in windows past one binding.
    func encodeActivation(_ f: Activation, _ inputs: [Tensor], _ out: Tensor) throws {
        let kernel = ActivationKernel(function: f, x: inputs[0].dtype, gradient: inputs.count == 2 ? inputs[1].dtype : nil, c: out.dtype)
        try dispatchPerElement(kernel, count: out.shape.count, window: windowElements(inputs + [out])) { elements in
            (inputs.map { .read($0, elements) } + [.write(out, elements)], .init(count: UInt32(elements.count)))
        }
    }
}
