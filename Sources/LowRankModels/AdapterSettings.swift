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
    public var baseModel: String

    public enum Targets: Hashable, Sendable {
        case names([String])
        case allLinear
        case pattern(String)
    }

    public static let projectionNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0, rsLoRA: Bool = false, dora: Bool = false,
                targets: Targets = .names(["q_proj", "v_proj"]), baseModel: String = "") throws {
        (self.rank, self.alpha, self.dropout, self.rsLoRA, self.dora, self.targets, self.baseModel) = (rank, alpha, dropout, rsLoRA, dora, targets, baseModel)
        try validate()
    }

    /// `--targets` as a person types it: a comma-separated list of names, or `all-linear`.
    public static func targets(parsing text: String) -> Targets {
        text == "all-linear" ? .allLinear : .names(text.split(separator: ",").map { String($0.filter { $0 != " " }) })
    }

    public var lora: LoRAConfig { LoRAConfig(rank: rank, alpha: alpha, rsLoRA: rsLoRA, dropout: dropout) }

    func validate(path: String? = nil) throws {
        let context = path.map { [("file", $0)] } ?? []
        guard rank >= 1 else { throw LowRankError(.invalidArgument, "r must be at least 1, got \(rank)", context: context) }
        guard alpha.isFinite, alpha > 0 else { throw LowRankError(.invalidArgument, "lora_alpha must be positive, got \(alpha)", context: context) }
        guard dropout >= 0, dropout < 1 else { throw LowRankError(.invalidArgument, "lora_dropout must be in [0, 1), got \(dropout)", context: context) }
        if case .names(let names) = targets, names.isEmpty {
            throw LowRankError(.invalidArgument, "target_modules names no module", context: context)
        }
    }

    /// Whether the module at `path` (`model.layers.3.self_attn.q_proj`) is adapted, as PEFT matches.
    public func targets(_ path: String) -> Bool {
        switch targets {
        case .allLinear:
            return Self.projectionNames.contains { path.hasSuffix("." + $0) }
        case .names(let names):
            return names.contains { path == $0 || path.hasSuffix("." + $0) }
        case .pattern(let pattern):
            guard let regex = try? Regex(pattern) else { return false }
            return (try? regex.wholeMatch(in: path)) != nil
        }
    }

    // MARK: adapter_config.json

    /// Reads PEFT's `adapter_config.json`; fields this engine cannot honour (per-module ranks,
    /// biases, modules to save, layer selection, a non-LoRA type) are errors naming the field.
    public init(contentsOf path: String) throws {
        let json = try JSON.read(path, what: "the adapter's config")
        func fail(_ field: String, _ message: String) -> LowRankError {
            LowRankError(.fileFormat, "\(field): \(message)", context: [("file", path), ("field", field)])
        }
        guard json.object != nil else { throw LowRankError(.fileFormat, "the adapter config is not a JSON object", context: [("file", path)]) }
        guard json["peft_type"]?.string == "LORA" else {
            throw fail("peft_type", "only LORA adapters (LoRA, rsLoRA, DoRA) are supported, got \(json["peft_type"]?.serialized ?? "nothing")")
        }
        func flag(_ field: String) throws -> Bool {
            switch json[field] {
            case nil, .null?: return false
            case .bool(let b)?: return b
            case let v?: throw fail(field, "must be true or false, got \(v.serialized)")
            }
        }
        for field in ["rank_pattern", "alpha_pattern"] {
            if let o = json[field]?.object, !o.isEmpty { throw fail(field, "per-module ranks and alphas are not supported") }
        }
        for field in ["modules_to_save", "layers_to_transform", "layer_replication", "exclude_modules", "target_parameters"] {
            if let v = json[field], v != .null, v != .array([]) { throw fail(field, "is not supported (got \(v.serialized))") }
        }
        if let bias = json["bias"]?.string, bias != "none" { throw fail("bias", "only \"none\" is supported, got \"\(bias)\"") }
        if try flag("fan_in_fan_out") { throw fail("fan_in_fan_out", "Conv1D-layout weights are not supported") }
        guard let r = json["r"]?.int else { throw fail("r", "missing or not an integer") }
        guard let alpha = json["lora_alpha"]?.number else { throw fail("lora_alpha", "missing or not a number") }
        let targets: Targets
        switch json["target_modules"] {
        case .string("all-linear")?: targets = .allLinear
        case .string(let pattern)?: targets = .pattern(pattern)
        case .array(let list)?:
            let names = list.compactMap(\.string)
            guard names.count == list.count else { throw fail("target_modules", "must be a list of module names") }
            targets = .names(names.sorted())
        default: throw fail("target_modules", "missing")
        }
        rank = r
        self.alpha = Float(alpha)
        dropout = Float(json["lora_dropout"]?.number ?? 0)
        rsLoRA = try flag("use_rslora")
        dora = try flag("use_dora")
        self.targets = targets
        baseModel = json["base_model_name_or_path"]?.string ?? ""
        try validate(path: path)
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
