import LowRankCore

extension VulkanBackend {
    /// x -> f(x), or x, G -> G ⊙ f′(x) when given G (`Shaders/activation.comp`), in windows past one binding.
    func encodeActivation(_ f: Activation, _ inputs: [Tensor], _ out: Tensor) throws {
        let backward = inputs.count == 2
        var defines = ["ACT": "\(Activation.allCases.firstIndex(of: f)!)", "BACKWARD": backward ? "1" : "0",
                       "X_T": inputs[0].dtype.glslType, "C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32]
        if backward { defines["G_T"] = inputs[1].dtype.glslType }
        let key = KernelKey(shader: "activation.comp", defines: defines, specialization: [UInt32(elementWorkgroupSize)], bindings: inputs.count + 1)
        try dispatchPerElement(key, count: out.shape.count, window: windowElements(inputs + [out])) { elements in
            (inputs.map { .read($0, elements) } + [.write(out, elements)], PushConstants([UInt32(elements.count)]))
        }
    }
}
