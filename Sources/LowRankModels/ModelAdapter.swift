import Glibc
import LowRank

/// The adapter of one linear layer: LoRA's factors, or DoRA's with a magnitude.
public enum LayerAdapter {
    case lora(LoRAAdapter)
    case dora(DoRAAdapter)

    public var lora: LoRAAdapter {
        switch self {
        case .lora(let l): l
        case .dora(let d): d.lora
        }
    }
}

/// A model's adapters, one per targeted linear layer, with PEFT's tensor names
/// (`base_model.model.<module path>.lora_A.weight`, `.lora_B.weight`, `.lora_magnitude_vector`) and
/// its folder format (`adapter_config.json` and `adapter_model.safetensors`) both ways.
public final class ModelAdapter {
    public let settings: AdapterSettings
    /// Each adapted module's path (`model.layers.0.self_attn.q_proj`) and adapter, in model order.
    public let layers: [(path: String, adapter: LayerAdapter)]
    /// The biases that train with the adapter (PEFT's `bias: "lora_only" | "all"`), by module path
    /// in model order: f32 copies that the model's graph uses in place of its frozen biases.
    public let biases: [(path: String, tensor: Tensor)]
    /// The embedding rows that train with the adapter (PEFT's `trainable_token_indices`), if any.
    public let tokens: TrainableTokens?
    /// The modules that train in full with the adapter (PEFT's `modules_to_save`), in model order.
    public let saved: [SavedModule]
    /// How the adapter split the model's weights when it started (PiSSA, OLoRA), and its starting
    /// factors A0 and B0 by module path: the model's weights then hold the residual W − s·B0·A0,
    /// and `save` converts the adapter as PEFT's
    /// `save_pretrained(path_initial_model_for_weight_conversion:)` does, so that it applies to the
    /// original model. Nil for the other initialisations.
    let split: (initialization: SplitInitialization, start: [String: (a: [Float], b: [Float])])?
    /// After LoftQ with more than one iteration, the targeted weights as it left them in the model
    /// (the NF4 base, dequantized, f32, by the model's names): saved beside the adapter
    /// (`loftqBaseName`) and put back into the model it loads on. Empty otherwise.
    let loftqBase: [(name: String, tensor: Tensor)]

    public static let configName = "adapter_config.json"
    public static let weightsName = "adapter_model.safetensors"
    /// LoftQ's quantized base beside the adapter, as PEFT's LoftQ users save the base it leaves.
    public static let loftqBaseName = "loftq_base.safetensors"

    static func key(_ path: String, _ tensor: String) -> String { "base_model.model.\(path).\(tensor)" }

    /// PEFT's name for a trained bias: under `base_layer` in a module it wraps with LoRA.
    static func biasKey(_ path: String, adapted: [String]) -> String {
        key(path, adapted.contains(path) ? "base_layer.bias" : "bias")
    }

    /// The modules whose biases train under `settings.bias`, in model order.
    private static func biasModules(_ settings: AdapterSettings, _ model: LlamaModel, adapted: [String]) -> [String] {
        let withBias = model.linearModules.filter { model.config.hasBias($0.name) }.map(\.path)
        switch settings.bias {
        case .none: return []
        case .loraOnly: return withBias.filter(adapted.contains)
        case .all: return withBias
        }
    }

