import LowRank

extension ModelAdapter {
    /// Refuses an adapter holding a NaN or infinity, naming the first such tensor: `what` is what
    /// would have been made of it ("a checkpoint of it").
    public func checkFinite(what: String) throws {
        for (name, tensor) in parameters {
            let count = try tensor.nonFiniteCount()
            guard count == 0 else {
                throw LowRankError(.numerical, "the adapter's \(name) holds \(count) NaN or infinite values; not writing \(what)", context: [("tensor", name)])
            }
        }
    }
}
