import Glibc
import LowRank

/// How `Trainer` trains: the optimizer's hyperparameters (PyTorch's AdamW defaults), the data
/// order, the length of the run, and checkpointing.
public struct TrainingSettings: Hashable, Sendable {
    public typealias Schedule = LearningRateSchedule.Kind

    public var learningRate: Double = 2e-4
    public var warmupSteps = 0
    public var schedule: Schedule = .constant
    public var weightDecay = 0.01
    /// Clip the global gradient norm to this; nil: no clipping.
    public var maxGradientNorm: Float?
    /// Rows per micro-batch of one process.
    public var batchSize = 4
    /// Micro-batches per optimizer step, their gradients summed weighted by predicted tokens.
    public var gradientAccumulationSteps = 1
    /// Optimizer steps; nil: `epochs` passes over the data.
    public var steps: Int?
    public var epochs = 1
    public var gradientCheckpointing = false
    /// The dtype the hidden state is held in between decoder blocks: what gradient checkpointing
    /// keeps of each block, and what the next block reads. f32 keeps every value a block computes;
    /// bf16 or f16 rounds each block's output (to nearest even) and its gradient, as PyTorch holds a
    /// 16-bit model's hidden states, halving what checkpointing keeps. nil (the default): the frozen
    /// weights' compute dtype (`LlamaModel.residualDType(_:)`).
    public var residualDType: DType?
    public var seed: UInt64 = 0
    public var shuffle = true
    /// Write a checkpoint every this many steps; nil: only at the end.
    public var saveEvery: Int?
    /// LoRA+: B's learning rate (and a DoRA magnitude's) is this times A's, as PEFT's
    /// `create_loraplus_optimizer` groups them (its `loraplus_weight_decay` taken as `weightDecay`);
    /// nil: one learning rate.
    public var loraPlusRatio: Double?

    public init() {}

    /// The optimizer's settings; linear and cosine schedules need their length.
    public func optimizer(totalSteps: Int?) throws -> AdamWOptimizer.Settings {
        let schedule = try LearningRateSchedule(self.schedule, warmupSteps: warmupSteps, totalSteps: totalSteps)
        return AdamWOptimizer.Settings(learningRate: learningRate, weightDecay: weightDecay, schedule: schedule, maxGradientNorm: maxGradientNorm)
    }

    /// Each adapter parameter's learning-rate factor: with LoRA+, `loraPlusRatio` for what PEFT's
    /// `create_loraplus_optimizer` puts in its B groups (`lora_B`, and every vector), 1 otherwise.
    func learningRateFactors(_ adapter: ModelAdapter) throws -> [Double] {
        guard let ratio = loraPlusRatio else { return adapter.parameters.map { _ in 1 } }
        guard ratio.isFinite, ratio > 0 else { throw LowRankError(.invalidArgument, "the LoRA+ learning-rate ratio must be positive, got \(ratio)") }
        return adapter.parameters.map { $0.name.contains("lora_B") || $0.tensor.shape.rank == 1 ? ratio : 1 }
    }
}

/// What the trainer reports after each step.
public struct TrainingProgress: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var loss: Float
    /// Predicted tokens of this step's batch.
    public var tokens: Int
    public var seconds: Double
    /// The validation loss after this step, when validation ran, and whether it is the best so far.
    public var validation: (loss: Double, isBest: Bool)?
}

/// Trains an adapter on a dataset: AdamW steps over batches in a seeded order, checkpoints
/// (adapter, optimizer moments, step, what the run was made with) written atomically into
/// `<output>/checkpoint-<step>`, and `resume()` continuing bit for bit from the latest one. While it
/// exists it holds the `OutputLock` of `output`, so a second trainer on the same folder is refused.
public final class Trainer {
    public let training: AdapterTraining
    public let data: TokenDataset
    /// Where checkpoints, the adapter and the loss curve go: nil on every process of a group but rank 0.
    public let output: String?
    /// The processes training together (nil: this one alone); each takes its share of every batch.
    public let group: ProcessGroup?
    public var model: LlamaModel { training.model }
    public var adapter: ModelAdapter { training.adapter }
    public var settings: TrainingSettings { training.settings }
    public let totalSteps: Int
    public var step: Int { training.step }
    /// The loss of every step taken, resumed ones included.
    public var losses: [Float] { training.losses }
    /// Held-out data evaluated during training; nil: none.
    public var validation: TrainingValidation?
    /// With `profiles`, `train` profiles its steps on every backend they use (`Backend.startProfiling`):
    /// `profile` then holds each op kind's calls, dispatches and time per step, which the final
    /// checkpoint's `trainer_state.json` records as `profile`. Validation runs and checkpoints
    /// taken during the loop count towards the steps'.
    public var profiles = false
    public internal(set) var profile: StepProfile?
    private let lock: OutputLock?
    /// What the run was made with beside the training settings, as checkpoints record it; empty
    /// in a process that writes no checkpoints (another rank's, or one without an output).
    let runRecord: [(key: String, value: JSON)]

