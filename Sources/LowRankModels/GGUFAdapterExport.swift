import LowRank

/// A PEFT LoRA adapter as llama.cpp's adapter file (what its `convert_lora_to_gguf.py` writes and
/// `llama-cli --lora` loads): `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`,
/// and for each adapted module `blk.N.<tensor>.weight.lora_a` (PEFT's `lora_A`, `[r, d_in]`) and
/// `.lora_b` (`lora_B`, `[d_out, r]`), for the architecture the converter gives the base
/// (`LlamaConfig.ggufArchitecture`). For `llama`, the rows of `q_proj`'s and `k_proj`'s `lora_b` are
/// put in the order the converter gives those weights in a GGUF base (`GGUFTensorNames.ropeRowOrder`),
/// since `B·A` is added to the permuted weight.
///
/// llama.cpp scales each module by `alpha / r`, with one alpha for the file and `r` read from
/// each module's `lora_a`: a `rank_pattern` is expressed as it is, but an adapter whose scale is
/// not `alpha / r` for every module (rsLoRA's `alpha / √r`, an `alpha_pattern` that changes a
/// module's alpha), DoRA (a magnitude vector llama.cpp has no place for) and trained biases are
/// refused with the advice to merge instead (`lowrank merge --out FILE.gguf`).
public enum GGUFAdapterExport {
    /// The element types llama.cpp's converter offers for adapter tensors that this engine writes.
    public static let tensorTypes: [GGUF.TensorType] = [.f32, .f16, .bf16]

    /// Writes the adapter in `folder` for a model of `config` to `path` (atomically), its tensors
    /// as `type` (f32 by default, as the converter writes them). Returns the number of modules.
    @discardableResult
    public static func write(adapter folder: String, config: LlamaConfig, to path: String, type: GGUF.TensorType = .f32) throws -> Int {
        guard tensorTypes.contains(type) else {
            throw LowRankError(.invalidArgument, "adapter tensors are written as \(tensorTypes.map(\.name).joined(separator: ", ")), not \(type.name)")
        }
        let configPath = folder + "/" + ModelAdapter.configName, weightsPath = folder + "/" + ModelAdapter.weightsName
        let settings = try AdapterSettings(contentsOf: configPath)
        let advice = "llama.cpp cannot apply it as an adapter; merge it into the model instead: lowrank merge --model M --adapter \(folder) --out merged.gguf"
        if settings.dora {
            throw LowRankError(.unsupported, "a DoRA adapter scales each output row by its magnitude vector, which llama.cpp's adapter format has no place for; \(advice)",
                               context: [("file", configPath), ("field", "use_dora")])
        }
        if settings.rsLoRA {
            throw LowRankError(.unsupported, "rsLoRA scales the update by alpha/√r, and llama.cpp by alpha/r; \(advice)",
                               context: [("file", configPath), ("field", "use_rslora")])
        }
        if settings.bias != .none {
            throw LowRankError(.unsupported, "the adapter trains biases (bias = \"\(settings.bias.rawValue)\"), which llama.cpp's adapter format does not carry; \(advice)",
                               context: [("file", configPath), ("field", "bias")])
        }
        if let iterations = settings.loftqIterations, iterations > 1 {
            throw LowRankError(.unsupported, "LoftQ with \(iterations) iterations trained the adapter on its own NF4 base (\(ModelAdapter.loftqBaseName)), which llama.cpp's adapter format does not carry; \(advice)",
                               context: [("file", configPath), ("field", "loftq_config")])
        }
        guard FileIO.exists(weightsPath) else {
            throw LowRankError(.io, "no \(ModelAdapter.weightsName) (only safetensors adapters are read)", context: [("file", weightsPath)])
        }
        let file = try SafetensorsFile(path: weightsPath)
        let modules = try pairs(file, config: config, settings: settings, configPath: configPath, advice: advice)

        let metadata: [(key: String, value: GGUF.Value)] = [
            ("general.architecture", .string(config.ggufArchitecture.name)),
            ("general.type", .string("adapter")),
            ("adapter.type", .string("lora")),
            ("general.name", .string(FileIO.lastComponent(folder))),
            ("adapter.lora.alpha", .float32(settings.alpha)),
            ("general.quantization_version", .uint32(2)),
        ]
        var tensors: [GGUFWriter.TensorInfo] = [], sources: [() throws -> [Float]] = []
        for module in modules {
            let base = module.gguf + ".weight"
            tensors.append(.init(name: base + ".lora_a", shape: [module.rank, module.inFeatures], type: type))
            sources.append { try file.floats(module.aKey) }
            tensors.append(.init(name: base + ".lora_b", shape: [module.outFeatures, module.rank], type: type))
            sources.append {
                let b = try file.floats(module.bKey)
                guard let heads = module.ropeHeads else { return b }
                // Whole rows of [d_out, r] move: GGUF row i is Hugging Face row order[i].
                let order = GGUFTensorNames.ropeRowOrder(rows: module.outFeatures, heads: heads)!
                return order.flatMap { b[($0 * module.rank)..<(($0 + 1) * module.rank)] }
            }
        }
        let cpu = CPUBackend.shared
        try GGUFWriter.write(to: path, metadata: metadata, tensors: tensors) { index in
            let info = tensors[index]
            return try Tensor(try sources[index](), shape: Shape(info.shape), dtype: type.dtype!, on: cpu).bytes()
        }
        return modules.count
    }

