import LowRank

/// Validation during training, as transformers' `eval_strategy="steps"` with `load_best_model_at_end`:
/// the mean loss over held-out data every `every` steps and at the last step, without dropout, on
/// the adapter as trained so far. The step with the lowest loss (the first, on a tie) is the best:
/// its checkpoint is written when it is reached and kept when newer ones replace the others, and
/// every later trainer state names it as `best_checkpoint`, as transformers' `best_model_checkpoint`.
public final class TrainingValidation {
    public let data: TokenDataset
    public let every: Int
    public let batchSize: Int
    /// Each validation so far, in step order (restored on resume).
    public internal(set) var losses: [(step: Int, loss: Double)] = []
    private let evaluator: LossEvaluator

    public init(data: TokenDataset, every: Int, batchSize: Int, model: LlamaModel, adapter: ModelAdapter) throws {
        guard every >= 1, batchSize >= 1 else {
            throw LowRankError(.invalidArgument, "the validation interval and batch size must be at least 1, got \(every) and \(batchSize)")
        }
        (self.data, self.every, self.batchSize) = (data, every, batchSize)
        evaluator = LossEvaluator(model: model, adapter: adapter)
    }

    /// The lowest validation loss and its step.
    public var best: (step: Int, loss: Double)? {
        losses.reduce(nil) { best, next in best.map { $0.loss <= next.loss } ?? false ? best : next }
    }

    /// The loss over `data` now, recorded for `step`.
    func evaluate(atStep step: Int) throws -> Double {
        let loss = try Evaluation(evaluator: evaluator, data: data, batchSize: batchSize).loss
        losses.append((step, loss))
        return loss
    }
}

extension Trainer {
    /// Validates when the step is a multiple of the interval, or the last: the loss, and whether it
    /// is the best so far. Nil when no validation is due.
    func validateIfDue() throws -> (loss: Double, isBest: Bool)? {
        guard let validation, step % validation.every == 0 || step == totalSteps else { return nil }
        let loss = try validation.evaluate(atStep: step)
        return (loss, validation.best?.step == step)
    }

    /// The best checkpoint's folder, which newer checkpoints do not replace.
    var bestCheckpoint: String? {
        guard let output, let best = validation?.best else { return nil }
        return output + "/checkpoint-\(best.step)"
    }

    /// What the trainer state records of validation: every loss, the best and its checkpoint.
    var validationRecord: [String: JSON] {
        guard let validation, let best = validation.best else { return [:] }
        return ["validation_losses": .array(validation.losses.map { .array([.number(Double($0.step)), .number($0.loss)]) }),
                "best_checkpoint": .string("checkpoint-\(best.step)"), "best_validation_loss": .number(best.loss)]
    }

    /// Takes back the validation losses a checkpoint recorded, up to its step.
    func restoreValidation(from state: JSON) {
        guard let validation, let recorded = state["validation_losses"]?.array else { return }
        validation.losses = recorded.compactMap { entry in
            guard let pair = entry.array, pair.count == 2, let step = pair[0].int, let loss = pair[1].number, step <= self.step else { return nil }
            return (step, loss)
        }
    }
}
