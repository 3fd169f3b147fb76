import LowRank

/// A Llama-family decoder with its adapters built as one graph for a fixed batch shape: token
/// embedding, per block RMSNorm, RoPE, causal attention over grouped KV heads and a SwiGLU MLP
/// (each projection plain, LoRA or DoRA), final norm, and the LM head fused with the mean
/// next-token cross-entropy (`Op.linearCrossEntropy`). With `training`, the plan also yields the
/// gradient of every adapter tensor, in `ModelAdapter.parameters` order.
public final class CausalLMPlan {
    public let batch: Int
    public let sequence: Int
    /// Whether rows hold several sequences (`TokenBatch.sequenceStarts`).
    public let packed: Bool
    public let plan: ExecutionPlan
    private let ids: GraphTensor
    private let labels: GraphTensor
    /// A packed plan's inputs: each position's place in its sequence, and its sequence start.
    private let packing: (positions: GraphTensor, starts: GraphTensor)?
    private let decoder: CausalLMDecoderGraph
    private let backend: any Backend
    /// The input tensors of the runs that may be in flight at once (`Trainer` queues one step
    /// ahead), made on first use and fed in turn: a run's batch is written into the slot after the
    /// last run's, so it waits only for the run two before it, never allocates, and binds the
    /// tensors that run bound.
    private var slots: [[GraphTensor: Tensor]] = []
    /// Each slot's copy of its run's loss, which a training step's optimizer reads and the caller
    /// reads after the next run (which fills the other slot).
    private var losses: [Tensor] = []
    private var nextSlot = 0
    static let inputSlots = 2

    /// Labels that the loss skips: padding, and each row's last position (which predicts nothing).
    public static let ignoredLabel: Int32 = -100
    /// The fused LM head and loss: its blocks of logits, whose workspace `MemoryPlan` counts.
    public static let head = LinearCrossEntropyOptions(ignoreIndex: ignoredLabel)

    /// The most bytes of f32 logits a training step on the CPU holds whole.
    public static let heldLogitsBytes = 256 << 20

    /// Whether a training step's LM head is a product and `cross_entropy` over the whole
    /// `[rows, classes]` logits rather than the fused op: on the CPU (or planning for it) while the
    /// logits take at most `heldLogitsBytes`. The fused backward forms the logits a second time,
    /// three products of the head's size where the unfused head does two; on a GPU the fused
    /// head's memory wins, and without training both do one product.
    public static func holdsLogits(on backend: any Backend, rows: Int, classes: Int) -> Bool {
        let device = (backend as? PlanningBackend)?.device ?? backend
        return device is CPUBackend && rows * classes * DType.f32.byteSize <= heldLogitsBytes
    }

    /// `packed`: batches whose rows hold several sequences, as `TokenDataset.packed(into:)` makes them.
    /// `residual`: the dtype of the hidden state between decoder blocks (`LlamaModel.residualDType(_:)`).
    /// `inPlace`: outputs written over inputs that die at their op (`Graph.plan(outputs:inPlace:)`).
    public init(model: LlamaModel, adapter: ModelAdapter?, batch: Int, sequence: Int, training: Bool, checkpointing: Bool = false,
                residual: DType = .f32, packed: Bool = false, inPlace: Bool = true) throws {
        let config = model.config
        guard batch >= 1, sequence >= 2 else {
            throw LowRankError(.invalidArgument, "a batch needs at least one row of at least 2 tokens, got \(batch) × \(sequence)")
        }
        guard [.f32, .bf16, .f16].contains(residual) else {
            throw LowRankError(.invalidArgument, "the residual stream is held in f32, bf16 or f16, not \(residual)")
        }
        if let window = config.slidingWindow, sequence > window {
            // A window must hold 2 tokens for a sequence to predict anything, so below that no --seq-len helps.
            let advice = window >= 2 ? "use --seq-len \(window) or less" : "no sequence of 2 tokens fits in it (config.json's sliding_window)"
            throw LowRankError(.unsupported, "sequences of \(sequence) tokens exceed the model's sliding window of \(window), which this engine does not apply; \(advice)")
        }
        self.batch = batch
        self.sequence = sequence
        self.packed = packed
        backend = model.backend
        let t = batch * sequence
        let g = Graph(backend: model.backend)
        ids = try g.input("input_ids", [t], dtype: .i32)
        labels = try g.input("labels", [t], dtype: .i32)
        packing = packed ? (try g.input("positions", [t], dtype: .i32), try g.input("sequence_starts", [t], dtype: .i32)) : nil
        let positions = try packing?.positions ?? g.parameter("positions", try Tensor(ids: (0..<t).map { Int32($0 % sequence) }, on: model.backend))
        let decoder = try g.causalLMDecoder(model: model, adapter: adapter, ids: ids, positions: positions, sequence: sequence,
                                            training: training, checkpointing: checkpointing, residual: residual,
                                            attention: packing.map { .packed(starts: $0.starts) } ?? .causal)
        self.decoder = decoder
        let head = try g.lmHead(model, adapter: adapter, decoder: decoder, training: training)
        let loss = training && Self.holdsLogits(on: backend, rows: t, classes: config.vocabularySize)
            ? try g.crossEntropy(try g.linear(decoder.hidden, weight: head, label: "lm_head"), labels: labels, ignoreIndex: Self.ignoredLabel,
                                 label: "lm_head.loss")
            // The LM head and the loss fused: the [T, vocabulary] logits are formed a block at a time, never held.
            : try g.linearCrossEntropy(decoder.hidden, weight: head, labels: labels, options: Self.head, label: "lm_head.loss")
        let headCopy = adapter?.saved.contains { $0.path == SavedModule.head } ?? false
        let trainable = decoder.trainable + (training && headCopy ? [head] : [])
        let gradients = training && !trainable.isEmpty ? try g.gradients(of: loss, for: trainable, checkpointing: checkpointing) : []
        plan = try g.compile(outputs: [loss] + gradients, inPlace: inPlace)
    }

