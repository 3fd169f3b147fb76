import Glibc
import LowRank

/// Optimizer steps on an adapter over batches the caller chooses: each step runs the forward
/// pass with its loss, the backward pass, and an AdamW step. Dropout is seeded from the run's seed
/// and the step number, so the same batches in the same order give the same adapter, whoever picks
/// them (`Trainer` from a dataset, or a Python loop through the C ABI).
public final class AdapterTraining {
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
        optimizer = try AdamWOptimizer(parameters: adapter.parameters, settings: try settings.optimizer(totalSteps: totalSteps),
                                       learningRateFactors: try settings.learningRateFactors(adapter))
        plans = PlanCache(model: model, adapter: adapter, training: true, checkpointing: settings.gradientCheckpointing, residual: model.residualDType(settings.residualDType))
    }

    /// One optimizer step on `batch`, after any micro-batches accumulated since the last one;
    /// returns the step's loss. A non-finite loss is an error naming the first op that produced a
    /// NaN or infinity, and the step is not taken: the adapter and optimizer stay as they were.
    @discardableResult
    public func step(on batch: TokenBatch) throws -> Float {
        guard pending == nil else {
            try accumulate(batch)
            return try applyAccumulated()
        }
        // One batch per step, the common case: its gradients go to the optimizer as they are, in
        // the plan's run (one submission), guarded by the loss read after it.
        precondition(queued == 0, "queued steps await their loss")
        return try complete(try queueStep(on: batch))
    }

    /// A step queued by `queueStep` whose loss `complete` has not read yet.
    public struct QueuedStep {
        let batch: TokenBatch
        let seed: UInt32
        let loss: Tensor
    }

    /// Steps queued by `queueStep` and not yet completed.
    private var queued = 0

    /// Queues the next optimizer step on `batch` (after those already queued) without reading its
    /// loss, so the device runs it while the host prepares the next: the optimizer takes it on the
    /// device only when its loss is finite, and takes none after a non-finite one. `complete`
    /// reads the losses, in order; the step counts then.
    public func queueStep(on batch: TokenBatch) throws -> QueuedStep {
        precondition(pending == nil, "accumulated micro-batches await their optimizer step")
        // The loss lives in the batch's input slot, which the step after next fills again.
        precondition(queued < CausalLMPlan.inputSlots, "at most \(CausalLMPlan.inputSlots) steps await their loss")
        let plan = try plans.plan(for: batch), seed = dropoutSeed(step: step + queued, microBatch: 0)
        let loss = try plan.trainingStep(batch, seed: seed, optimizer: optimizer)
        queued += 1
        return QueuedStep(batch: batch, seed: seed, loss: loss)
    }

    /// The loss of the oldest queued step, once it has run. A non-finite one is `step(on:)`'s
    /// error, and the adapter and optimizer are then as they were before that step: the device
    /// took none of the queued steps from it on, and they are dropped.
    public func complete(_ queuedStep: QueuedStep) throws -> Float {
        let loss = try queuedStep.loss.floats()[0]
        queued -= 1
        guard loss.isFinite else {
            queued = 0
            try optimizer.rewind(to: step)
            throw try plans.plan(for: queuedStep.batch).nonFiniteLossError(loss, of: queuedStep.batch, seed: queuedStep.seed,
                                                                           what: "the loss of step \(step + 1)", context: [("step", "\(step + 1)")])
        }
        return try finishStep(loss: loss)
    }

    /// Forward and backward on a micro-batch, refused (before its gradients reach the optimizer)
    /// when its loss is not finite.
    private func finiteRun(_ batch: TokenBatch, microBatch: Int) throws -> (loss: Tensor, gradients: [Tensor]) {
        let plan = try plans.plan(for: batch), seed = dropoutSeed(step: step, microBatch: microBatch)
        let result = try plan.run(batch, seed: seed)
        let loss = try result.loss.floats()[0]
        guard loss.isFinite else {
            throw try plan.nonFiniteLossError(loss, of: batch, seed: seed, what: "the loss of step \(step + 1)",
                                              context: [("step", "\(step + 1)")])
        }
        return result
    }

    /// Forward and backward on a micro-batch, its gradients added to those since the last
    /// optimizer step, weighted by its predicted tokens: micro-batches then step as one batch of
    /// all their rows would (the loss is the mean over every predicted token). Returns its loss.
    /// `dropoutDraw` picks the micro-batch's dropout masks from the step's seed (default: how many
    /// were accumulated before it), so that the processes of a data-parallel step draw apart.
    @discardableResult
    public func accumulate(_ batch: TokenBatch, dropoutDraw: Int? = nil) throws -> Float {
        let microBatch = pending?.microBatches ?? 0
        let (lossTensor, gradients) = try finiteRun(batch, microBatch: dropoutDraw ?? microBatch)
        let tokens = batch.predictedTokens
        // The plan's outputs are overwritten by its next run, so the sums are tensors of their own.
        let weighted = try gradients.map { try Ops.scale($0, by: Float(tokens)) }
        let sums = try pending.map { p in try zip(p.gradients, weighted).map { try Ops.add($0, $1) } } ?? weighted
        let loss = try lossTensor.floats()[0]
        pending = Pending(gradients: sums, tokens: (pending?.tokens ?? 0) + tokens,
                          weightedLoss: (pending?.weightedLoss ?? 0) + Double(loss) * Double(tokens), microBatches: microBatch + 1)
        return loss
    }

    /// The optimizer step with the gradients accumulated since the last one; returns the step's
    /// loss, the token-weighted mean of its micro-batches'. With `group`, the accumulated sums of
    /// every process are added first (one all-reduce), so each takes the step of all their
    /// micro-batches together; a process may then have accumulated none.
    @discardableResult
    public func applyAccumulated(across group: ProcessGroup? = nil) throws -> Float {
        var p: Pending
        if let group, group.size > 1 {
            p = try summed(over: group)
        } else if let local = pending {
            p = local
        } else {
            throw LowRankError(.invalidArgument, "no gradients to apply: accumulate at least one micro-batch since the last optimizer step")
        }
        pending = nil
        guard p.tokens > 0 else {
            throw LowRankError(.invalidArgument, "step \(step + 1) predicts no token on any process: its rows are one token long",
                               context: [("step", "\(step + 1)")])
        }
        try optimizer.step(gradients: try p.gradients.map { try Ops.scale($0, by: 1 / Float(p.tokens)) })
        return try finishStep(loss: Float(p.weightedLoss / Double(p.tokens)))
    }

    /// Micro-batches accumulated since the last optimizer step.
    public var pendingMicroBatches: Int { pending?.microBatches ?? 0 }

    /// Whether gradients await the optimizer step: accumulated, or set by `setPendingGradients`.
    public var hasPendingGradients: Bool { pending != nil }

    struct Pending {
        var gradients: [Tensor]
        var tokens: Int
        var weightedLoss: Double
        var microBatches: Int
    }

    var pending: Pending?

    /// The dropout seed of a micro-batch: drawn from the run's seed and the step, so that a step
    /// of one batch draws what `Trainer` always has.
    private func dropoutSeed(step: Int, microBatch: Int) -> UInt32 {
        var random = SplitMix(seed: settings.seed ^ UInt64(step))
        var seed = random.next()
        for _ in 0..<microBatch { seed = random.next() }
        return UInt32(truncatingIfNeeded: seed)
    }

    private func finishStep(loss: Float) throws -> Float {
        guard loss.isFinite else {
            throw LowRankError(.numerical, "the loss became \(loss) at step \(step + 1); the last checkpoint holds the adapter before it (lower the learning rate or clip gradients)",
                               context: [("step", "\(step + 1)")])
        }
        step += 1
        losses.append(loss)
        return loss
    }
}
