import LowRank

extension AdapterTraining {
    /// `local`'s token-weighted gradient sums, predicted tokens and weighted loss added over every
    /// process of `group` (nothing accumulated counts as zeros), in one all-reduce of a fused
    /// f32 buffer: the gradients in the adapter's parameter order, then the tokens and the loss.
    func summed(_ local: Pending?, over group: ProcessGroup) throws -> Pending {
        let shapes = adapter.parameters.map(\.tensor.shape)
        var buffer: [Float] = []
        buffer.reserveCapacity(shapes.reduce(2) { $0 + $1.count })
        if let local {
            for gradient in local.gradients { buffer += try gradient.floats() }
        } else {
            buffer += [Float](repeating: 0, count: shapes.reduce(0) { $0 + $1.count })
        }
        // f32 counts tokens exactly up to 2^24 per step; the loss is only reported.
        buffer += [Float(local?.tokens ?? 0), Float(local?.weightedLoss ?? 0)]
        try group.sum(&buffer)
        var gradients: [Tensor] = [], offset = 0
        for (shape, parameter) in zip(shapes, adapter.parameters) {
            gradients.append(try Tensor(Array(buffer[offset..<(offset + shape.count)]), shape: shape, on: parameter.tensor.backend))
            offset += shape.count
        }
        return Pending(gradients: gradients, tokens: Int(buffer[offset]), weightedLoss: Double(buffer[offset + 1]),
                       microBatches: local?.microBatches ?? 0)
    }
}
