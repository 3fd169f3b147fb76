import LowRankCore

extension VulkanBackend {
    /// x, inverse frequencies, positions -> x rotated (`Shaders/rope.comp`), one invocation per pair.
    func encodeRoPE(inverse: Bool, _ inputs: [Tensor], _ out: Tensor) throws {
        let x = inputs[0]
        let (heads, half) = (x.shape[1], x.shape[2] / 2), pairs = x.shape.count / 2
        let key = KernelKey(shader: "rope.comp", defines: ["INVERSE": inverse ? "1" : "0", "X_T": x.dtype.glslType,
                                                           "C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32],
                            specialization: [UInt32(elementWorkgroupSize)], bindings: 4)
        try dispatchPerElement(key, count: pairs, window: nil) { _ in
            ([.read(x), .read(inputs[1]), .read(inputs[2]), .write(out)], PushConstants([UInt32(pairs), UInt32(heads), UInt32(half)]))
        }
    }
}
