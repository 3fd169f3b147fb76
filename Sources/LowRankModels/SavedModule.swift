import LowRank

/// One of PEFT's `modules_to_save` (its `ModulesToSaveWrapper`): the token embedding, an RMSNorm,
/// a projection or the LM head trained in full, as an f32 copy of the frozen module's weight (and a
/// projection's bias) that the model's graph uses in place of it, with its own optimizer state.
/// PEFT saves it as `base_model.model.<path>.weight` (and `.bias`).
public struct SavedModule {
    /// `model.embed_tokens`, `model.layers.<i>.input_layernorm`, `…post_attention_layernorm`,
    /// `…self_attn.q_proj` (any projection), `model.norm` or `lm_head`.
    public let path: String
    /// The trained copy, the frozen weight's shape, f32.
    public let weight: Tensor
    /// A projection's bias (Qwen2's q/k/v), copied and trained with its weight as PEFT copies the whole module.
    public let bias: Tensor?
    /// Whether this copy of the token embedding is the LM head's too (PEFT's `ensure_weight_tying`
    /// on a model with tied embeddings: one shared copy, saved under both modules' names).
    public let tiedHead: Bool

    public static let embedding = "model.embed_tokens"
    public static let head = "lm_head"

    /// The names in `adapter_model.safetensors`.
    public var key: String { ModelAdapter.key(path, "weight") }
    public var biasKey: String { ModelAdapter.key(path, "bias") }
    /// The LM head's name for a tied copy, which PEFT saves a second time under it.
    static let headKey = ModelAdapter.key(head, "weight")

    init(path: String, weight: Tensor, bias: Tensor? = nil, settings: AdapterSettings, config: LlamaConfig) {
        (self.path, self.weight, self.bias, tiedHead) = (path, weight, bias, path == Self.embedding && Self.sharesHead(settings, config))
    }

    /// The copy's tensors by their names, in `ModelAdapter.parameters` order.
    var parameters: [(name: String, tensor: Tensor)] {
        [(key, weight)] + (bias.map { [(biasKey, $0)] } ?? [])
    }

    /// Whether the module at `path` has a bias that its copy holds (a projection's, on a model with biases).
    static func hasBias(_ path: String, _ config: LlamaConfig) -> Bool {
        config.projections.contains { path.hasSuffix("." + $0.path) && config.hasBias($0.name) }
    }

    /// Whether the embedding's copy is the LM head's too: PEFT's `ensure_weight_tying` on a tied model.
    static func sharesHead(_ settings: AdapterSettings, _ config: LlamaConfig) -> Bool {
        settings.ensureWeightTying && config.tiedEmbeddings
    }

    /// The model weight `path`'s copy starts from: with tie_word_embeddings the LM head is the
    /// embedding (PEFT's default, `ensure_weight_tying=False`, then copies it apart from the embedding).
    static func frozenName(_ path: String, _ config: LlamaConfig) -> String {
        path == head && config.tiedEmbeddings ? embedding + ".weight" : path + ".weight"
    }

    /// The modules that can train in full, in model order (as `ModelAdapter.parameters` lists them).
    static func trainable(_ config: LlamaConfig) -> [String] {
        [embedding] + (0..<config.layerCount).flatMap { layer in
            ["model.layers.\(layer).input_layernorm", "model.layers.\(layer).post_attention_layernorm"] + config.projections.map { "model.layers.\(layer).\($0.path)" }
        } + ["model.norm", head]
    }

    /// Whether `path` is a projection (a linear layer LoRA can target too; its copy then replaces the adapter, as PEFT's wrapper does).
    static func isProjection(_ path: String, _ config: LlamaConfig) -> Bool {
        config.projections.contains { path.hasSuffix("." + $0.path) } && path.hasPrefix("model.layers.")
    }

    /// The modules `settings.modulesToSave` names on a model of `config`, in model order. PEFT
    /// wraps every module whose path ends with a listed name (`_set_trainable`); a name matching a
    /// module other than these (a projection, a container), or matching none, is refused. With
    /// `sharesHead`, the embedding or the LM head named is the one tied copy, the embedding's (PEFT's
    /// `_add_modules_to_save_to_tie`).
    static func paths(_ settings: AdapterSettings, _ config: LlamaConfig) throws -> [String] {
        guard let names = settings.modulesToSave else { return [] }
        // Every module of the model, containers too, as PyTorch's named_modules lists them (a tied LM head among them).
        var modules: Set<String> = [head]
        for (name, _) in config.expectedTensors {
            let parts = name.split(separator: ".").dropLast()
            for n in 1...parts.count { modules.insert(parts.prefix(n).joined(separator: ".")) }
        }
        for name in names {
            let matched = modules.filter { $0.hasSuffix(name) }.sorted()
            guard !matched.isEmpty else {
                throw LowRankError(.invalidArgument, "modules_to_save names \"\(name)\", which matches no module of this \(config.modelType) model")
            }
            if let other = matched.first(where: { !trainable(config).contains($0) }) {
                throw LowRankError(.unsupported, "modules_to_save \"\(name)\" matches \(other); only the token embedding (embed_tokens), the RMSNorms, the projections and the LM head (lm_head) train in full here")
            }
        }
        var chosen = trainable(config).filter { path in names.contains { path.hasSuffix($0) } }
        if sharesHead(settings, config), chosen.contains(head) {
            chosen = [embedding] + chosen.filter { $0 != head && $0 != embedding }
        }
        if chosen.contains(embedding), settings.trainableTokenIndices != nil {
            // PEFT's words: the embedding cannot both train in full and train rows.
            throw LowRankError(.invalidArgument, "modules_to_save trains the token embedding in full and trainable_token_indices trains its rows: name it in one, not both")
        }
        if config.tiedEmbeddings, chosen.contains(head), settings.trainableTokenIndices != nil {
            throw LowRankError(.unsupported, "modules_to_save trains the LM head in full and trainable_token_indices ties its rows to the embedding's on this model (tie_word_embeddings): name lm_head or the token ids, not both")
        }
        if settings.bias != .none, let biased = chosen.first(where: { hasBias($0, config) }) {
            throw LowRankError(.unsupported, "modules_to_save copies \(biased) with its bias, which bias \"\(settings.bias.rawValue)\" also trains: use bias \"none\" (the copy's bias trains with it)")
        }
        return chosen
    }

    /// `paths` on `model`, whose projections must be floating point to train in full (PEFT's
    /// copy of a quantized module is refused by PyTorch: its weight cannot require a gradient).
    static func paths(_ settings: AdapterSettings, on model: LlamaModel) throws -> [String] {
        let chosen = try paths(settings, model.config)
        for projection in chosen where isProjection(projection, model.config) {
            let dtype = try model.weight(projection + ".weight").dtype
            guard !dtype.isQuantized else {
                throw LowRankError(.unsupported, "modules_to_save trains \(projection) in full, which is quantized to \(dtype) here; load the model unquantized")
            }
        }
        return chosen
    }

    /// New copies of the modules `settings` names (PEFT's start: the frozen weights, so the model is unchanged).
    static func starting(_ settings: AdapterSettings, on model: LlamaModel) throws -> [SavedModule] {
        try paths(settings, on: model).map { path in
            // Copied on the device (a planning backend holds no values to read), widened or dequantized to f32.
            let copy = { (name: String) in try Ops.cast(try model.weight(name), to: .f32) }
            return SavedModule(path: path, weight: try copy(frozenName(path, model.config)), bias: try hasBias(path, model.config) ? copy(path + ".bias") : nil,
                               settings: settings, config: model.config)
        }
    }
}
