import ArgumentParser
import LowRank
import LowRankModels

/// `lowrank train`'s options for PEFT's LoraConfig fields beyond r, alpha and targets, LoRA+ and
/// the initialisation, each named as PEFT names it.
struct PEFTOptions: ParsableArguments {
    @Option(help: """
        How the adapter starts, as PEFT's init_lora_weights: kaiming (PEFT's default, true) or gaussian (N(0, 1/r²)) A with \
        B = 0; or pissa (A and B from W's top-r singular triplets), pissa_niter_N (the same by a randomized SVD with N \
        subspace iterations, much faster on large weights) or olora (from W's QR decomposition), W keeping the residual; \
        or corda (the same from the SVD of W times the covariance of its inputs over the training data: --corda-method); \
        these save the adapter converted for the original model, rank 2r; or loftq (with --quantize nf4: A and B \
        fit what NF4 quantization leaves of W, as PEFT's LoftQ, --loftq-iter iterations); or eva (A from the principal directions \
        of each layer's inputs over the training data, B = 0, the ranks redistributed by explained variance: --eva-*).
        """)
    var `init`: AdapterInitialization = .kaiming
    @Option(help: """
        PEFT's LoftQConfig loftq_iter, with --init loftq: alternations of NF4 quantization and SVD. More than one quantizes W − B·A, \
        a base other than the model's NF4, so the adapter's folder holds it (loftq_base.safetensors), which eval, generate, merge \
        and --adapter read back.
        """)
    var loftqIter: Int = 1
    @Option(help: "PEFT's EvaConfig.rho, with --init eva: the largest rank a layer may take, as a multiple of its rank (>= 1; default 2; 1: no redistribution).")
    var evaRho: Double?
    @Option(help: "PEFT's EvaConfig.tau, with --init eva: the cosine similarity between batches at which a direction has converged (default 0.99).")
    var evaTau: Double?
    @Option(help: "PEFT's EvaConfig.use_label_mask, with --init eva: whether positions whose label is --eva-label-mask-value are left out (default true).")
    var evaUseLabelMask: Bool?
    @Option(help: "PEFT's EvaConfig.label_mask_value, with --init eva (default -100).")
    var evaLabelMaskValue: Int32?
    @Option(help: "PEFT's EvaConfig.whiten, with --init eva: whether each direction is divided by the square root of its singular value (default false).")
    var evaWhiten: Bool?
    @Option(help: "PEFT's EvaConfig.adjust_scaling_factors, with --init eva: whether a layer's alpha follows its new rank (default true).")
    var evaAdjustScalingFactors: Bool?
    @Option(help: "PEFT's CordaConfig.corda_method, with --init corda: ipm (the largest r triplets of W·C, default) or kpm (the smallest).")
    var cordaMethod: CorDAMethod?
    @Option(help: "PEFT's rank_pattern: comma-separated KEY=R, KEY a regular expression matching the end of a module path after a dot (q_proj=4,layers\\.0\\..*=16).")
    var rankPattern: String?
    @Option(help: "PEFT's alpha_pattern: comma-separated KEY=ALPHA, matched as --rank-pattern.")
    var alphaPattern: String?
    @Option(help: "PEFT's layers_to_transform: comma-separated layer indices; only their modules are adapted.")
    var layers: String?
    @Option(help: "PEFT's layers_pattern: the name before the layer index (layers), with --layers.")
    var layersPattern: String?
    @Option(help: "PEFT's exclude_modules: comma-separated module names never adapted.")
    var excludeModules: String?
    @Option(help: "PEFT's bias: which linear layers' biases train and are saved with the adapter: none, lora_only (the adapted layers') or all.")
    var bias: AdapterSettings.Bias = .none
    @Option(help: "PEFT's trainable_token_indices: comma-separated token ids whose embedding rows train (and are saved) with the adapter; the rest of the embedding stays frozen (with tie_word_embeddings, the LM head's rows of those ids are the same rows).")
    var trainableTokenIndices: String?
    @Option(help: """
        PEFT's modules_to_save: comma-separated modules that train in full (a copy with its own optimizer state, saved with the adapter), \
        each module whose path ends with a name: embed_tokens, lm_head, norm (every RMSNorm), input_layernorm, post_attention_layernorm, model.norm, \
        or a projection (q_proj, down_proj, ...: its copy replaces the module, no LoRA in it, as PEFT's wrapper does; not on a quantized model).
        """)
    var modulesToSave: String?
    @Flag(help: "PEFT's ensure_weight_tying: on a model with tied embeddings (tie_word_embeddings), embed_tokens or lm_head in --modules-to-save trains one copy that is both, saved under both names, which `lowrank merge` writes into the tied model.")
    var ensureWeightTying = false
    @Option(help: "LoRA+ (PEFT's create_loraplus_optimizer): B's learning rate is this times --lr (16 in the paper).")
    var loraplusLrRatio: Double?