    /// A new adapter on every module `settings` targets: A as PEFT draws it (`initialization`,
    /// from `seed`), B = 0, and for DoRA m = ‖W‖_row, so the model starts unchanged.
    public init(settings: AdapterSettings, on model: LlamaModel, seed: UInt64, initialization: LoRAInitialization = .kaimingUniform) throws {
        self.settings = settings
        let modules = try Self.targetedModules(settings, model)
        layers = try modules.enumerated().map { i, module in
            // One generator stream per module, so adding a target does not move the others' draws.
            let moduleSeed = UInt32(truncatingIfNeeded: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i) &* 0xBF58_476D_1CE4_E5B9 >> 32)
            let config = settings.lora(for: module.path)
            if settings.dora {
                return (module.path, .dora(try DoRAAdapter(weight: module.weight, config: config, initialization: initialization, seed: moduleSeed)))
            }
            return (module.path, .lora(try LoRAAdapter(inFeatures: module.weight.shape[1], outFeatures: module.weight.shape[0],
                                                       config: config, initialization: initialization, seed: moduleSeed, on: model.backend)))
        }
        biases = try Self.biasModules(settings, model, adapted: modules.map(\.path)).map { ($0, try model.weight($0 + ".bias").copy(to: model.backend)) }
        tokens = try TrainableTokens.starting(settings, on: model)
        saved = try SavedModule.starting(settings, on: model)
        split = nil
        loftqBase = []
    }

    /// A new adapter that starts as part of each targeted weight of `model` (PiSSA's top singular
    /// triplets, OLoRA's first QR columns), the weight keeping the residual, so the model with
    /// the adapter is unchanged; `save` writes the adapter converted for the original model (rank
    /// 2r). `seed` draws the randomized SVD's test matrices (`pissa_niter_N`); CorDA reads the
    /// covariance of each targeted layer's inputs over `data`'s rows.
    public init(splitting settings: AdapterSettings, by initialization: SplitInitialization, on model: LlamaModel, seed: UInt64 = 0,
                data: TokenDataset? = nil) throws {
        let method = initialization.peftName
        guard !settings.dora else { throw LowRankError(.unsupported, "\(method) initialises LoRA, not DoRA (PEFT's conversion for the original model has no magnitude)") }
        guard model.projectionDType == .f32 else {
            throw LowRankError(.unsupported, "\(method) writes its residual into the weights, which must be f32, not quantized to \(model.projectionDType)")
        }
        if settings.rsLoRA, !settings.rankPattern.isEmpty || !settings.alphaPattern.isEmpty {
            throw LowRankError(.unsupported, "\(method)'s conversion for the original model does not support rank_pattern or alpha_pattern with use_rslora (as PEFT refuses it)")
        }
        self.settings = settings
        let modules = try Self.targetedModules(settings, model)
        var start: [String: (a: [Float], b: [Float])] = [:]
        // Of the original model: every covariance before any weight keeps its residual.
        let covariances = initialization.readsData
            ? try LayerInputsPlan.covariances(of: modules.map(\.path), model: model, data: try TokenDataset.required(data, by: method)) : [:]
        layers = try modules.enumerated().map { i, module in
            let config = settings.lora(for: module.path)
            let lora = switch initialization {
            case .pissa(let iterations): try LoRAAdapter.pissa(weight: module.weight, config: config, iterations: iterations, seed: seed &+ UInt64(i))
            case .olora: try LoRAAdapter.olora(weight: module.weight, config: config)
            case .corda(let method): try LoRAAdapter.corda(weight: module.weight, config: config, covariance: covariances[module.path]!, method: method)
            }
            start[module.path] = (try lora.a.floats(), try lora.b.floats())
            return (module.path, .lora(lora))
        }
        split = (initialization, start)
        loftqBase = []
        biases = try Self.biasModules(settings, model, adapted: modules.map(\.path)).map { ($0, try model.weight($0 + ".bias").copy(to: model.backend)) }
        tokens = try TrainableTokens.starting(settings, on: model)
        saved = try SavedModule.starting(settings, on: model)
    }

    /// A new adapter initialised by LoftQ (PEFT's `init_lora_weights="loftq"` with
    /// `LoftQConfig(loftq_bits=4, loftq_iter=iterations)`) on a model whose projections are NF4:
    /// each targeted weight, read again in f32 from the model's file, gives the factors that fit
    /// what its NF4 quantization leaves. One iteration quantizes W itself, so the adapter pairs
    /// with the model loaded with `--quantize nf4`; more quantize W − B·A, so the targeted weights
    /// of the model are replaced by that base, which `save` writes beside the adapter.
    public init(loftq settings: AdapterSettings, iterations: Int = 1, on model: LlamaModel) throws {
        guard !settings.dora else { throw LowRankError(.unsupported, "LoftQ initialises LoRA, not DoRA (as PEFT's loftq_init)") }
        guard model.projectionDType == .nf4 else {
            throw LowRankError(.unsupported, "LoftQ fits the adapter to NF4's quantization error: load the model with --quantize nf4 (it is \(model.projectionDType))")
        }
        guard let path = model.name else { throw LowRankError(.unsupported, "LoftQ reads the weights again from the model's file, and this model has none") }
        let source = try ModelSources.open(path, dequantizing: true)
        var settings = settings
        settings.loftqIterations = iterations
        self.settings = settings
        let modules = try Self.targetedModules(settings, model)
        var base: [(name: String, tensor: Tensor)] = []
        layers = try modules.map { module in
            let original = try source.tensor(module.path + ".weight", as: .f32, on: CPUBackend.shared).floats()
            let (lora, quantizedFrom) = try LoRAAdapter.loftq(original: original, outFeatures: module.weight.shape[0], config: settings.lora(for: module.path),
                                                              iterations: iterations, on: model.backend)
            if iterations > 1 {
                try module.weight.assign(quantizedFrom)
                base.append((module.path + ".weight", try Tensor(try module.weight.floats(), shape: module.weight.shape, on: CPUBackend.shared)))
            }
            return (module.path, .lora(lora))
        }
        split = nil
        loftqBase = base
        biases = try Self.biasModules(settings, model, adapted: modules.map(\.path)).map { ($0, try model.weight($0 + ".bias").copy(to: model.backend)) }
        tokens = try TrainableTokens.starting(settings, on: model)
        saved = try SavedModule.starting(settings, on: model)
    }

    /// The adapter PEFT (or `save`) wrote to `folder`, for `model`. A tensor for a module the model
    /// lacks, a missing one, or one shaped for another architecture is an error naming the file
    /// and tensor; F16 and BF16 tensors are widened to f32. An adapter that names another base
    /// model or architecture is refused unless `force` (see `checkOrigin`).
    public init(contentsOf folder: String, on model: LlamaModel, force: Bool = false) throws {
        let settings = try AdapterSettings(contentsOf: folder + "/" + Self.configName)
        let path = folder + "/" + Self.weightsName
        guard FileIO.exists(path) else {
            throw LowRankError(.io, "no \(Self.weightsName) (only safetensors adapters are read)", context: [("file", path)])
        }
        let file = try SafetensorsFile(path: path)
        let savedPaths: [String]
        do { savedPaths = try SavedModule.paths(settings, on: model) } catch let error as LowRankError { throw error.adding("file", folder + "/" + Self.configName) }
        let modules = try Self.targetedModules(settings, model)
        var expected = Set<String>()
        var layers: [(String, LayerAdapter)] = []
        let tensor = { (key: String, shape: Shape) throws -> Tensor in
            expected.insert(key)
            guard let entry = file.entries[key] else {
                throw LowRankError(.fileFormat, "the adapter has no \(key), which its config targets on this model",
                                   context: [("file", path), ("tensor", key)])
            }
            guard entry.shape == shape, entry.dtype.isFloatingPoint else {
                throw LowRankError(.shapeMismatch, "\(key) is \(entry.dtype)\(entry.shape) but this model needs a float \(shape) (an adapter for another architecture?)",
                                   context: [("file", path), ("tensor", key)])
            }
            return try Tensor(try file.floats(key), shape: shape, on: model.backend)
        }
        for module in modules {
            let (dOut, dIn) = (module.weight.shape[0], module.weight.shape[1])
            let load = { (name: String, shape: Shape) throws -> Tensor in try tensor(Self.key(module.path, name), shape) }
            let config = settings.lora(for: module.path)
            let lora = try LoRAAdapter(config: config, a: try load("lora_A.weight", [config.rank, dIn]), b: try load("lora_B.weight", [dOut, config.rank]))
            if settings.dora {
                layers.append((module.path, .dora(try DoRAAdapter(lora: lora, magnitude: try load("lora_magnitude_vector", [dOut]), weight: module.weight))))
            } else {
                layers.append((module.path, .lora(lora)))
            }
        }
        let adapted = modules.map(\.path)
        let biases = try Self.biasModules(settings, model, adapted: adapted).map { module in
            (module, try tensor(Self.biasKey(module, adapted: adapted), try model.weight(module + ".bias").shape))
        }
        let indices: [Int]?
        do { indices = try TrainableTokens.checkedIndices(settings, model) } catch let error as LowRankError { throw error.adding("file", folder + "/" + Self.configName) }
        let tokens = try indices.map { indices in
            TrainableTokens(indices: indices, rows: try tensor(TrainableTokens.key, [indices.count, model.config.hiddenSize]))
        }
        let saved = try savedPaths.map { module in
            let shape = try model.weight(SavedModule.frozenName(module, model.config)).shape
            let bias = try SavedModule.hasBias(module, model.config) ? tensor(Self.key(module, "bias"), try model.weight(module + ".bias").shape) : nil
            let copy = SavedModule(path: module, weight: try tensor(Self.key(module, "weight"), shape), bias: bias, settings: settings, config: model.config)
            // PEFT saves the one tied copy under the LM head's name too; loading either gives the same model only when they agree.
            if copy.tiedHead, try tensor(SavedModule.headKey, shape).floats() != copy.weight.floats() {
                throw LowRankError(.fileFormat, "\(SavedModule.headKey) differs from \(copy.key), which ensure_weight_tying makes one copy",
                                   context: [("file", path), ("tensor", SavedModule.headKey)])
            }
            return copy
        }
        if let stray = file.names.first(where: { !expected.contains($0) }) {
            throw LowRankError(.fileFormat, "the adapter holds \(stray), which matches no adapted module of this \(model.config.modelType) model (an adapter for another architecture?)",
                               context: [("file", path), ("tensor", stray)])
        }
        if !force { try Self.checkOrigin(settings, path: folder + "/" + Self.configName, model: model) }
        loftqBase = try Self.loadLoftQBase(folder, settings, modules: modules.map(\.path), into: model)
        self.settings = settings
        self.layers = layers
        self.biases = biases
        self.tokens = tokens
        self.saved = saved
        split = nil
    }

    /// The base LoftQ left (`loftqBaseName` in `folder`) put into `model`'s targeted weights, when
    /// its iterations changed it: NF4 re-quantizes those dequantized values to the same codes, and
    /// f32 holds them exactly, so the model is the one the adapter trained on.
    private static func loadLoftQBase(_ folder: String, _ settings: AdapterSettings, modules: [String], into model: LlamaModel) throws -> [(name: String, tensor: Tensor)] {
        guard let iterations = settings.loftqIterations, iterations > 1 else { return [] }
        let path = folder + "/" + loftqBaseName
        guard FileIO.exists(path) else {
            throw LowRankError(.io, "the adapter was initialised by LoftQ with \(iterations) iterations, which changed the NF4 base it trains on, and its \(loftqBaseName) is missing",
                               context: [("file", path)])
        }
        guard [.nf4, .f32].contains(model.projectionDType) else {
            throw LowRankError(.unsupported, "the adapter's LoftQ base holds NF4 values, which a \(model.projectionDType) model would round: load the model with --quantize nf4 (or in f32 to merge)",
                               context: [("file", path)])
        }
        let file = try SafetensorsFile(path: path)
        let names = modules.map { $0 + ".weight" }
        if let stray = file.names.first(where: { !names.contains($0) }) {
            throw LowRankError(.fileFormat, "\(stray) is no weight the adapter targets on this model", context: [("file", path), ("tensor", stray)])
        }
        return try names.map { name in
            let weight = try model.weight(name)
            guard file.entries[name]?.shape == weight.shape else {
                throw LowRankError(.shapeMismatch, "the LoftQ base needs \(name) shaped \(weight.shape)", context: [("file", path), ("tensor", name)])
            }
            let values = try file.floats(name)
            try weight.assign(values)
            return (name, try Tensor(values, shape: weight.shape, on: CPUBackend.shared))
        }
    }

    /// The modules LoRA adapts: those `settings` targets, less the projections it trains in full
    /// (PEFT's `ModulesToSaveWrapper` takes the module whole, so no LoRA layer is added in it).
    private static func targetedModules(_ settings: AdapterSettings, _ model: LlamaModel) throws -> [(path: String, weight: Tensor)] {
        let targeted = try settings.moduleMatcher()
        let copied = Set(try SavedModule.paths(settings, model.config))
        let modules = try model.linearModules.filter { targeted($0.path) && !copied.contains($0.path) }.map { ($0.path, try model.weight($0.path + ".weight")) }
        guard !modules.isEmpty else {
            throw LowRankError(.invalidArgument, "the adapter's target modules \(settings.targets) match no linear layer of the model",
                               context: [("modules", AdapterSettings.projectionNames.joined(separator: ", "))])
        }
        return modules
    }

    /// The trainable tensors, by PEFT's names: each layer's factors, the trained biases, the token
    /// rows, then the modules trained in full.
    public var parameters: [(name: String, tensor: Tensor)] {
        layers.flatMap { path, adapter -> [(name: String, tensor: Tensor)] in
            let factors = [(Self.key(path, "lora_A.weight"), adapter.lora.a), (Self.key(path, "lora_B.weight"), adapter.lora.b)]
            guard case .dora(let d) = adapter else { return factors }
            return factors + [(Self.key(path, "lora_magnitude_vector"), d.magnitude)]
        } + biases.map { (Self.biasKey($0.path, adapted: layers.map(\.path)), $0.tensor) }
            + (tokens.map { [(TrainableTokens.key, $0.rows)] } ?? []) + saved.flatMap(\.parameters)
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (f32) into `folder`, each
    /// atomically. After PiSSA or OLoRA, as PEFT converts it for the original model: `A' = [A; A0]`,
    /// `B' = [B, −B0]` (so `s'·B'·A' = s·(B·A − B0·A0)`, the change from the original weight),
    /// rank 2r, alpha 2α (√2·α with rsLoRA) and the patterns doubled.
    public func save(to folder: String) throws {
        try FileIO.makeDirectories(folder)
        try SafetensorsFile.write(try savedParameters(), metadata: ["format": "pt"], to: folder + "/" + Self.weightsName)
        if !loftqBase.isEmpty { try SafetensorsFile.write(loftqBase, metadata: ["format": "pt"], to: folder + "/" + Self.loftqBaseName) }
        try FileIO.writeAtomically(folder + "/" + Self.configName, text: savedSettings.json.serialized)
    }

    private var savedSettings: AdapterSettings {
        guard split != nil else { return settings }
        var s = settings
        s.rank *= 2
        s.alpha *= settings.rsLoRA ? Float(2).squareRoot() : 2
        s.rankPattern = s.rankPattern.mapValues { $0 * 2 }
        s.alphaPattern = s.alphaPattern.mapValues { $0 * 2 }
        return s
    }

    /// `parameters` as saved, with a tied copy's second name (PEFT's) last, so that `restore`
    /// pairs them with `parameters` in order.
    private func savedParameters() throws -> [(name: String, tensor: Tensor)] {
        try convertedParameters() + saved.filter(\.tiedHead).map { (SavedModule.headKey, $0.weight) }
    }

    private func convertedParameters() throws -> [(name: String, tensor: Tensor)] {
        guard let split else { return parameters }
        return try layers.flatMap { path, layer -> [(name: String, tensor: Tensor)] in
            let (a, b, start) = (layer.lora.a, layer.lora.b, split.start[path]!)
            let (r, dOut, trained) = (a.shape[0], b.shape[0], try b.floats())
            var joined: [Float] = []
            for i in 0..<dOut {
                joined += trained[(i * r)..<((i + 1) * r)]
                joined += start.b[(i * r)..<((i + 1) * r)].map { -$0 }
            }
            return [(Self.key(path, "lora_A.weight"), try Tensor(try a.floats() + start.a, shape: [2 * r, a.shape[1]], on: CPUBackend.shared)),
                    (Self.key(path, "lora_B.weight"), try Tensor(joined, shape: [dOut, 2 * r], on: CPUBackend.shared))]
        } + parameters.suffix(biases.count + (tokens == nil ? 0 : 1) + saved.flatMap(\.parameters).count)
    }

    /// Overwrites every tensor with the one `folder` holds under the same name (a checkpoint of
    /// this adapter; after PiSSA or OLoRA, the trained factors are the first r rows of A' and columns of B').
    public func restore(from folder: String) throws {
        let path = folder + "/" + Self.weightsName
        let file = try SafetensorsFile(path: path)
        for ((name, tensor), saved) in zip(parameters, try savedParameters()) {
            let entry = try file.entry(name)
            guard entry.shape == saved.tensor.shape, entry.dtype == .f32 else {
                throw LowRankError(.shapeMismatch, "\(name) is \(entry.dtype)\(entry.shape); this adapter's is f32\(saved.tensor.shape)",
                                   context: [("file", path), ("tensor", name)])
            }
            guard entry.shape != tensor.shape else {
                try file.withBytes(name) { try tensor.backend.write($0, to: tensor.storage, offset: 0) }
                continue
            }
            let values = try file.floats(name), (rows, columns) = (tensor.shape[0], tensor.shape[1])
            try tensor.assign((0..<rows).flatMap { i in values[(i * entry.shape[1])..<(i * entry.shape[1] + columns)] })
        }
    }
}

