import LowRank

/// A Llama-family decoder with its adapters built as one graph for a fixed batch shape: token
/// embedding, per block RMSNorm, RoPE, causal attention over grouped KV heads and a SwiGLU MLP
/// (each projection plain, LoRA or DoRA), final norm, and the LM head fused with the mean
/// next-token cross-entropy (`Op.linearCrossEntropy`). With `training`, the plan also yields the
/// gradient of every adapter tensor, in `ModelAdapter.parameters` order.
public final class CausalLMPlan {
    public let batch: Int
    public let sequence: Int
    public let plan: ExecutionPlan
    private let ids: GraphTensor
    private let labels: GraphTensor
    private let backend: any Backend

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

    public init(model: LlamaModel, adapter: ModelAdapter?, batch: Int, sequence: Int, training: Bool, checkpointing: Bool = false) throws {
        let config = model.config
        guard batch >= 1, sequence >= 2 else {
            throw LowRankError(.invalidArgument, "a batch needs at least one row of at least 2 tokens, got \(batch) × \(sequence)")
        }
        if let window = config.slidingWindow, sequence > window {
            // A window must hold 2 tokens for a sequence to predict anything, so below that no --seq-len helps.
            let advice = window >= 2 ? "use --seq-len \(window) or less" : "no sequence of 2 tokens fits in it (config.json's sliding_window)"
            throw LowRankError(.unsupported, "sequences of \(sequence) tokens exceed the model's sliding window of \(window), which this engine does not apply; \(advice)")
        }
        self.batch = batch
        self.sequence = sequence
        backend = model.backend
        let t = batch * sequence
        let g = Graph(backend: model.backend)
        ids = try g.input("input_ids", [t], dtype: .i32)
        labels = try g.input("labels", [t], dtype: .i32)
        let positions = try g.parameter("positions", try Tensor(ids: (0..<t).map { Int32($0 % sequence) }, on: model.backend))
        let inverseFrequencies = try g.parameter("rope.inv_freq", model.inverseFrequencies)
        let frozen = { (name: String) in try g.parameter(name, try model.weight(name)) }

        let adapters = Dictionary(uniqueKeysWithValues: (adapter?.layers ?? []).map { ($0.path, $0.adapter) })
        let trainedBiases = Dictionary(uniqueKeysWithValues: (adapter?.biases ?? []).map { ($0.path, $0.tensor) })
        var trainable: [GraphTensor] = []
        var biasParameters: [String: GraphTensor] = [:]
        var moduleIndex: UInt32 = 0
        let project = { (x: GraphTensor, path: String, projection: DecoderProjection) throws -> GraphTensor in
            moduleIndex += 1
            let weight = try frozen(path + ".weight")
            let bias: GraphTensor?
            if !config.hasBias(projection.rawValue) {
                bias = nil
            } else if let trained = trainedBiases[path] {
                bias = try g.parameter(path + ".bias", trained, trainable: training)
                biasParameters[path] = bias
            } else {
                bias = try frozen(path + ".bias")
            }
            guard let layer = adapters[path] else { return try g.linear(x, weight: weight, bias: bias, label: path) }
            let lora = layer.lora
            let a = try g.parameter(ModelAdapter.key(path, "lora_A.weight"), lora.a, trainable: training)
            let b = try g.parameter(ModelAdapter.key(path, "lora_B.weight"), lora.b, trainable: training)
            let options = lora.options(seed: moduleIndex)
            switch layer {
            case .lora:
                trainable += [a, b]
                return try g.lora(x, weight: weight, bias: bias, a: a, b: b, options: options, label: path)
            case .dora(let d):
                let m = try g.parameter(ModelAdapter.key(path, "lora_magnitude_vector"), d.magnitude, trainable: training)
                let normSquared = try g.parameter(path + ".weight_norm_squared", d.weightNormSquared)
                trainable += [a, b, m]
                return try g.dora(x, weight: weight, bias: bias, a: a, b: b, magnitude: m, weightNormSquared: normSquared,
                                  options: DoRAOptions(lora: options, trainableMagnitude: training), label: path)
            }
        }

        let shape = DecoderBlockShape(tokens: t, sequence: sequence, queryHeads: config.headCount, keyValueHeads: config.keyValueHeadCount,
                                      headDim: config.headDim, rmsNormEpsilon: config.rmsNormEpsilon)
        var h = try g.embedding(try frozen("model.embed_tokens.weight"), ids: ids, label: "embed_tokens")
        // A 16-bit table's rows widen exactly: the residual stream stays f32 whatever the weights' dtype.
        if h.dtype != .f32 { h = try g.apply(.cast(.f32), [h], label: "embed_tokens.f32")[0] }
        for layer in 0..<config.layerCount {
            let prefix = "model.layers.\(layer)."
            let block = {
                try g.decoderBlock(h, shape: shape, inverseFrequencies: inverseFrequencies, positions: positions, prefix: prefix,
                                   normWeight: { try frozen(prefix + $0 + ".weight") },
                                   project: { try project($0, prefix + $1.path, $1) })
            }
            h = try checkpointing ? g.checkpointed(block) : block()
        }
        let final = try g.rmsNorm(h, weight: try frozen("model.norm.weight"), epsilon: config.rmsNormEpsilon, label: "model.norm")
        let lmHeadName = config.tiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"
        let head = try frozen(lmHeadName)
        let loss = training && Self.holdsLogits(on: backend, rows: t, classes: config.vocabularySize)
            ? try g.crossEntropy(try g.linear(final, weight: head, label: "lm_head"), labels: labels, ignoreIndex: Self.ignoredLabel,
                                 label: "lm_head.loss")
            // The LM head and the loss fused: the [T, vocabulary] logits are formed a block at a time, never held.
            : try g.linearCrossEntropy(final, weight: head, labels: labels, options: Self.head, label: "lm_head.loss")
        // The biases' gradients last, in the adapter's order, as `ModelAdapter.parameters` lists them.
        trainable += (adapter?.biases ?? []).compactMap { biasParameters[$0.path] }
        let gradients = training && !trainable.isEmpty ? try g.gradients(of: loss, for: trainable, checkpointing: checkpointing) : []
        plan = try g.compile(outputs: [loss] + gradients)
    }

    /// Runs the plan on one batch: the mean loss over its predicted tokens and, when training, the
    /// adapter's gradients (valid until the next run). `seed` picks the dropout masks.
    public func run(_ batch: TokenBatch, seed: UInt32 = 0) throws -> (loss: Tensor, gradients: [Tensor]) {
        let out = try plan.run(try feeds(batch), seed: seed)
        return (out[0], Array(out.dropFirst()))
    }

    /// The batch as the plan's inputs.
    func feeds(_ batch: TokenBatch) throws -> [GraphTensor: Tensor] {
        guard batch.rows == self.batch, batch.sequence == sequence else {
            throw LowRankError(.shapeMismatch, "a plan for \(self.batch) × \(sequence) tokens was given a \(batch.rows) × \(batch.sequence) batch")
        }
        return [ids: try Tensor(ids: batch.inputIDs, on: backend), labels: try Tensor(ids: batch.labels, on: backend)]
    }
}