    public init(model: LlamaModel, adapter: ModelAdapter, data: TokenDataset, settings: TrainingSettings, output: String?,
                group: ProcessGroup? = nil) throws {
        guard settings.batchSize >= 1 else { throw LowRankError(.invalidArgument, "the batch size must be at least 1, got \(settings.batchSize)") }
        guard settings.gradientAccumulationSteps >= 1 else {
            throw LowRankError(.invalidArgument, "the gradient accumulation steps must be at least 1, got \(settings.gradientAccumulationSteps)")
        }
        guard settings.epochs >= 1, (settings.steps ?? 1) >= 1, (settings.saveEvery ?? 1) >= 1 else {
            throw LowRankError(.invalidArgument, "steps, epochs and the checkpoint interval must be at least 1")
        }
        self.data = data
        self.group = group
        let output = (group?.rank ?? 0) == 0 ? output : nil
        self.output = output
        totalSteps = Self.totalSteps(of: settings, rows: data.rows.count, processes: group?.size ?? 1)
        training = try AdapterTraining(model: model, adapter: adapter, settings: settings, totalSteps: totalSteps)
        runRecord = output == nil ? [] : try Self.runRecord(settings: settings, processes: group?.size ?? 1, data: data, model: model, adapter: adapter)
        lock = try output.map { try OutputLock(folder: $0) }
        if let output {
            try Self.checkWritable(output)
            try Self.recoverCheckpoints(in: output)
        }
    }

    /// The run's length in optimizer steps: `steps`, else `epochs` passes over `rows` rows, each
    /// step taking `rowsPerStep` of them.
    public static func totalSteps(of settings: TrainingSettings, rows: Int, processes: Int = 1) -> Int {
        settings.steps ?? settings.epochs * batchesPerEpoch(rows, rowsPerStep(settings, processes: processes))
    }

    /// Rows of one optimizer step over every process and micro-batch.
    static func rowsPerStep(_ settings: TrainingSettings, processes: Int) -> Int {
        settings.batchSize * settings.gradientAccumulationSteps * processes
    }

    static func batchesPerEpoch(_ rows: Int, _ batchSize: Int) -> Int { (rows + batchSize - 1) / batchSize }

    static let probeName = ".lowrank-write-test"

    /// Fails now, naming the folder, rather than after hours of training.
    static func checkWritable(_ folder: String) throws {
        try FileIO.makeDirectories(folder)
        let probe = folder + "/" + probeName
        try FileIO.writeAtomically(probe, text: "")
        unlink(probe)
    }

