import Glibc
import LowRank

/// A model with an adapter merged into it, as a GGUF file llama.cpp loads (`lowrank merge --out
/// FILE.gguf`), laid out as llama.cpp's `convert_hf_to_gguf.py` lays out a `LlamaForCausalLM`:
/// the `llama` architecture (`qwen2` for Qwen2, `LlamaConfig.ggufArchitecture`), tensors under
/// llama.cpp's names (`GGUFTensorNames`) with the rows of the query and key projections (and
/// their biases) in its RoPE order for `llama`, norms and other vectors in
/// F32, every matrix in the chosen type (F16 when a quantized type's blocks do not divide its rows,
/// as the converter falls back), Llama 3's RoPE scaling as the `rope_freqs` tensor, and the
/// metadata of `source` (configuration, tokenizer, chat template).
public enum GGUFModelExport {
    /// The matrix types `lowrank merge --gguf-type` writes, with llama.cpp's `general.file_type` for each.
    public static let matrixTypes: [(type: GGUF.TensorType, fileType: UInt32)] = [(.f32, 0), (.f16, 1), (.bf16, 32), (.q8_0, 7), (.q4_0, 2)]

    /// Writes `model` with `adapter` merged (the same merge as the safetensors writer) to `path`,
    /// atomically. `model` holds its weights unquantized, whatever file they came from (every tensor
    /// is read from it); the merge runs on its backend. The report measures what the chosen type's
    /// rounding kept of each merged tensor's update.
    public static func write(merging adapter: ModelAdapter, of model: LlamaModel, to path: String, type: GGUF.TensorType,
                             metadata source: any GGUFMetadataSource) throws -> (report: MergeReport, warnings: [String]) {
        guard let fileType = matrixTypes.first(where: { $0.type == type })?.fileType else {
            throw LowRankError(.invalidArgument, "a merged GGUF file's matrices are \(matrixTypes.map(\.type.name).joined(separator: ", ")), not \(type.name)")
        }
        guard !model.projectionDType.isQuantized else {
            throw LowRankError(.invalidArgument, "merging needs the model's weights in f32, bf16 or f16, not quantized to \(model.projectionDType)")
        }
        let (metadata, warnings) = try source.ggufMetadata(fileType: fileType)
        let config = model.config
        let adapted = Dictionary(uniqueKeysWithValues: adapter.layers.map { ($0.path + ".weight", $0.adapter) })
        let biases = Dictionary(uniqueKeysWithValues: adapter.biases.map { ($0.path + ".bias", $0.tensor) })

        var tensors: [GGUFWriter.TensorInfo] = [], sources: [String?] = []
        for (name, shape) in config.expectedTensors {
            let (module, suffix) = name.hasSuffix(".bias") ? (String(name.dropLast(5)), ".bias") : (String(name.dropLast(7)), ".weight")
            guard let gguf = GGUFTensorNames.gguf(module) else {
                throw LowRankError(.unsupported, "llama.cpp's llama architecture has no tensor for \(name)", context: [("tensor", name)])
            }
            let columns = shape.dims.last!, block = type.blockGeometry.elements
            let tensorType: GGUF.TensorType = shape.rank == 1 ? .f32 : columns % block == 0 ? type : .f16
            tensors.append(.init(name: gguf + suffix, shape: shape.dims, type: tensorType))
            sources.append(name)
        }
        if let factors = config.llamaCppRopeFactors {
            tensors.insert(.init(name: "rope_freqs.weight", shape: [factors.count], type: .f32), at: 0)
            sources.insert(nil, at: 0)
        }

        var rounding: [MergeRounding] = []
        let cpu = CPUBackend.shared
        try GGUFWriter.write(to: path, metadata: metadata, tensors: tensors) { index in
            let info = tensors[index], dtype = info.type.dtype!
            guard let name = sources[index] else { return try Tensor(config.llamaCppRopeFactors!, shape: [info.shape[0]], on: cpu).bytes() }
            var original: [Float]?, values: [Float]
            if let layer = adapted[name] {
                (original, values) = try layer.merged(into: try model.weight(name), on: model.backend)
            } else if let bias = biases[name] {
                values = try bias.floats()
            } else {
                values = try model.weight(name).floats()
            }
            if let order = try ropeOrder(name, rows: info.shape[0], config: config) {
                let width = info.shape.count == 2 ? info.shape[1] : 1
                let permute = { (v: [Float]) in order.flatMap { v[($0 * width)..<(($0 + 1) * width)] } }
                values = permute(values)
                original = original.map(permute)
            }
            let written = try Tensor(values, shape: Shape(info.shape), dtype: dtype, on: cpu)
            let rounded = try written.floats()
            if let bad = rounded.firstIndex(where: { !$0.isFinite }) {
                throw LowRankError(.numerical, "\(name) holds a NaN or infinite value (at \(bad)) \(original != nil ? "after merging the adapter, " : "")in \(info.type.name); nothing was written",
                                   context: [("file", path), ("tensor", name)])
            }
            if let original { rounding.append(try MergeRounding(tensor: name, dtype: dtype, original: original, merged: values, rounded: rounded)) }
            return try written.bytes()
        }
        return (MergeReport(skipped: [], rounding: rounding), warnings)
    }

    /// The GGUF row order of `q_proj`'s and `k_proj`'s weights and biases, nil for other tensors.
    private static func ropeOrder(_ name: String, rows: Int, config: LlamaConfig) throws -> [Int]? {
        guard config.ggufArchitecture.permutesQueryKey else { return nil }
        let heads = name.contains(".self_attn.q_proj.") ? config.headCount : name.contains(".self_attn.k_proj.") ? config.keyValueHeadCount : nil
        guard let heads else { return nil }
        guard let order = GGUFTensorNames.ropeRowOrder(rows: rows, heads: heads) else {
            throw LowRankError(.shapeMismatch, "\(rows) rows do not split into \(heads) heads of even size", context: [("tensor", name)])
        }
        return order
    }
}

extension LlamaConfig {
    /// The llama.cpp architecture its converter gives this model type: `qwen2` for Qwen2 (whose rows
    /// of q and k it keeps in Hugging Face's order, as llama.cpp's qwen2 graph rotates halves), `llama`
    /// for Llama and Mistral (rows permuted to interleaved pairs).
    public var ggufArchitecture: (name: String, permutesQueryKey: Bool) {
        modelType == "qwen2" ? ("qwen2", false) : ("llama", true)
    }

    /// llama.cpp's form of Llama 3's RoPE scaling: the divisor of each of the `headDim / 2` base
    /// frequencies, which its converter writes as the `rope_freqs` tensor (`LlamaModel.generate_extra_tensors`);
    /// nil for other scalings.
    var llamaCppRopeFactors: [Float]? {
        guard case .llama3(let factor, let low, let high, let context) = ropeScaling else { return nil }
        let (lowWavelength, highWavelength) = (Float(context / low), Float(context / high))
        return (0..<(headDim / 2)).map { i in
            let frequency = 1 / powf(Float(ropeTheta), Float(2 * i) / Float(headDim))
            let wavelength = 2 * Float.pi / frequency
            if wavelength < highWavelength { return 1 }
            if wavelength > lowWavelength { return Float(factor) }
            let smooth = (Float(context) / wavelength - Float(low)) / Float(high - low)
            return 1 / ((1 - smooth) / Float(factor) + smooth)
        }
    }
}