/// PEFT's `init_lora_weights` values a new adapter can start from.
public enum AdapterInitialization: Sendable, Equatable {
    /// `true`, PEFT's default: A Kaiming-uniform, B = 0.
    case kaiming
    /// `"gaussian"`: A from N(0, 1/r²), B = 0.
    case gaussian
    case split(SplitInitialization)
    /// `"loftq"` with `LoftQConfig(loftq_bits=4, loftq_iter=iterations)`, on an NF4 model: the
    /// adapter fits what NF4 quantization leaves of each targeted weight.
    case loftq(iterations: Int)
    /// `"eva"` with PEFT's `EvaConfig`: A from the principal directions of each layer's inputs over
    /// the training data, the ranks redistributed (`ModelAdapter(eva:)`).
    case eva(EVASettings)

    /// PEFT's name (`true` is written "kaiming" or "true"), or nil for one that is none of these.
    public init?(peftName: String) {
        switch peftName {
        case "kaiming", "true": self = .kaiming
        case "gaussian": self = .gaussian
        case "loftq": self = .loftq(iterations: 1)
        case "eva": self = .eva(EVASettings())
        default:
            guard let split = SplitInitialization(peftName: peftName) else { return nil }
            self = .split(split)
        }
    }

    public var peftName: String {
        switch self {
        case .kaiming: "kaiming"
        case .gaussian: "gaussian"
        case .split(let split): split.peftName
        case .loftq: "loftq"
        case .eva: "eva"
        }
    }

