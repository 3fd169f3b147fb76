import LowRankCore

extension Activation: ShaderChoice {
    static let macro = "ACT"
}

/// `Shaders/activation.comp`: `f(x)`, or `G ⊙ f′(x)` backward; gated, `f(x) ⊙ up` and its two gradients.
struct ActivationKernel: Kernel {
    struct Push: BitwiseCopyable {
        var count: UInt32
    }

    /// A gated activation's operand and, backward, its gradient's dtype.
    struct Gate: Hashable {
        var up: DType
        var upGradient: DType?
    }

    static let shader = Shader.activation
    var function: Activation
    var x: DType
    /// G's dtype: the backward pass.
    var gradient: DType?
    var c: DType
    var gate: Gate?

    var defines: [String: String] {
        function.defines + x.operandDefines("X") + c.operandDefines("C", written: true) + gradient.backwardDefines("G")
            + ["GATED": (gate != nil).define] + (gate?.up).operandDefines("U") + (gate?.upGradient).operandDefines("DU", written: true)
    }

    static var variants: [ActivationKernel] {
        Activation.allCases.flatMap { function in
            DType.cover(operands: 4).flatMap { t in
                [nil, t[1]].flatMap { gradient in
                    [nil, Gate(up: t[3], upGradient: gradient.map { _ in t[0] })].map {
                        ActivationKernel(function: function, x: t[0], gradient: gradient, c: t[2], gate: $0)
                    }
                }
            }
        }
    }
}

extension VulkanBackend {
    /// x -> f(x), or x, G -> G ⊙ f′(x) when given G; with `up`, the gated forms (`outputs` then
    /// holds d up after dx backward). In windows past one binding.
    func encodeActivation(_ f: Activation, x: Tensor, gradient: Tensor? = nil, up: Tensor? = nil, _ outputs: [Tensor]) throws {
        let out = outputs[0]
        let gate = up.map { ActivationKernel.Gate(up: $0.dtype, upGradient: gradient != nil ? outputs[1].dtype : nil) }
        let kernel = ActivationKernel(function: f, x: x.dtype, gradient: gradient?.dtype, c: out.dtype, gate: gate)
        let tensors = [x] + [gradient].compactMap { $0 } + [out] + [up].compactMap { $0 } + outputs.dropFirst()
        try dispatchPerElement(kernel, count: out.shape.count, window: windowElements(tensors)) { elements in
            let bindings: [TensorBinding] = tensors.map { t in outputs.contains { $0 === t } ? .write(t, elements) : .read(t, elements) }
            return (bindings, .init(count: UInt32(elements.count)))
        }
    }
}