    /// The rows of step `step`'s batch: epochs walk the data in order, or in a permutation drawn
    /// from the seed and the epoch, so any step's batch is known without replaying the others.
    func rows(forStep step: Int) -> ArraySlice<Int> {
        let batchSize = Self.rowsPerStep(settings, processes: group?.size ?? 1)
        let perEpoch = Self.batchesPerEpoch(data.rows.count, batchSize)
        let (epoch, index) = step.quotientAndRemainder(dividingBy: perEpoch)
        var order = Array(data.rows.indices)
        if settings.shuffle {
            var random = SplitMix(seed: settings.seed &+ UInt64(epoch) &* 0xD1B5_4A32_D192_ED03)
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(random.next() % UInt64(i + 1))) }
        }
        return order[(index * batchSize)..<min((index + 1) * batchSize, order.count)]
    }

    /// Takes one optimizer step on the next batch and returns its loss.
    @discardableResult
    public func trainStep() throws -> TrainingProgress {
        let clock = ContinuousClock(), start = clock.now
        let rows = rows(forStep: step)
        let loss: Float
        if settings.gradientAccumulationSteps == 1, (group?.size ?? 1) == 1 {
            loss = try training.step(on: data.batch(rows))
        } else {
            loss = try accumulatedStep(rows)
        }
        let tokens = rows.reduce(0) { $0 + max(0, data.rows[$1].count - 1) }
        return TrainingProgress(step: step, totalSteps: totalSteps, loss: loss, tokens: tokens, seconds: (clock.now - start).inSeconds)
    }

    /// Trains to `totalSteps`, checkpointing every `saveEvery` steps, then writes the adapter (and a
    /// final checkpoint) to `output`.
    public func train(progress: (TrainingProgress) -> Void = { _ in }) throws {
        if profiles { try profilingSteps { try trainSteps(progress) } } else { try trainSteps(progress) }
        if let output {
            try saveCheckpoint()  // refuses an adapter that is not finite
            try adapter.save(to: output)
            try LossCurve(losses: losses, validation: validation?.losses ?? []).write(to: output + "/loss.svg")
        }
    }

    private func trainSteps(_ progress: (TrainingProgress) -> Void) throws {
        guard settings.gradientAccumulationSteps == 1, (group?.size ?? 1) == 1 else {
            while step < totalSteps { try finish(try trainStep(), progress) }
            return
        }
        // One step queued ahead: the device runs step t + 1 while the host reads step t's loss,
        // except after a step whose adapter is read (a checkpoint or validation is due).
        let clock = ContinuousClock()
        var waiting: (queued: AdapterTraining.QueuedStep, rows: ArraySlice<Int>)?
        var since = clock.now
        while step < totalSteps {
            let next = step + (waiting == nil ? 0 : 1)
            var current: (queued: AdapterTraining.QueuedStep, rows: ArraySlice<Int>)?
            if next < totalSteps, waiting == nil || !adapterIsRead(afterStep: next) {
                let rows = rows(forStep: next)
                current = (try training.queueStep(on: data.batch(rows)), rows)
                try training.model.backend.commit()
            }
            if let (queued, rows) = waiting {
                let loss = try training.complete(queued)
                let tokens = rows.reduce(0) { $0 + max(0, data.rows[$1].count - 1) }
                try finish(TrainingProgress(step: step, totalSteps: totalSteps, loss: loss, tokens: tokens, seconds: (clock.now - since).inSeconds), progress)
                since = clock.now
            }
            waiting = current
        }
    }

    /// Whether the adapter is read once `count` steps are taken: a checkpoint or validation is due.
    private func adapterIsRead(afterStep count: Int) -> Bool {
        settings.saveEvery.map { count % $0 == 0 } == true || validation.map { count % $0.every == 0 } == true || count == totalSteps
    }

    /// Validates and checkpoints after a step, as due, and reports it.
    private func finish(_ taken: TrainingProgress, _ progress: (TrainingProgress) -> Void) throws {
        var stepProgress = taken
        stepProgress.validation = try validateIfDue()
        progress(stepProgress)
        let due = stepProgress.validation?.isBest == true || settings.saveEvery.map { step % $0 == 0 } == true
        if due, step < totalSteps { try saveCheckpoint() }
    }

    // MARK: Checkpoints

    /// Writes `checkpoint-<step>` beside the others, whole or not at all, then removes the older
    /// ones but the best (see `TrainingValidation`).
    public func saveCheckpoint() throws {
        guard let output else { return }
        let final = output + "/checkpoint-\(step)"
        let record = Dictionary(uniqueKeysWithValues: runRecord.map { ($0.key, $0.value) }).merging(validationRecord) { $1 }.merging(profileRecord) { $1 }
        try training.writeCheckpoint(to: final, extra: record)
        for (older, _) in Self.checkpoints(in: output) where older != final && older != bestCheckpoint { try FileIO.removeTree(older) }
    }

    /// Complete checkpoints in `folder`, newest first.
    static func checkpoints(in folder: String) -> [(path: String, step: Int)] {
        let names = (try? FileIO.contents(ofDirectory: folder)) ?? []
        return names.compactMap { name -> (String, Int)? in
            guard let step = checkpointStep(name), AdapterTraining.isCheckpoint("\(folder)/\(name)") else { return nil }
            return ("\(folder)/\(name)", step)
        }.sorted { $0.1 > $1.1 }
    }

    /// N for a folder named `checkpoint-N`.
    static func checkpointStep(_ name: String) -> Int? {
        name.hasPrefix("checkpoint-") ? Int(name.dropFirst("checkpoint-".count)) : nil
    }

    /// Continues from the newest checkpoint in `output`: the adapter, the optimizer and the step,
    /// so the steps that follow are those an unbroken run takes. Returns the step resumed at, or
    /// nil when there is no checkpoint. A checkpoint made with other data, another model or adapter,
    /// or other settings is an error naming the first that differs, recorded and now.
    @discardableResult
    public func resume() throws -> Int? {
        if let group, group.size > 1 { return try resume(from: group) }
        guard let output, let latest = Self.checkpoints(in: output).first else { return nil }
        let state = try AdapterTraining.checkpointState(in: latest.path)
        try AdapterTraining.refuseMismatch(state, runRecord, folder: latest.path)
        return try restore(fromCheckpoint: latest.path, state: state)
    }

    /// The adapter, the optimizer, the step and the validation record from a checked checkpoint;
    /// returns the step.
    func restore(fromCheckpoint folder: String, state: JSON) throws -> Int {
        try training.restore(fromCheckpoint: folder, state: state)
        restoreValidation(from: state)
        return step
    }
}
