/// Finding where a NaN or an infinity came from: the plan run again step by step (the stepping
/// `LOWRANK_CHECK` uses), stopped at the first op whose output is not finite.
extension ExecutionPlan {
    /// Runs the plan on `feeds` with `seed` again and returns the error naming the first step whose
    /// output holds a NaN or an infinity, with its inputs' shapes and the parameters among them that
    /// already did (a weight loaded or trained into non-finite values); nil when every output is
    /// finite. Reads every output back, so it is for after the fact, not for each run.
    public func firstNonFiniteStep(_ feeds: [GraphTensor: Tensor], seed: UInt32 = 0) throws -> LowRankError? {
        struct Found: Error { let error: LowRankError }
        do {
            _ = try run(feeds, seed: seed) { step, inputs, outputs in
                for (i, output) in outputs.enumerated() {
                    let count = try output.nonFiniteCount()
                    if count > 0 { throw Found(error: try self.nonFiniteError(step, inputs, output: i, output.descriptor, count: count)) }
                }
            }
        } catch let found as Found {
            return found.error
        }
        return nil
    }

    private func nonFiniteError(_ step: Step, _ inputs: [Tensor], output: Int, _ descriptor: TensorDescriptor, count: Int) throws -> LowRankError {
        let ids = graph.nodes[step.node].inputs
        var described: [String] = []
        for (id, input) in zip(ids, inputs) {
            let value = graph.values[try graph.resolved(id)]
            var text = input.descriptor.description
            if case .parameter = value.source, try input.nonFiniteCount() > 0 { text += " (\(value.name), itself not finite)" }
            described.append(text)
        }
        return LowRankError(.numerical, "\(step.label) (\(step.op?.rawValue ?? "reshape")) is the first op whose output is not finite: output \(output) (\(descriptor)) holds \(count) NaN or infinite values",
                            context: [("op", step.label), ("inputs", described.joined(separator: ", "))])
    }
}

extension Tensor {
    /// How many values are NaN or infinite (0 for integer tensors).
    public func nonFiniteCount() throws -> Int {
        guard dtype.isFloatingPoint || dtype.isQuantized else { return 0 }
        return try floats().nonFiniteCount
    }
}

extension Collection<Float> {
    /// How many values are NaN or infinite.
    public var nonFiniteCount: Int { reduce(0) { $0 + ($1.isFinite ? 0 : 1) } }
}
