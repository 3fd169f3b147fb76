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

extension VulkanBackend {
    /// logits, labels -> loss, logsumexp (`Shaders/cross_entropy.comp`): PASS 0 per row, then PASS 1's
    /// one workgroup forms the mean.
    func encodeCrossEntropy(_ ignoreIndex: Int32, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (logits, labels) = (inputs[0], inputs[1])
        let rows = logits.shape[0], push = PushConstants([UInt32(rows), UInt32(logits.shape[1])])
        let rowLoss = try scratch([rows])
        try dispatch(crossEntropyKernel(pass: 0, ignoreIndex, logits: logits, out: nil, bindings: 4),
                     [.read(labels), .read(logits), .write(outputs[1]), .write(rowLoss)], push: push, groups: rowGroups(rows))
        try dispatch(crossEntropyKernel(pass: 1, ignoreIndex, logits: logits, out: nil, bindings: 3),
                     [.read(labels), .read(rowLoss), .write(outputs[0])], push: push, groups: (1, 1, 1))
    }

    /// logits, labels, logsumexp, dLoss -> d logits: PASS 2 counts the rows, PASS 3 writes every element.
    func encodeCrossEntropyBackward(_ ignoreIndex: Int32, _ inputs: [Tensor], _ out: Tensor) throws {
        let (logits, labels, lse, lossGradient) = (inputs[0], inputs[1], inputs[2], inputs[3])
        let push = PushConstants([UInt32(logits.shape[0]), UInt32(logits.shape[1])])
        let counted = try scratch([1])
        try dispatch(crossEntropyKernel(pass: 2, ignoreIndex, logits: logits, out: nil, bindings: 2), [.read(labels), .write(counted)],
                     push: push, groups: (1, 1, 1))
        try dispatch(crossEntropyKernel(pass: 3, ignoreIndex, logits: logits, out: out, bindings: 6),
                     [.read(labels), .read(logits), .read(lse), .read(lossGradient), .read(counted), .write(out)],
                     push: push, groups: (min((out.shape.count + 255) / 256, 65535), 1, 1))
    }

    private func crossEntropyKernel(pass: Int, _ ignoreIndex: Int32, logits: Tensor, out: Tensor?, bindings: Int) -> KernelKey {
        var defines = ["PASS": "\(pass)", "IGNORE_INDEX": "(\(ignoreIndex))", "L_T": logits.dtype.glslType]
        if let out { (defines["C_T"], defines["C_FROM_F32"]) = (out.dtype.glslType, out.dtype.glslFromF32) }
        return KernelKey(shader: "cross_entropy.comp", defines: defines, bindings: bindings)
    }
}
