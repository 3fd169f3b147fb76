import Glibc
import LowRank

/// Optimizer steps on an adapter over batches the caller chooses: each step runs the forward
/// pass with its loss, the backward pass, and an AdamW step. Dropout is seeded from the run's seed
/// and the step number, so the same batches in the same order give the same adapter, whoever picks
/// them (`Trainer` from a dataset, or a Python loop through the C ABI).
public final class AdapterTraining: @unchecked Sendable {
    public let model: LlamaModel
    public let adapter: ModelAdapter
    public let settings: TrainingSettings
    /// The length of the learning-rate schedule (nil for a constant one).
    public let totalSteps: Int?
    public internal(set) var step = 0
    /// The loss of every step taken, restored ones included.
    public internal(set) var losses: [Float] = []
    let optimizer: AdamWOptimizer
    private var plans: PlanCache

    public init(model: LlamaModel, adapter: ModelAdapter, settings: TrainingSettings, totalSteps: Int?) throws {
        self.model = model
        self.adapter = adapter
        self.settings = settings
        self.totalSteps = totalSteps
        optimizer = try AdamWOptimizer(parameters: adapter.parameters, settings: try settings.optimizer(totalSteps: totalSteps))
        plans = PlanCache(model: model, adapter: adapter, training: true, checkpointing: settings.gradientCheckpointing)
    }

    /// One optimizer step on `batch`; returns its loss. A non-finite loss is an error, and the
    /// adapter then holds the step's update (the caller's last checkpoint holds the one before).
    @discardableResult
    public func step(on batch: TokenBatch) throws -> Float {
        var stepRandom = SplitMix(seed: settings.seed ^ UInt64(step))
        let dropoutSeed = UInt32(truncatingIfNeeded: stepRandom.next())
        let (lossTensor, gradients) = try plans.plan(for: batch).run(batch, seed: dropoutSeed)
        try optimizer.step(gradients: gradients)
        let loss = try lossTensor.floats()[0]
        guard loss.isFinite else {
            throw LowRankError(.numerical, "the loss became \(loss) at step \(step + 1); the last checkpoint holds the adapter before it (lower the learning rate or clip gradients)",
                               context: [("step", "\(step + 1)")])
        }
        step += 1
        losses.append(loss)
        return loss
    }
}