    /// Runs the plan on one batch: the mean loss over its predicted tokens and, when training, the
    /// adapter's gradients (valid until the next run). `seed` picks the dropout masks.
    public func run(_ batch: TokenBatch, seed: UInt32 = 0) throws -> (loss: Tensor, gradients: [Tensor]) {
        let out = try plan.run(try feeds(batch), seed: seed, replay: true)
        return (out[0], Array(out.dropFirst()))
    }

    /// A training step on one batch: the plan's run and `optimizer`'s step on its gradients, in
    /// one repeat, so that a GPU records them into one command buffer and replays it, one
    /// submission a step. The optimizer takes the step only when the loss is finite, and none
    /// after a non-finite one (`AdamWOptimizer.step(gradients:unlessNonFinite:)`); nothing is read.
    /// Returns the loss, in a tensor of the batch's input slot: valid until the run after next.
    public func trainingStep(_ batch: TokenBatch, seed: UInt32, optimizer: AdamWOptimizer) throws -> Tensor {
        let feeds = try feeds(batch), slot = (nextSlot + Self.inputSlots - 1) % Self.inputSlots
        if losses.count <= slot { losses.append(try Tensor(empty: [1], dtype: .f32, on: backend)) }
        let loss = losses[slot]
        let step = optimizer.nextStep(guarded: true) { outputs, step in
            try self.backend.run(.scale(1), inputs: [outputs[0]], outputs: [loss])
            try step(Array(outputs.dropFirst()), loss)
        }
        _ = try plan.run(feeds, seed: seed, replay: true, then: step)
        optimizer.stepTaken()
        return loss
    }

    /// The batch as the plan's inputs.
    func feeds(_ batch: TokenBatch) throws -> [GraphTensor: Tensor] {
        guard batch.rows == self.batch, batch.sequence == sequence, (batch.sequenceStarts != nil) == packed else {
            let kind = { (packed: Bool) in packed ? "packed " : "" }
            throw LowRankError(.shapeMismatch, "a plan for \(kind(packed))\(self.batch) × \(sequence) tokens was given a "
                               + "\(kind(batch.sequenceStarts != nil))\(batch.rows) × \(batch.sequence) batch")
        }
        var values: [GraphTensor: [Int32]] = [ids: batch.inputIDs, labels: batch.labels]
        if let packing, let starts = batch.sequenceStarts {
            values[packing.positions] = batch.positions
            values[packing.starts] = starts
        }
        let floats = decoder.feedValues(ids: batch.inputIDs)
        if slots.count < Self.inputSlots {
            let inputs = Array(values.keys) + Array(floats.keys)
            slots.append(Dictionary(uniqueKeysWithValues: try inputs.map { ($0, try Tensor(empty: $0.shape, dtype: $0.dtype, on: backend)) }))
        }
        let slot = slots[nextSlot]
        nextSlot = (nextSlot + 1) % Self.inputSlots
        for (input, v) in values {
            try v.withUnsafeBytes { try backend.write($0, to: slot[input]!.storage, offset: 0) }
        }
        for (input, v) in floats { try slot[input]!.assign(v) }
        return slot
    }
}
