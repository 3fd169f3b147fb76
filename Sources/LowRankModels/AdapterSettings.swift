import Glibc
import LowRank

/// What PEFT's `LoraConfig` says about an adapter, read from and written to `adapter_config.json`
/// with PEFT's field names.
public struct AdapterSettings: Hashable, Sendable {
    public var rank: Int
    public var alpha: Float
    public var dropout: Float
    public var rsLoRA: Bool
    public var dora: Bool
    /// Module names matched against the end of each module's path (`q_proj`, `self_attn.v_proj`),
    /// or PEFT's one-string forms: `all-linear`, or a regular expression over the whole path.
    public var targets: Targets
    /// PEFT's `base_model_name_or_path`: the model it was trained on, a folder or a hub id.
    public var baseModel: String
    /// The model class PEFT recorded (`auto_mapping.base_model_class`, `LlamaForCausalLM`), when it did.
    public var architecture: String?
    /// PEFT's `rank_pattern` and `alpha_pattern`: a module whose path ends in a match of a key
    /// (`(.*\.)?(key)` matching the whole path) takes its rank or alpha; the first key in sorted
    /// order wins, as in the configs PEFT writes (`sort_keys=True`).
    public var rankPattern: [String: Int]
    public var alphaPattern: [String: Float]
    /// PEFT's `layers_to_transform`: only modules of these layers are adapted (nil: every layer).
    /// The layer of a module is the number after a `layersPattern` segment, or, without one, the
    /// first numbered segment after the second (`model.layers.3.…` is layer 3).
    public var layersToTransform: [Int]?
    public var layersPattern: [String]
    /// PEFT's `exclude_modules`: modules never adapted, by name (a path or its end after a dot) or
    /// one pattern over the whole path.
    public var excludeModules: ModuleNames?
    /// PEFT's `bias`: which linear layers' biases train with the adapter (and are saved in it).
    public var bias: Bias
    /// PEFT's `trainable_token_indices`: the rows of the token embedding that train (each a full
    /// replacement row, as PEFT's `TrainableTokensLayer` holds it), in the order PEFT saves them;
    /// nil: none.
    public var trainableTokenIndices: [Int]?
    /// PEFT's `modules_to_save`: names of modules that train in full, each as a copy of the frozen
    /// module (matched as PEFT matches them, by the end of the module's path; see `SavedModules`);
    /// nil: none.
    public var modulesToSave: [String]?
    /// PEFT's `ensure_weight_tying`: on a model with tied embeddings, the token embedding and the LM
    /// head in `modulesToSave` share one trained copy (the embedding's), as the model shares one
    /// weight; on an untied model it changes nothing (PEFT warns).
    public var ensureWeightTying: Bool
    /// PEFT's `loftq_config.loftq_iter` of an adapter LoftQ initialised (4 bits): more than one
    /// iteration changes the quantized base, which the adapter then carries (`ModelAdapter.loftqBaseName`).
    public var loftqIterations: Int?

    public enum Bias: String, Hashable, Sendable, CaseIterable {
        /// Every bias stays frozen (PEFT's default).
        case none
        /// The biases of the adapted layers.
        case loraOnly = "lora_only"
        /// Every bias of the model's linear layers, adapted or not.
        case all
    }

    public enum Targets: Hashable, Sendable {
        case names([String])
        case allLinear
        case pattern(String)
    }

    public enum ModuleNames: Hashable, Sendable {
        case names([String])
        case pattern(String)
    }

