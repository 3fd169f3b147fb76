import LowRank

extension Trainer {
    /// What a checkpoint records of the run beside the training settings, so that `resume()`
    /// refuses to continue it with anything else: the data order (the batch size over all
    /// `processes`, so that a run resumes with another number of them when the batch of one
    /// micro-batch over all of them stays the same; the micro-batches per step; shuffling), the data
    /// itself (rows, tokens, longest row, which `--seq-len` bounds, and a digest of every token and
    /// label and of packed rows' sequence lengths), the adapter's shape and dropout, and the model
    /// (a digest of its config, the dtype of its projections and its vector weights: norms and
    /// biases, which tell fine-tunes of one architecture apart without reading every matrix).
    static func runRecord(settings: TrainingSettings, processes: Int, data: TokenDataset, model: LlamaModel, adapter: ModelAdapter) throws -> [(key: String, value: JSON)] {
        var tokens = Digest()
        for row in data.rows { tokens.add(row) }
        for row in data.labels ?? [] { tokens.add(row) }
        // Packed rows: where their sequences end (nothing is added unpacked, so older records still match).
        for lengths in data.sequenceLengths ?? [] { tokens.add(lengths) }
        var identity = Digest()
        identity.add(model.config.json.serialized)
        identity.add(model.projectionDType.rawValue)
        for (name, tensor) in model.tensors where tensor.shape.rank == 1 {
            identity.add(name)
            identity.add(try tensor.bytes())
        }
        let a = adapter.settings
        var adapterShape: [String: JSON] = [
            "r": .number(Double(a.rank)), "lora_alpha": .number(Double(a.alpha)), "lora_dropout": .number(Double(a.dropout)),
            "use_rslora": .bool(a.rsLoRA), "use_dora": .bool(a.dora), "modules": .array(adapter.layers.map { .string($0.path) }),
        ]
        // Recorded only when set, so checkpoints of runs without them still resume.
        for field in ["rank_pattern", "alpha_pattern"] where a.json[field] != .object([:]) { adapterShape[field] = a.json[field] }
        if a.bias != .none { adapterShape["bias"] = .string(a.bias.rawValue) }
        if let split = adapter.split { adapterShape["init_lora_weights"] = .string(split.initialization.peftName) }
        return [("batch_size", .number(Double(settings.batchSize * processes))),
                ("grad_accumulation_steps", .number(Double(settings.gradientAccumulationSteps))), ("shuffle", .bool(settings.shuffle)),
                ("rows", .number(Double(data.rows.count))), ("tokens", .number(Double(data.rows.reduce(0) { $0 + $1.count }))),
                ("longest_row", .number(Double(data.rows.map(\.count).max() ?? 0))), ("data_digest", .string(tokens.hex)),
                ("adapter", .object(adapterShape)), ("model", .string(identity.hex))]
    }
}
