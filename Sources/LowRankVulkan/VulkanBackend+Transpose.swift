import LowRankCore

extension VulkanBackend {
    /// x -> x with its axes reordered (`Shaders/transpose.comp`), one invocation per output element.
    func encodeTranspose(_ axes: [Int], _ x: Tensor, _ out: Tensor) throws {
        let layout = TransposeLayout(inputShape: x.shape, axes: axes)
        let key = KernelKey(shader: "transpose.comp", defines: ["X_T": x.dtype.glslType, "C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32],
                            specialization: [UInt32(elementWorkgroupSize)], bindings: 2)
        let push = PushConstants((layout.outputDims + layout.inputStrides + [out.shape.count]).map { UInt32($0) })
        try dispatchPerElement(key, count: out.shape.count, window: nil) { _ in ([.read(x), .write(out)], push) }
    }
}