    /// The names `init(peftName:)` takes, `pissa_niter_N` standing for any N.
    public static let peftNames = ["kaiming", "gaussian", "pissa", "pissa_niter_N", "olora", "corda", "loftq", "eva"]
}

extension ModelAdapter {
    /// A new adapter on `model` started as `initialization` says, from `seed`; EVA reads `data` in
    /// batches of `batchSize` rows.
    public static func starting(_ settings: AdapterSettings, as initialization: AdapterInitialization, on model: LlamaModel, seed: UInt64,
                                data: TokenDataset? = nil, batchSize: Int = 1) throws -> ModelAdapter {
        switch initialization {
        case .kaiming: try ModelAdapter(settings: settings, on: model, seed: seed, initialization: .kaimingUniform)
        case .gaussian: try ModelAdapter(settings: settings, on: model, seed: seed, initialization: .gaussian)
        case .split(let split): try ModelAdapter(splitting: settings, by: split, on: model, seed: seed, data: data)
        case .loftq(let iterations): try ModelAdapter(loftq: settings, iterations: iterations, on: model)
        case .eva(let eva): try ModelAdapter(eva: settings, eva, on: model, data: try TokenDataset.required(data, by: "EVA"), batchSize: batchSize)
        }
    }
}

/// PEFT's initialisations that split each targeted weight into the adapter's start and a residual
/// the model keeps (`init_lora_weights` values).
public enum SplitInitialization: Sendable, Equatable {
    /// `"pissa"` (exact SVD) or `"pissa_niter_N"` (randomized SVD with N subspace iterations).
    case pissa(iterations: Int?)
    /// `"olora"`: the QR decomposition.
    case olora
    /// `"corda"` with `CordaConfig.corda_method`: the SVD of W times its inputs' covariance over the data.
    case corda(CorDAMethod)

    /// Whether it reads the training data (CorDA's covariances).
    var readsData: Bool { if case .corda = self { true } else { false } }

    /// PEFT's name, or nil for a name that is none of these.
    public init?(peftName: String) {
        if peftName == "pissa" { self = .pissa(iterations: nil); return }
        if peftName == "olora" { self = .olora; return }
        if peftName == "corda" { self = .corda(.ipm); return }
        let prefix = "pissa_niter_"
        guard peftName.hasPrefix(prefix), let n = Int(peftName.dropFirst(prefix.count)), n >= 0 else { return nil }
        self = .pissa(iterations: n)
    }

    public var peftName: String {
        switch self {
        case .pissa(nil): "pissa"
        case .pissa(let n?): "pissa_niter_\(n)"
        case .olora: "olora"
        case .corda: "corda"
        }
    }
}
