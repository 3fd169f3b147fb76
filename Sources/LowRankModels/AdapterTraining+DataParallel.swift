import LowRank

/// The accumulated gradients as one fused f32 vector, the adapter's parameters in order: what
/// `mpirun` ranks all-reduce among themselves, and what a script reads and writes back to
/// all-reduce them itself (with `torch.distributed` or `mpi4py`) before the optimizer step.
extension AdapterTraining {
    /// The length of the fused gradient vector: every adapter parameter's element count.
    public var gradientCount: Int { adapter.parameters.reduce(0) { $0 + $1.tensor.shape.count } }

    /// The gradients accumulated since the last optimizer step, as token-weighted sums (so that
    /// adding the vectors and token counts of several processes gives those of all their
    /// micro-batches together), and the predicted tokens they are weighted by; zeros and 0 tokens
    /// when nothing was accumulated.
    public func pendingGradients() throws -> (values: [Float], tokens: Int) {
        guard let pending else { return ([Float](repeating: 0, count: gradientCount), 0) }
        var values: [Float] = []
        values.reserveCapacity(gradientCount + 2)   // room for the two counts `summed` appends
        for gradient in pending.gradients { values += try gradient.floats() }
        return (values, pending.tokens)
    }

    /// Replaces the accumulated gradients with `values` (as `pendingGradients()` gives them,
    /// summed over processes) weighted by `tokens`; the next `applyAccumulated()` steps with them.
    /// The step's loss stays this process's own mean over its micro-batches (0 if it had none).
    public func setPendingGradients(_ values: [Float], tokens: Int) throws {
        guard values.count == gradientCount else {
            throw LowRankError(.shapeMismatch, "the adapter has \(gradientCount) gradient values, the vector \(values.count)",
                               context: [("tensor", "gradients")])
        }
        if let index = values.firstIndex(where: { !$0.isFinite }) {
            let name = parameter(atGradientIndex: index)
            throw LowRankError(.numerical, "gradient value \(index) (of \(name)) is \(values[index])", context: [("tensor", name)])
        }
        guard tokens >= 0 else {
            throw LowRankError(.invalidArgument, "the gradients are weighted by \(tokens) tokens; the count cannot be negative",
                               context: [("tensor", "gradients")])
        }
        try readQueuedLosses()
        let meanLoss = pending.map { $0.tokens > 0 ? $0.weightedLoss / Double($0.tokens) : 0 } ?? 0
        pending = Pending(gradients: try tensors(values), tokens: tokens, weightedLoss: meanLoss * Double(tokens),
                          microBatches: pending?.microBatches ?? 0)
    }

    /// The pending token-weighted gradient sums, predicted tokens and weighted loss added over every
    /// process of `group` (nothing accumulated counts as zeros), in one all-reduce of a fused
    /// f32 buffer: the gradients in the adapter's parameter order, then the tokens and the loss.
    func summed(over group: ProcessGroup) throws -> Pending {
        try readQueuedLosses()
        var (buffer, tokens) = try pendingGradients()
        // f32 counts tokens exactly up to 2^24 per step; the loss is only reported.
        buffer += [Float(tokens), Float(pending?.weightedLoss ?? 0)]
        try group.sum(&buffer)
        let count = gradientCount
        return Pending(gradients: try tensors(Array(buffer[..<count])), tokens: Int(buffer[count]),
                       weightedLoss: Double(buffer[count + 1]), microBatches: pending?.microBatches ?? 0)
    }

    /// The fused vector cut into tensors of the parameters' shapes, on their backend.
    private func tensors(_ values: [Float]) throws -> [Tensor] {
        var gradients: [Tensor] = [], offset = 0
        for (_, parameter) in adapter.parameters {
            let count = parameter.shape.count
            gradients.append(try Tensor(Array(values[offset..<(offset + count)]), shape: parameter.shape, on: parameter.backend))
            offset += count
        }
        return gradients
    }

    private func parameter(atGradientIndex index: Int) -> String {
        var end = 0
        for (name, tensor) in adapter.parameters {
            end += tensor.shape.count
            if index < end { return name }
        }
        return "gradients"
    }
}
