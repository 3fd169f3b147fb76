import LowRankCore

/// `Shaders/mean_squared_error.comp`: per-workgroup partial sums of (p − t)², or backward's
/// `2·(p − t)·dLoss / count`.
struct MeanSquaredErrorKernel: Kernel {
    struct Push: BitwiseCopyable {
        var count: UInt32
        var total: UInt32
    }

    static let shader = Shader.meanSquaredError
    var prediction: DType
    var target: DType
    /// The gradient's dtype: the backward pass.
    var gradient: DType?

    var defines: [String: String] {
        prediction.operandDefines("P") + target.operandDefines("T") + gradient.backwardDefines("C", written: true)
    }

    static var variants: [MeanSquaredErrorKernel] {
        DType.cover(operands: 3).flatMap { t in
            [nil, t[2]].map { MeanSquaredErrorKernel(prediction: t[0], target: t[1], gradient: $0) }
        }
    }
}

/// `Shaders/cross_entropy.comp`.
struct CrossEntropyKernel: Kernel {
    enum Pass: KernelPass {
        /// One workgroup per row: logsumexp and the row's loss.
        case rowLosses
        /// One workgroup: the mean over counted rows.
        case mean
        /// One workgroup: the counted rows, for backward.
        case count
        /// d logits, one invocation per element.
        case logitGradient
    }

    struct Push: BitwiseCopyable {
        var rows: UInt32
        var classes: UInt32
    }

    static let shader = Shader.crossEntropy
    var pass: Pass
    var ignoreIndex: Int32
    var logits: DType
    /// d logits' dtype, in `logitGradient`.
    var out: DType?

    var defines: [String: String] {
        pass.defines + ["IGNORE_INDEX": "(\(ignoreIndex))"] + logits.operandDefines("L") + out.operandDefines("C", written: true)
    }

    static var variants: [CrossEntropyKernel] {
        DType.cover(operands: 2).flatMap { t in
            Pass.allCases.map { CrossEntropyKernel(pass: $0, ignoreIndex: -100, logits: t[0], out: $0 == .logitGradient ? t[1] : nil) }
        }
    }
}

extension VulkanBackend {
    /// prediction, target -> mean((p − t)²): per-workgroup partial sums, window by window, then
    /// their mean in block order by `sum_blocks.comp`.
    func encodeMeanSquaredError(_ inputs: [Tensor], _ out: Tensor) throws {
        let (prediction, target) = (inputs[0], inputs[1])
        let count = prediction.shape.count
        let window = windowElements(inputs) ?? count
        // A fixed number of workgroups per window, so the summation order depends only on the shape.
        let groups = min((window + 255) / 256, 256)
        let windows = (count + window - 1) / window
        let partial = try scratch([windows * groups])
        let kernel = MeanSquaredErrorKernel(prediction: prediction.dtype, target: target.dtype, gradient: nil)
        for (w, start) in stride(from: 0, to: count, by: window).enumerated() {
            let elements = start..<min(start + window, count)
            try dispatch(kernel, [.read(prediction, elements), .read(target, elements), .write(partial, (w * groups)..<((w + 1) * groups))],
                         push: .init(count: UInt32(elements.count), total: UInt32(count)), groups: (groups, 1, 1))
        }
        try encodeSumBlocks(partial.reshaped([windows * groups, 1]), into: out, scale: 1 / Float(count))
    }

    /// prediction, target, dLoss -> 2·(p − t)·dLoss / count, in windows past one binding.
    func encodeMeanSquaredErrorBackward(_ inputs: [Tensor], _ out: Tensor) throws {
        let (prediction, target, lossGradient) = (inputs[0], inputs[1], inputs[2])
        let count = prediction.shape.count
        let kernel = MeanSquaredErrorKernel(prediction: prediction.dtype, target: target.dtype, gradient: out.dtype)
        let window = windowElements([prediction, target, out]) ?? max(count, 1)
        for start in stride(from: 0, to: count, by: window) {
            let elements = start..<min(start + window, count)
            try dispatch(kernel, [.read(prediction, elements), .read(target, elements), .read(lossGradient), .write(out, elements)],
                         push: .init(count: UInt32(elements.count), total: UInt32(count)),
                         groups: (min((elements.count + 255) / 256, 65535), 1, 1))
        }
    }
}

extension VulkanBackend {
    /// logits, labels -> loss, logsumexp: the row losses per row, then one workgroup forms the mean.
    func encodeCrossEntropy(_ ignoreIndex: Int32, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (logits, labels) = (inputs[0], inputs[1])
        let rows = logits.shape[0], push = CrossEntropyKernel.Push(rows: UInt32(rows), classes: UInt32(logits.shape[1]))
        let kernel = { (pass: CrossEntropyKernel.Pass) in CrossEntropyKernel(pass: pass, ignoreIndex: ignoreIndex, logits: logits.dtype, out: nil) }
        let rowLoss = try scratch([rows])
        try dispatch(kernel(.rowLosses), [.read(labels), .read(logits), .write(outputs[1]), .write(rowLoss)], push: push, groups: rowGroups(rows))
        try dispatch(kernel(.mean), [.read(labels), .read(rowLoss), .write(outputs[0])], push: push, groups: (1, 1, 1))
    }

    /// logits, labels, logsumexp, dLoss -> d logits: the counted rows, then every element.
    func encodeCrossEntropyBackward(_ ignoreIndex: Int32, _ operands: CrossEntropyBackwardOperands<Tensor>, _ out: Tensor) throws {
        let (logits, labels, lse, lossGradient) = (operands.logits, operands.labels, operands.logsumexp, operands.lossGradient)
        let push = CrossEntropyKernel.Push(rows: UInt32(logits.shape[0]), classes: UInt32(logits.shape[1]))
        let counted = try scratch([1])
        try dispatch(CrossEntropyKernel(pass: .count, ignoreIndex: ignoreIndex, logits: logits.dtype, out: nil), [.read(labels), .write(counted)],
                     push: push, groups: (1, 1, 1))
        try dispatch(CrossEntropyKernel(pass: .logitGradient, ignoreIndex: ignoreIndex, logits: logits.dtype, out: out.dtype),
                     [.read(labels), .read(logits), .read(lse), .read(lossGradient), .read(counted), .write(out)],
                     push: push, groups: (min((out.shape.count + 255) / 256, 65535), 1, 1))
    }
}
