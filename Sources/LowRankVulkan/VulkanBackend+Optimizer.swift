import LowRankCore

extension VulkanBackend {
    /// param, grad, m, v -> param, m, v in place (`Shaders/adamw.comp`), in windows past one binding.
    func encodeAdamW(_ o: AdamWOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (param, grad, m, v) = (outputs[0], inputs[1], outputs[1], outputs[2])
        let key = KernelKey(shader: "adamw.comp",
                            defines: ["P_T": param.dtype.glslType, "P_FROM_F32": param.dtype.glslFromF32, "G_T": grad.dtype.glslType],
                            specialization: [UInt32(elementWorkgroupSize)], bindings: 4)
        let scalars = o.stepScalars
        try dispatchPerElement(key, count: param.shape.count, window: windowElements([param, grad, m, v])) { elements in
            ([.write(param, elements), .read(grad, elements), .write(m, elements), .write(v, elements)],
             PushConstants([UInt32(elements.count)] + scalars.map { $0 as any PushConstantValue }))
        }
    }
}
