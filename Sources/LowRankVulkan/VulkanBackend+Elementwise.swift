import LowRankCore

extension VulkanBackend {
    /// add, mul, scale and cast (`operation` 0...3), all in `Shaders/elementwise.comp`; tensors
    /// larger than one binding run as consecutive windows.
    func encodeElementwise(operation: Int, _ inputs: [Tensor], _ out: Tensor, factor: Float = 1) throws {
        let count = out.shape.count
        var defines = ["OP": "\(operation)", "A_T": inputs[0].dtype.glslType, "C_T": out.dtype.glslType,
                       "C_FROM_F32": out.dtype.glslFromF32]
        if inputs.count > 1 { defines["B_T"] = inputs[1].dtype.glslType }
        let size = min(256, info.limits.maxWorkgroupInvocations)
        let key = KernelKey(shader: "elementwise.comp", defines: defines, specialization: [UInt32(size)], bindings: inputs.count + 1)
        let window = windowElements(inputs + [out]) ?? max(count, 1)
        for start in stride(from: 0, to: count, by: window) {
            let elements = start..<min(start + window, count)
            try dispatch(key, inputs.map { .read($0, elements) } + [.write(out, elements)],
                         push: PushConstants([UInt32(elements.count), factor]),
                         groups: (min((elements.count + size - 1) / size, 65535), 1, 1))
        }
    }
}