    /// Whether an option that shapes a new adapter is given (they do not apply to --init-adapter).
    var shapesTheAdapter: Bool {
        `init` != .kaiming || loftqIter != 1 || bias != .none || ensureWeightTying || [rankPattern, alphaPattern, layers, layersPattern, excludeModules, trainableTokenIndices, modulesToSave].contains { $0 != nil }
    }

    /// A new adapter on `model` started as `--init` says (EVA from `data` in batches of `batchSize`).
    func newAdapter(_ settings: AdapterSettings, on model: LlamaModel, seed: UInt64, data: TokenDataset, batchSize: Int) throws -> ModelAdapter {
        try ModelAdapter.starting(settings, as: try initialization(), on: model, seed: seed, data: data, batchSize: batchSize)
    }

    /// `--init`, with `--loftq-iter` for LoftQ, `--corda-method` for CorDA and the `--eva-*` fields for EVA (each refused with another).
    func initialization() throws -> AdapterInitialization {
        guard loftqIter >= 1 else { throw ValidationError("--loftq-iter takes a count from 1, got \(loftqIter)") }
        if case .loftq = `init` {} else if loftqIter != 1 { throw ValidationError("--loftq-iter applies to --init loftq") }
        let given = evaRho != nil || evaTau != nil || evaUseLabelMask != nil || evaLabelMaskValue != nil || evaWhiten != nil || evaAdjustScalingFactors != nil
        if case .split(.corda) = `init` {
            if given { throw ValidationError("--eva-* options configure --init eva") }
            return .split(.corda(cordaMethod ?? .ipm))
        }
        if cordaMethod != nil { throw ValidationError("--corda-method configures --init corda") }
        guard case .eva(let defaults) = `init` else {
            if given { throw ValidationError("--eva-* options configure --init eva") }
            if case .loftq = `init` { return .loftq(iterations: loftqIter) }
            return `init`
        }
        let eva = EVASettings(rho: evaRho ?? defaults.rho, tau: evaTau ?? defaults.tau, useLabelMask: evaUseLabelMask ?? defaults.useLabelMask,
                              labelMaskValue: evaLabelMaskValue ?? defaults.labelMaskValue, whiten: evaWhiten ?? defaults.whiten,
                              adjustScalingFactors: evaAdjustScalingFactors ?? defaults.adjustScalingFactors)
        do { try eva.validate() } catch let error as LowRankError { throw ValidationError(error.message) }
        return .eva(eva)
    }

    /// `settings` with these fields set.
    func apply(to settings: AdapterSettings) throws -> AdapterSettings {
        var s = settings
        s.rankPattern = try Self.pairs(rankPattern, "--rank-pattern") { Int($0) }
        s.alphaPattern = try Self.pairs(alphaPattern, "--alpha-pattern") { Float($0) }
        s.layersToTransform = try layers.map { text in
            try Self.items(text).map { item in
                guard let i = Int(item), i >= 0 else { throw ValidationError("--layers takes layer indices from 0, got \(item)") }
                return i
            }
        }
        s.layersPattern = layersPattern.map { [$0] } ?? []
        s.excludeModules = excludeModules.map { .names(Self.items($0)) }
        s.bias = bias
        s.trainableTokenIndices = try trainableTokenIndices.map { text in
            try Self.items(text).map { item in
                guard let id = Int(item), id >= 0 else { throw ValidationError("--trainable-token-indices takes token ids from 0, got \(item)") }
                return id
            }
        }
        s.modulesToSave = modulesToSave.map(Self.items)
        s.ensureWeightTying = ensureWeightTying
        try s.validate()
        return s
    }

    private static func items(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0.filter { $0 != " " }) }
    }

    private static func pairs<Value>(_ text: String?, _ option: String, _ parse: (String) -> Value?) throws -> [String: Value] {
        guard let text else { return [:] }
        return try Dictionary(items(text).map { item in
            guard let eq = item.lastIndex(of: "="), let value = parse(String(item[item.index(after: eq)...])) else {
                throw ValidationError("\(option) takes KEY=VALUE pairs separated by commas, got \(item)")
            }
            return (String(item[..<eq]), value)
        }, uniquingKeysWith: { _, _ in throw ValidationError("\(option) names a key twice") })
    }
}

extension AdapterSettings.Bias: ExpressibleByArgument {}

extension CorDAMethod: ExpressibleByArgument {}

extension AdapterInitialization: ExpressibleByArgument {
    public init?(argument: String) { self.init(peftName: argument) }
    public static var allValueStrings: [String] { peftNames }
    public var defaultValueDescription: String { peftName }
}
