import LowRankCore

extension VulkanBackend {
    /// add, mul, scale and cast (`operation` 0...3), all in `Shaders/elementwise.comp`.
    func encodeElementwise(operation: Int, _ inputs: [Tensor], _ out: Tensor, factor: Float = 1) throws {
        let count = out.shape.count
        var defines = ["OP": "\(operation)", "A_T": inputs[0].dtype.glslType, "C_T": out.dtype.glslType,
                       "C_FROM_F32": out.dtype.glslFromF32]
        var tensors: [(Tensor, writes: Bool)] = [(inputs[0], false)]
        if inputs.count > 1 {
            defines["B_T"] = inputs[1].dtype.glslType
            tensors.append((inputs[1], false))
        }
        tensors.append((out, true))
        let size = min(256, info.limits.maxWorkgroupInvocations)
        try dispatch(KernelKey(shader: "elementwise.comp", defines: defines, specialization: [UInt32(size)], bindings: tensors.count),
                     tensors, push: PushConstants([UInt32(count), factor]),
                     groups: (min((count + size - 1) / size, 65535), 1, 1))
    }
}