    public static let projectionNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    /// The largest rank the engine builds (as the C ABI has always bounded it): far beyond any
    /// useful one; larger only exhausts memory while A is drawn.
    public static let maxRank = 65536

    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0, rsLoRA: Bool = false, dora: Bool = false,
                targets: Targets = .names(["q_proj", "v_proj"]), baseModel: String = "", architecture: String? = nil,
                rankPattern: [String: Int] = [:], alphaPattern: [String: Float] = [:], layersToTransform: [Int]? = nil,
                layersPattern: [String] = [], excludeModules: ModuleNames? = nil, bias: Bias = .none,
                trainableTokenIndices: [Int]? = nil, modulesToSave: [String]? = nil, ensureWeightTying: Bool = false) throws {
        (self.rank, self.alpha, self.dropout, self.rsLoRA, self.dora, self.targets) = (rank, alpha, dropout, rsLoRA, dora, targets)
        (self.baseModel, self.architecture) = (baseModel, architecture)
        (self.rankPattern, self.alphaPattern) = (rankPattern, alphaPattern)
        (self.layersToTransform, self.layersPattern, self.excludeModules) = (layersToTransform, layersPattern, excludeModules)
        (self.bias, self.trainableTokenIndices, self.modulesToSave) = (bias, trainableTokenIndices, modulesToSave)
        self.ensureWeightTying = ensureWeightTying
        loftqIterations = nil
        try validate()
    }

    /// `--targets` as a person types it: a comma-separated list of names, or `all-linear`.
    public static func targets(parsing text: String) -> Targets {
        text == "all-linear" ? .allLinear : .names(text.split(separator: ",").map { String($0.filter { $0 != " " }) })
    }

    /// The configuration of the module at `path`, its rank and alpha from the patterns.
    public func lora(for path: String) -> LoRAConfig {
        LoRAConfig(rank: Self.patternValue(rankPattern, path) ?? rank, alpha: Self.patternValue(alphaPattern, path) ?? alpha,
                   rsLoRA: rsLoRA, dropout: dropout)
    }

    /// PEFT's `get_pattern_key`: the value of the first key (in sorted order) whose match ends `path` after a dot.
    private static func patternValue<Value>(_ pattern: [String: Value], _ path: String) -> Value? {
        pattern.keys.sorted().first { (try? TargetPattern("(.*\\.)?(\($0))"))?.fullMatch(path) ?? false }.flatMap { pattern[$0] }
    }

    /// Refuses settings PEFT would refuse, or this engine cannot build, naming the field.
    public func validate() throws {
        guard (1...Self.maxRank).contains(rank) else { throw LowRankError(.invalidArgument, "r must be in 1...\(Self.maxRank), got \(rank)") }
        guard alpha.isFinite, alpha > 0 else { throw LowRankError(.invalidArgument, "lora_alpha must be positive, got \(alpha)") }
        guard dropout >= 0, dropout < 1 else { throw LowRankError(.invalidArgument, "lora_dropout must be in [0, 1), got \(dropout)") }
        for (key, r) in rankPattern {
            guard (1...Self.maxRank).contains(r) else { throw LowRankError(.invalidArgument, "rank_pattern[\"\(key)\"] must be in 1...\(Self.maxRank), got \(r)") }
        }
        for (key, a) in alphaPattern where !(a.isFinite && a > 0) {
            throw LowRankError(.invalidArgument, "alpha_pattern[\"\(key)\"] must be positive, got \(a)")
        }
        for (field, keys) in [("rank_pattern", rankPattern.keys.sorted()), ("alpha_pattern", alphaPattern.keys.sorted())] {
            for key in keys {
                do { _ = try TargetPattern("(.*\\.)?(\(key))") } catch let error as LowRankError { throw error.adding("field", "\(field)[\"\(key)\"]") }
            }
        }
        if case .names = targets {} else if layersToTransform != nil || !layersPattern.isEmpty {
            throw LowRankError(.invalidArgument, "layers_to_transform and layers_pattern need target_modules as a list of names, not one string (a pattern or all-linear), as PEFT requires")
        }
        if !layersPattern.isEmpty, layersToTransform == nil {
            throw LowRankError(.invalidArgument, "layers_pattern needs layers_to_transform (as PEFT requires)")
        }
        if let layers = layersToTransform, let negative = layers.first(where: { $0 < 0 }) {
            throw LowRankError(.invalidArgument, "layers_to_transform holds \(negative); layers are numbered from 0")
        }
        if let indices = trainableTokenIndices {
            guard !indices.isEmpty else { throw LowRankError(.invalidArgument, "trainable_token_indices names no token") }
            if let negative = indices.first(where: { $0 < 0 }) {
                throw LowRankError(.invalidArgument, "trainable_token_indices holds \(negative); token ids are numbered from 0")
            }
            // PEFT's index_copy leaves a repeated row to whichever copy lands last.
            guard Set(indices).count == indices.count else {
                throw LowRankError(.invalidArgument, "trainable_token_indices names a token twice: \(indices)")
            }
        }
        if let names = modulesToSave {
            guard !names.isEmpty, !names.contains("") else { throw LowRankError(.invalidArgument, "modules_to_save names no module: \(names)") }
        }
        _ = try moduleMatcher()
    }

    /// Whether the module at `path` (`model.layers.3.self_attn.q_proj`) is adapted, as PEFT's
    /// `check_target_module_exists` decides: not when excluded, else when targeted (a path named
    /// whole is taken in any layer; a name matching its end, only in `layersToTransform`). Patterns
    /// run through `TargetPattern`, in bounded time; the error is a pattern that cannot be matched.
    func moduleMatcher() throws -> (String) -> Bool {
        let excluded: (String) -> Bool
        switch excludeModules {
        case nil: excluded = { _ in false }
        case .names(let names): excluded = { path in names.contains { path == $0 || path.hasSuffix("." + $0) } }
        case .pattern(let source): excluded = try TargetPattern(source).fullMatch
        }
        let inLayers = try layerFilter()
        switch targets {
        case .allLinear:
            return { path in !excluded(path) && Self.projectionNames.contains { path.hasSuffix("." + $0) } }
        case .names(let names):
            guard !names.isEmpty else { throw LowRankError(.invalidArgument, "target_modules names no module") }
            return { path in
                !excluded(path) && (names.contains(path) || names.contains { path.hasSuffix("." + $0) } && inLayers(path))
            }
        case .pattern(let source):
            let pattern = try TargetPattern(source)
            return { path in !excluded(path) && pattern.fullMatch(path) }
        }
    }

    /// Whether a module's layer is one of `layersToTransform`, its index found as PEFT's
    /// `check_target_module_exists` finds it (the first number after a `layersPattern` match that
    /// starts the path or follows a dot; without a pattern, the first numbered segment after the
    /// second); a path with no layer index is not adapted.
    private func layerFilter() throws -> (String) -> Bool {
        guard let layers = layersToTransform.map(Set.init) else { return { _ in true } }
        let prefixes = try layersPattern.map { try TargetPattern("(?:.*\\.)?(?:\($0))") }
        return { path in
            let segments = path.split(separator: ".", omittingEmptySubsequences: false)
            let isIndex = { (i: Int) in i < segments.count - 1 && !segments[i].isEmpty && segments[i].allSatisfy(\.isASCII) && segments[i].allSatisfy(\.isNumber) }
            let index: Int?
            if prefixes.isEmpty {
                index = (2..<max(2, segments.count)).first(where: isIndex)
            } else {
                index = prefixes.lazy.compactMap { prefix in
                    (1..<max(1, segments.count)).first { isIndex($0) && prefix.fullMatch(segments[..<$0].joined(separator: ".")) }
                }.first
            }
            return index.flatMap { Int(segments[$0]) }.map(layers.contains) ?? false
        }
    }

    /// Whether the module at `path` is adapted (false for every path when the pattern is refused).
    public func targets(_ path: String) -> Bool {
        (try? moduleMatcher())?(path) ?? false
    }

    // MARK: adapter_config.json

    /// Reads PEFT's `adapter_config.json` as `LoraConfig` takes it (PEFT's defaults for what is
    /// absent); a field of the wrong JSON type, and fields this engine cannot honour yet (LoRA on B's bias, aLoRA, QALoRA, a non-LoRA type), are
    /// errors naming the field.
    public init(contentsOf path: String) throws {
        try self.init(json: try JSON.read(path, what: "the adapter's config"), path: path)
    }

    /// PEFT's `LoraConfig` fields as `adapter_config.json` holds them; errors name `path` and the field.
    public init(json: JSON, path: String) throws {
        let fields = try ConfigFields(json, path: path, what: "the adapter config")
        let type = try fields.string("peft_type", default: "")
        guard type == "LORA" else {
            throw fields.fail("peft_type", "only LORA adapters (LoRA, rsLoRA, DoRA) are supported, got \(fields["peft_type"]?.kind ?? "nothing")")
        }
        for field in ["layer_replication", "target_parameters", "alora_invocation_tokens"] {
            if let v = fields[field], v != .array([]) { throw fields.fail(field, "is not supported (got \(v.serialized))") }
        }
        let biasName = try fields.string("bias", default: "none")
        guard let bias = Bias(rawValue: biasName) else {
            throw fields.fail("bias", "must be \"none\", \"all\" or \"lora_only\", got \"\(biasName)\"")
        }
        for field in ["lora_bias", "use_qalora"] where try fields.bool(field, default: false) {
            throw fields.fail(field, "is not supported (got true)")
        }
        if try fields.bool("fan_in_fan_out", default: false) { throw fields.fail("fan_in_fan_out", "Conv1D-layout weights are not supported") }
        let targets: Targets
        switch fields["target_modules"] {
        case .string("all-linear")?: targets = .allLinear
        case .string(let pattern)?: targets = .pattern(pattern)
        case .array(let list)?: targets = .names(try Self.strings(list, fields, "target_modules"))
        case let v?: throw fields.fail("target_modules", "must be a list of module names or one pattern string, got \(v.kind)")
        case nil: throw fields.fail("target_modules", "missing")
        }
        let rank = try fields.int("r", default: 8, in: 1...Self.maxRank)
        let alpha = try fields.number("lora_alpha", default: 8, "positive", where: { $0 > 0 })
        let dropout = try fields.number("lora_dropout", default: 0, "in [0, 1)", where: { $0 >= 0 && $0 < 1 })
        let (rsLoRA, dora) = (try fields.bool("use_rslora", default: false), try fields.bool("use_dora", default: false))
        let baseModel = try fields.string("base_model_name_or_path", default: "")
        let architecture = try fields.object("auto_mapping")?.optionalString("base_model_class")
        let rankPattern = try fields.object("rank_pattern").map { f in
            Dictionary(uniqueKeysWithValues: try f.object.keys.map { ($0, try f.int($0, in: 1...Self.maxRank)) })
        } ?? [:]
        let alphaPattern = try fields.object("alpha_pattern").map { f in
            Dictionary(uniqueKeysWithValues: try f.object.keys.map { ($0, Float(try f.number($0, "positive", where: { $0 > 0 }))) })
        } ?? [:]
        let layersToTransform: [Int]? = switch fields["layers_to_transform"] {
        case nil: nil
        case .number?: [try fields.int("layers_to_transform", in: 0...Int.max)]
        case .array(let list)?:
            try list.map { v in
                guard let i = v.int, i >= 0 else { throw fields.fail("layers_to_transform", "must be layer indices (integers from 0), got \(v.kind)") }
                return i
            }
        case let v?: throw fields.fail("layers_to_transform", "must be a layer index or a list of them, got \(v.kind)")
        }
        let excludeModules: ModuleNames? = switch fields["exclude_modules"] {
        case nil: nil
        case .string(let pattern)?: .pattern(pattern)
        case .array(let list)?: .names(try Self.strings(list, fields, "exclude_modules"))
        case let v?: throw fields.fail("exclude_modules", "must be a list of module names or one pattern string, got \(v.kind)")
        }
        let layersPattern: [String] = switch fields["layers_pattern"] {
        case nil: []
        case .string(let p)?: p.isEmpty ? [] : [p]
        case .array(let list)?: try Self.strings(list, fields, "layers_pattern")
        case let v?: throw fields.fail("layers_pattern", "must be a name or a list of names, got \(v.kind)")
        }
        let tokenIndices = try Self.tokenIndices(fields)
        let modulesToSave: [String]? = switch fields["modules_to_save"] {
        case nil, .null?: nil
        case .array(let list)?: list.isEmpty ? nil : try Self.strings(list, fields, "modules_to_save")
        case let v?: throw fields.fail("modules_to_save", "must be a list of module names, got \(v.kind)")
        }
        // PEFT's LoftQConfig; only NF4 (4 bits) is built here.
        let loftq = try fields.object("loftq_config")
        _ = try loftq?.int("loftq_bits", default: 4, in: 4...4)
        let loftqIterations = try loftq.flatMap { $0["loftq_iter"] == nil ? nil : try $0.int("loftq_iter") }
        do {
            try self.init(rank: rank, alpha: Float(alpha), dropout: Float(dropout), rsLoRA: rsLoRA, dora: dora, targets: targets,
                          baseModel: baseModel, architecture: architecture, rankPattern: rankPattern, alphaPattern: alphaPattern,
                          layersToTransform: layersToTransform.map { Array(Set($0)).sorted() },
                          layersPattern: layersPattern, excludeModules: excludeModules, bias: bias, trainableTokenIndices: tokenIndices,
                          modulesToSave: modulesToSave, ensureWeightTying: try fields.bool("ensure_weight_tying", default: false))
            self.loftqIterations = loftqIterations
        } catch let error as LowRankError {
            throw error.adding("file", path)
        }
    }

    /// `trainable_token_indices` as PEFT takes it: a list of ids, or a dict from layer name to ids,
    /// whose one layer here is the token embedding, `embed_tokens`.
    private static func tokenIndices(_ fields: ConfigFields) throws -> [Int]? {
        let field = "trainable_token_indices"
        let list: [JSON]
        switch fields[field] {
        case nil, .null?: return nil
        case .array(let l)?:
            guard !l.isEmpty else { return nil }  // PEFT takes an empty list as none
            list = l
        case .object(let layers)?:
            if let other = layers.keys.sorted().first(where: { $0 != "embed_tokens" }) {
                throw fields.fail(field, "names the layer \"\(other)\"; only the token embedding, \"embed_tokens\", trains rows here")
            }
            guard case .array(let l)? = layers["embed_tokens"] else { throw fields.fail(field, "must map \"embed_tokens\" to a list of token ids") }
            list = l
        case let v?: throw fields.fail(field, "must be a list of token ids or {\"embed_tokens\": [...]}, got \(v.kind)")
        }
        return try list.map { v in
            guard let i = v.int, i >= 0 else { throw fields.fail(field, "must be token ids (integers from 0), got \(v.kind)") }
            return i
        }
    }

    private static func strings(_ list: [JSON], _ fields: ConfigFields, _ field: String) throws -> [String] {
        let names = list.compactMap(\.string)
        guard names.count == list.count else { throw fields.fail(field, "must be a list of strings") }
        return names.sorted()
    }

    /// The fields PEFT writes for this adapter (the rest take PEFT's defaults when it loads it).
    public var json: JSON {
        let targetJSON: JSON = switch targets {
        case .names(let names): .array(names.map { .string($0) })
        case .allLinear: .string("all-linear")
        case .pattern(let p): .string(p)
        }
        let excludeJSON: JSON = switch excludeModules {
        case nil: .null
        case .names(let names)?: .array(names.map { .string($0) })
        case .pattern(let p)?: .string(p)
        }
        return .object([
            "peft_type": .string("LORA"), "task_type": .string("CAUSAL_LM"), "r": .number(Double(rank)), "lora_alpha": .number(Double(alpha)),
            "lora_dropout": .number(Double(dropout)), "use_rslora": .bool(rsLoRA), "use_dora": .bool(dora), "target_modules": targetJSON,
            "base_model_name_or_path": .string(baseModel), "bias": .string(bias.rawValue), "fan_in_fan_out": .bool(false),
            "inference_mode": .bool(true), "init_lora_weights": .bool(true),
            "modules_to_save": modulesToSave.map { .array($0.map { .string($0) }) } ?? .null,
            "rank_pattern": .object(rankPattern.mapValues { .number(Double($0)) }), "alpha_pattern": .object(alphaPattern.mapValues { .number(Double($0)) }),
            "layers_to_transform": layersToTransform.map { .array($0.map { .number(Double($0)) }) } ?? .null,
            "layers_pattern": layersPattern.isEmpty ? .null : .array(layersPattern.map { .string($0) }), "exclude_modules": excludeJSON, "revision": .null,
            "trainable_token_indices": trainableTokenIndices.map { .array($0.map { .number(Double($0)) }) } ?? .null,
            "ensure_weight_tying": .bool(ensureWeightTying),
            "loftq_config": .object(loftqIterations.map { ["loftq_bits": .number(4), "loftq_iter": .number(Double($0))] } ?? [:]),
        ])
    }
}
