import LowRank

extension CausalLMPlan {
    /// The error for a batch whose loss came out NaN or infinite: the batch is run again op by op
    /// (same seed, so the same dropout) and the first op whose output is not finite is named, with
    /// its inputs' shapes and any weight among them that was already not finite. `what` says whose
    /// loss it is ("the loss of step 12").
    func nonFiniteLossError(_ loss: Float, of batch: TokenBatch, seed: UInt32, what: String, context: [(String, String)]) throws -> LowRankError {
        guard batch.predictedTokens > 0 else {
            return LowRankError(.numerical, "\(what) is \(loss): the batch predicts no token (every label is ignored), so its mean loss is undefined",
                                context: context)
        }
        guard let located = try plan.firstNonFiniteStep(try feeds(batch), seed: seed) else {
            return LowRankError(.numerical, "\(what) is \(loss), but running the batch again op by op gave finite values throughout", context: context)
        }
        var error = located
        error.message = "\(what) is \(loss): \(located.message)"
        error.context = context + located.context
        return error
    }
}
