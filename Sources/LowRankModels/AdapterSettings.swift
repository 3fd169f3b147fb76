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

    public enum Targets: Hashable, Sendable {
        case names([String])
        case allLinear
        case pattern(String)
    }

    public static let projectionNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    /// The largest rank the engine builds (as the C ABI has always bounded it): far beyond any
    /// useful one; larger only exhausts memory while A is drawn.
    public static let maxRank = 65536

    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0, rsLoRA: Bool = false, dora: Bool = false,
                targets: Targets = .names(["q_proj", "v_proj"]), baseModel: String = "", architecture: String? = nil) throws {
        (self.rank, self.alpha, self.dropout, self.rsLoRA, self.dora, self.targets) = (rank, alpha, dropout, rsLoRA, dora, targets)
        (self.baseModel, self.architecture) = (baseModel, architecture)
        try validate()
    }

    /// `--targets` as a person types it: a comma-separated list of names, or `all-linear`.
    public static func targets(parsing text: String) -> Targets {
        text == "all-linear" ? .allLinear : .names(text.split(separator: ",").map { String($0.filter { $0 != " " }) })
    }

    public var lora: LoRAConfig { LoRAConfig(rank: rank, alpha: alpha, rsLoRA: rsLoRA, dropout: dropout) }

    func validate() throws {
        guard (1...Self.maxRank).contains(rank) else { throw LowRankError(.invalidArgument, "r must be in 1...\(Self.maxRank), got \(rank)") }
        guard alpha.isFinite, alpha > 0 else { throw LowRankError(.invalidArgument, "lora_alpha must be positive, got \(alpha)") }
        guard dropout >= 0, dropout < 1 else { throw LowRankError(.invalidArgument, "lora_dropout must be in [0, 1), got \(dropout)") }
        _ = try moduleMatcher()
    }

    /// Whether the module at `path` (`model.layers.3.self_attn.q_proj`) is adapted, as PEFT matches
    /// (a pattern through `TargetPattern`, in bounded time); the error is a pattern that cannot be matched.
    func moduleMatcher() throws -> (String) -> Bool {
        switch targets {
        case .allLinear:
            return { path in Self.projectionNames.contains { path.hasSuffix("." + $0) } }
        case .names(let names):
            guard !names.isEmpty else { throw LowRankError(.invalidArgument, "target_modules names no module") }
            return { path in names.contains { path == $0 || path.hasSuffix("." + $0) } }
        case .pattern(let source):
            let pattern = try TargetPattern(source)
            return pattern.fullMatch
        }
    }

    /// Whether the module at `path` is adapted (false for every path when the pattern is refused).
    public func targets(_ path: String) -> Bool {
        (try? moduleMatcher())?(path) ?? false
    }

    // MARK: adapter_config.json

    /// Reads PEFT's `adapter_config.json` as `LoraConfig` takes it (PEFT's defaults for what is
    /// absent); a field of the wrong JSON type, and fields this engine cannot honour (per-module
    /// ranks, biases, modules to save, layer selection, a non-LoRA type), are errors naming the field.
    public init(contentsOf path: String) throws {
        let fields = try ConfigFields(try JSON.read(path, what: "the adapter's config"), path: path, what: "the adapter config")
        let type = try fields.string("peft_type", default: "")
        guard type == "LORA" else {
            throw fields.fail("peft_type", "only LORA adapters (LoRA, rsLoRA, DoRA) are supported, got \(fields["peft_type"]?.kind ?? "nothing")")
        }
        for field in ["rank_pattern", "alpha_pattern"] {
            if let o = try fields.object(field), !o.object.isEmpty { throw fields.fail(field, "per-module ranks and alphas are not supported") }
        }
        for field in ["modules_to_save", "layers_to_transform", "layer_replication", "exclude_modules", "target_parameters"] {
            if let v = fields[field], v != .array([]) { throw fields.fail(field, "is not supported (got \(v.serialized))") }
        }
        let bias = try fields.string("bias", default: "none")
        guard bias == "none" else { throw fields.fail("bias", "only \"none\" is supported, got \"\(bias)\"") }
        if try fields.bool("fan_in_fan_out", default: false) { throw fields.fail("fan_in_fan_out", "Conv1D-layout weights are not supported") }
        let targets: Targets
        switch fields["target_modules"] {
        case .string("all-linear")?: targets = .allLinear
        case .string(let pattern)?: targets = .pattern(pattern)
        case .array(let list)?:
            let names = list.compactMap(\.string)
            guard names.count == list.count else { throw fields.fail("target_modules", "must be a list of module names (strings)") }
            targets = .names(names.sorted())
        case let v?: throw fields.fail("target_modules", "must be a list of module names or one pattern string, got \(v.kind)")
        case nil: throw fields.fail("target_modules", "missing")
        }
        let rank = try fields.int("r", default: 8, in: 1...Self.maxRank)
        let alpha = try fields.number("lora_alpha", default: 8, "positive", where: { $0 > 0 })
        let dropout = try fields.number("lora_dropout", default: 0, "in [0, 1)", where: { $0 >= 0 && $0 < 1 })
        let (rsLoRA, dora) = (try fields.bool("use_rslora", default: false), try fields.bool("use_dora", default: false))
        let baseModel = try fields.string("base_model_name_or_path", default: "")
        let architecture = try fields.object("auto_mapping")?.optionalString("base_model_class")
        do {
            try self.init(rank: rank, alpha: Float(alpha), dropout: Float(dropout), rsLoRA: rsLoRA, dora: dora, targets: targets,
                          baseModel: baseModel, architecture: architecture)
        } catch let error as LowRankError {
            throw error.adding("file", path)
        }
    }

    /// The fields PEFT writes for this adapter (the rest take PEFT's defaults when it loads it).
    public var json: JSON {
        let targetJSON: JSON = switch targets {
        case .names(let names): .array(names.map { .string($0) })
        case .allLinear: .string("all-linear")
        case .pattern(let p): .string(p)
        }
        return .object([
            "peft_type": .string("LORA"), "task_type": .string("CAUSAL_LM"), "r": .number(Double(rank)), "lora_alpha": .number(Double(alpha)),
            "lora_dropout": .number(Double(dropout)), "use_rslora": .bool(rsLoRA), "use_dora": .bool(dora), "target_modules": targetJSON,
            "base_model_name_or_path": .string(baseModel), "bias": .string("none"), "fan_in_fan_out": .bool(false),
            "inference_mode": .bool(true), "init_lora_weights": .bool(true), "modules_to_save": .null, "rank_pattern": .object([:]),
            "alpha_pattern": .object([:]), "layers_to_transform": .null, "layers_pattern": .null, "revision": .null,
        ])
    }
}
