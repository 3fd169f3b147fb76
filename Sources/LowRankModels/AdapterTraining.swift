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
        sums = MicroBatchSums(backend: model.backend)
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

    /// Forward and backward on a micro-batch, its gradients added to those since the last
    /// optimizer step, weighted by its predicted tokens: micro-batches then step as one batch of
    /// all their rows would (the loss is the mean over every predicted token). Returns its loss,
    /// read before its gradients are added: a non-finite one is `step(on:)`'s error, and the
    /// micro-batch adds nothing. `dropoutDraw` picks the micro-batch's dropout masks from the
    /// step's seed (default: how many were accumulated before it), so that the processes of a
    /// data-parallel step draw apart.
    @discardableResult
    public func accumulate(_ batch: TokenBatch, dropoutDraw: Int? = nil) throws -> Float {
        let run = try runMicroBatch(batch, dropoutDraw: dropoutDraw)
        let loss = try run.loss.floats()[0]
        guard loss.isFinite else { throw try nonFiniteLossError(loss, of: batch, seed: run.seed) }
        try add(run.gradients, loss: run.loss, of: batch, unread: nil)
        pending!.weightedLoss += Double(loss) * Double(batch.predictedTokens)
        return loss
    }

    /// `accumulate` without reading the micro-batch's loss, so that nothing waits for it: its
    /// gradients and weighted loss are added on the device. The optimizer step
    /// (`applyAccumulated`) is taken on the device only when every queued loss is finite, and
    /// reads them after it is queued; a non-finite one is then its error.
    public func queueMicroBatch(_ batch: TokenBatch, dropoutDraw: Int? = nil) throws {
        // Gradients set from the host have no device loss sum to guard the step with.
        guard pending == nil || pending?.lossSum != nil else {
            try accumulate(batch, dropoutDraw: dropoutDraw)
            return
        }
        let run = try runMicroBatch(batch, dropoutDraw: dropoutDraw)
        let copy = try sums.copy(loss: run.loss, microBatch: pending?.unread.count ?? 0)
        try add(run.gradients, loss: run.loss, of: batch, unread: UnreadLoss(loss: copy, tokens: batch.predictedTokens, batch: batch, seed: run.seed))
    }

    /// Forward and backward on a micro-batch of the next step, with its dropout seed.
    private func runMicroBatch(_ batch: TokenBatch, dropoutDraw: Int?) throws -> (loss: Tensor, gradients: [Tensor], seed: UInt32) {
        let plan = try plans.plan(for: batch), seed = dropoutSeed(step: step, microBatch: dropoutDraw ?? pendingMicroBatches)
        let (loss, gradients) = try plan.run(batch, seed: seed)
        return (loss, gradients, seed)
    }

    /// Adds a micro-batch's gradients and loss, weighted by its tokens, to the pending sums (into
    /// the tensors `sums` keeps, the plan's outputs being overwritten by its next run).
    private func add(_ gradients: [Tensor], loss: Tensor, of batch: TokenBatch, unread: UnreadLoss?) throws {
        let tokens = batch.predictedTokens
        guard var p = pending else {
            let (gradientSums, lossSum) = try sums.start(gradients, loss: loss, tokens: tokens)
            pending = Pending(gradients: gradientSums, tokens: tokens, weightedLoss: 0, microBatches: 1, unread: unread.map { [$0] } ?? [], lossSum: lossSum)
            return
        }
        try sums.add(gradients, loss: loss, tokens: tokens, to: p.gradients, lossSum: p.lossSum)
        p.tokens += tokens
        p.microBatches += 1
        if let unread { p.unread.append(unread) }
        pending = p
    }

    /// The error for a micro-batch of the next step whose loss is not finite.
    private func nonFiniteLossError(_ loss: Float, of batch: TokenBatch, seed: UInt32) throws -> LowRankError {
        try plans.plan(for: batch).nonFiniteLossError(loss, of: batch, seed: seed, what: "the loss of step \(step + 1)", context: [("step", "\(step + 1)")])
    }

    /// Reads the pending losses `queueMicroBatch` left unread; a non-finite one is `step(on:)`'s
    /// error, and the pending gradients are dropped.
    func readQueuedLosses() throws {
        guard var p = pending else { return }
        pending = nil
        try readQueuedLosses(&p)
        pending = p
    }

    /// Reads the losses `queueMicroBatch` left unread into `p`'s weighted loss, in order (the
    /// host waits once, for them all); a non-finite one is `step(on:)`'s error.
    func readQueuedLosses(_ p: inout Pending) throws {
        if p.unread.count > 1 { try model.backend.synchronize() }
        for u in p.unread {
            let loss = try u.loss.floats()[0]
            guard loss.isFinite else { throw try nonFiniteLossError(loss, of: u.batch, seed: u.seed) }
            p.weightedLoss += Double(loss) * Double(u.tokens)
        }
        p.unread = []
    }

    /// The optimizer step with the gradients accumulated since the last one; returns the step's
    /// loss, the token-weighted mean of its micro-batches'. With `group`, the accumulated sums of
    /// every process are added first (one all-reduce), so each takes the step of all their
    /// micro-batches together; a process may then have accumulated none. Micro-batches queued
    /// without their loss read: the step is queued guarded by their weighted losses' sum (not
    /// taken when one is not finite), then their losses are read; a non-finite one is the error,
    /// and the adapter and optimizer are as they were before the step.
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
        // Micro-batches predicting nothing have a NaN loss, which is the error to give.
        if p.tokens == 0 { try readQueuedLosses(&p) }
        guard p.tokens > 0 else {
            throw LowRankError(.invalidArgument, "step \(step + 1) predicts no token on any process: its rows are one token long",
                               context: [("step", "\(step + 1)")])
        }
        // In place: the sums are dead once averaged.
        for g in p.gradients { try g.backend.run(.scale(1 / Float(p.tokens)), inputs: [g], outputs: [g]) }
        let guarded = p.unread.isEmpty ? nil : p.lossSum
        try optimizer.step(gradients: p.gradients, unlessNonFinite: guarded)
        do {
            try readQueuedLosses(&p)
        } catch {
            try optimizer.rewind(to: step)
            throw error
        }
        return try finishStep(loss: Float(p.weightedLoss / Double(p.tokens)))
    }

    /// Micro-batches accumulated since the last optimizer step.
    public var pendingMicroBatches: Int { pending?.microBatches ?? 0 }

    /// Whether gradients await the optimizer step: accumulated, or set by `setPendingGradients`.
    public var hasPendingGradients: Bool { pending != nil }

    struct Pending {
        var gradients: [Tensor]
        var tokens: Int
        /// Of the micro-batches whose losses were read.
        var weightedLoss: Double
        var microBatches: Int
        /// Micro-batches queued without their loss read, in order.
        var unread: [UnreadLoss] = []
        /// The device sum of the weighted losses (nil for gradients set from the host).
        var lossSum: Tensor?
    }

    /// A queued micro-batch's loss, in a tensor of `sums`, and what finds the op that made it non-finite.
    struct UnreadLoss {
        let loss: Tensor
        let tokens: Int
        let batch: TokenBatch
        let seed: UInt32
    }

    var pending: Pending?
    private let sums: MicroBatchSums

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