    private struct Module {
        let gguf: String, aKey: String, bKey: String
        let rank: Int, inFeatures: Int, outFeatures: Int
        /// The head count whose RoPE row order `lora_b` takes (q_proj: heads, k_proj: KV heads), else nil.
        let ropeHeads: Int?
    }

    /// The adapter's modules in model order, each with both factors, shaped for `config`, and
    /// scaled by `alpha / r`; any other tensor is refused by name.
    private static func pairs(_ file: SafetensorsFile, config: LlamaConfig, settings: AdapterSettings, configPath: String,
                              advice: String) throws -> [Module] {
        let prefix = "base_model.model.", suffixes = (a: ".lora_A.weight", b: ".lora_B.weight")
        var paths: [String] = []
        for name in file.names {
            guard name.hasPrefix(prefix), name.hasSuffix(suffixes.a) || name.hasSuffix(suffixes.b) else {
                throw LowRankError(.unsupported, "\(name) is not a LoRA factor (lora_A or lora_B) of a projection; \(advice)",
                                   context: [("file", file.path), ("tensor", name)])
            }
            let path = String(name.dropFirst(prefix.count).dropLast(suffixes.a.count))
            if !paths.contains(path) { paths.append(path) }
        }
        let projections = Dictionary(uniqueKeysWithValues: config.projections.map { ($0.path, $0) })
        let modules = try paths.map { path -> (layer: Int, index: Int, module: Module) in
            let aKey = prefix + path + suffixes.a, bKey = prefix + path + suffixes.b
            let parts = path.split(separator: ".", maxSplits: 3)
            guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), (0..<config.layerCount).contains(layer),
                  let projection = projections[String(parts[3])], let gguf = GGUFTensorNames.gguf(path) else {
                throw LowRankError(.unsupported, "\(aKey): llama.cpp adapters here cover the decoder blocks' projections, not \(path)",
                                   context: [("file", file.path), ("tensor", aKey)])
            }
            for key in [aKey, bKey] where file.entries[key] == nil {
                throw LowRankError(.fileFormat, "the adapter has one factor of \(path) without the other", context: [("file", file.path), ("tensor", key)])
            }
            let a = try file.entry(aKey), b = try file.entry(bKey), module = settings.lora(for: path), rank = module.rank
            guard a.dtype.isFloatingPoint, b.dtype.isFloatingPoint, a.shape == [rank, projection.inFeatures], b.shape == [projection.outFeatures, rank] else {
                throw LowRankError(.shapeMismatch, "\(path): lora_A is \(a.dtype)\(a.shape) and lora_B \(b.dtype)\(b.shape), but its config (r = \(rank)) "
                                       + "and this model need float [\(rank), \(projection.inFeatures)] and [\(projection.outFeatures), \(rank)] (an adapter for another model?)",
                                   context: [("file", file.path), ("tensor", aKey)])
            }
            guard module.alpha == settings.alpha else {
                throw LowRankError(.unsupported, "alpha_pattern gives \(path) alpha \(module.alpha), and llama.cpp applies one alpha (\(settings.alpha)) to every module; \(advice)",
                                   context: [("file", configPath), ("field", "alpha_pattern")])
            }
            let ropeHeads: Int? = switch projection.name {
            case _ where !config.ggufArchitecture.permutesQueryKey: nil
            case "q_proj": config.headCount
            case "k_proj": config.keyValueHeadCount
            default: nil
            }
            let index = config.projections.firstIndex { $0.path == projection.path }!
            return (layer, index, Module(gguf: gguf, aKey: aKey, bKey: bKey, rank: rank, inFeatures: projection.inFeatures,
                                         outFeatures: projection.outFeatures, ropeHeads: ropeHeads))
        }
        guard !modules.isEmpty else {
            throw LowRankError(.fileFormat, "the adapter holds no LoRA factors", context: [("file", file.path)])
        }
        return modules.sorted { ($0.layer, $0.index) < ($1.layer, $1.index) }.map(\.module)
    }
}
