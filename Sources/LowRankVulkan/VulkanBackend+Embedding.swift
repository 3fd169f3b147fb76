import LowRankCore

extension VulkanBackend {
    /// table, ids -> rows (`Shaders/embedding.comp`), one invocation per output element. Its
    /// backward, a scatter-add, has no kernel here (see `unsupportedReason`) and runs on the CPU.
    func encodeEmbedding(_ inputs: [Tensor], _ out: Tensor) throws {
        let table = inputs[0]
        let key = KernelKey(shader: "embedding.comp", defines: ["W_T": table.dtype.glslType, "C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32],
                            specialization: [UInt32(elementWorkgroupSize)], bindings: 3)
        try dispatchPerElement(key, count: out.shape.count, window: nil) { _ in
            ([.read(table), .read(inputs[1]), .write(out)], PushConstants([UInt32(out.shape.count), UInt32(table.shape[1]), UInt32(table.shape[0])]))
        }
    }
}
