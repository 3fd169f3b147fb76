import LowRankCore

extension VulkanBackend {
    /// prediction, target -> mean((p − t)²): per-workgroup partial sums (`Shaders/mean_squared_error.comp`),
    /// window by window, then their mean in block order by `sum_blocks.comp`.
    func encodeMeanSquaredError(_ inputs: [Tensor], _ out: Tensor) throws {
        let (prediction, target) = (inputs[0], inputs[1])
        let count = prediction.shape.count
        let window = windowElements(inputs) ?? count
        // A fixed number of workgroups per window, so the summation order depends only on the shape.
        let groups = min((window + 255) / 256, 256)
        let windows = (count + window - 1) / window
        let partial = try scratch([windows * groups])
        let key = KernelKey(shader: "mean_squared_error.comp",
                            defines: ["BACKWARD": "0", "P_T": prediction.dtype.glslType, "T_T": target.dtype.glslType], bindings: 3)
        for (w, start) in stride(from: 0, to: count, by: window).enumerated() {
            let elements = start..<min(start + window, count)
            try dispatch(key, [.read(prediction, elements), .read(target, elements), .write(partial, (w * groups)..<((w + 1) * groups))],
                         push: PushConstants([UInt32(elements.count), UInt32(count)]), groups: (groups, 1, 1))
        }
        try encodeSumBlocks(partial.reshaped([windows * groups, 1]), into: out, scale: 1 / Float(count))
    }

    /// prediction, target, dLoss -> 2·(p − t)·dLoss / count, in windows past one binding.
    func encodeMeanSquaredErrorBackward(_ inputs: [Tensor], _ out: Tensor) throws {
        let (prediction, target, lossGradient) = (inputs[0], inputs[1], inputs[2])
        let count = prediction.shape.count
        let key = KernelKey(shader: "mean_squared_error.comp",
                            defines: ["BACKWARD": "1", "P_T": prediction.dtype.glslType, "T_T": target.dtype.glslType,
                                      "C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32], bindings: 4)
        let window = windowElements([prediction, target, out]) ?? max(count, 1)
        for start in stride(from: 0, to: count, by: window) {
            let elements = start..<min(start + window, count)
            try dispatch(key, [.read(prediction, elements), .read(target, elements), .read(lossGradient), .write(out, elements)],
                         push: PushConstants([UInt32(elements.count), UInt32(count)]),
                         groups: (min((elements.count + 255) / 256, 65535), 1, 1))
        }
    }
}
