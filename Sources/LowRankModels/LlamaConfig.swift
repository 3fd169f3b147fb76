import Glibc
import LowRank

/// The architecture of a Llama-family decoder (Llama 2 and 3, Mistral, Qwen2 and 2.5, TinyLlama), read
/// from a Hugging Face `config.json` in either generation of its RoPE fields (`rope_theta` with
/// `rope_scaling`, or transformers 5's `rope_parameters`).
public struct LlamaConfig: Hashable, Sendable {
    public enum RoPEScaling: Hashable, Sendable {
        case none
        /// Positions divided by `factor` (inverse frequencies divided by it).
        case linear(factor: Double)
        /// Llama 3.1's: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
        case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContext: Double)
    }

    public var modelType: String
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var keyValueHeadCount: Int
    public var headDim: Int
    public var rmsNormEpsilon: Float
    public var ropeTheta: Double
    public var ropeScaling: RoPEScaling
    public var tiedEmbeddings: Bool
    /// Biases on q, k and v (Qwen2 always; Llama with `attention_bias`), and on o with Llama's flag.
    public var attentionBias: Bool
    public var mlpBias: Bool
    /// Mistral's and Qwen2's sliding window, when one is on: sequences must not be longer.
    public var slidingWindow: Int?

    public init(modelType: String = "llama", vocabularySize: Int, hiddenSize: Int, intermediateSize: Int, layerCount: Int,
                headCount: Int, keyValueHeadCount: Int, headDim: Int? = nil, rmsNormEpsilon: Float = 1e-6,
                ropeTheta: Double = 10000, ropeScaling: RoPEScaling = .none, tiedEmbeddings: Bool = false,
                attentionBias: Bool = false, mlpBias: Bool = false, slidingWindow: Int? = nil) {
        (self.modelType, self.vocabularySize, self.hiddenSize, self.intermediateSize) = (modelType, vocabularySize, hiddenSize, intermediateSize)
        (self.layerCount, self.headCount, self.keyValueHeadCount) = (layerCount, headCount, keyValueHeadCount)
        self.headDim = headDim ?? hiddenSize / headCount
        (self.rmsNormEpsilon, self.ropeTheta, self.ropeScaling) = (rmsNormEpsilon, ropeTheta, ropeScaling)
        (self.tiedEmbeddings, self.attentionBias, self.mlpBias, self.slidingWindow) = (tiedEmbeddings, attentionBias, mlpBias, slidingWindow)
    }

    static let supportedTypes = ["llama", "mistral", "qwen2"]

    /// Reads `path` (a `config.json`); every missing, mistyped or unsupported field is an error that
    /// names the file and the field.
    public init(contentsOf path: String) throws {
        try self.init(json: try JSON.read(path, what: "the model's config"), path: path)
    }

    public init(json: JSON, path: String = "config.json") throws {
        func fail(_ field: String, _ message: String) -> LowRankError {
            LowRankError(.fileFormat, "\(field): \(message)", context: [("file", path), ("field", field)])
        }
        func int(_ field: String, default value: Int? = nil) throws -> Int {
            guard let v = json[field], v != .null else {
                guard let value else { throw fail(field, "missing") }
                return value
            }
            guard let i = v.int, i > 0 else { throw fail(field, "must be a positive integer, got \(v.serialized)") }
            return i
        }
        func number(_ object: JSON, _ field: String, default value: Double? = nil) throws -> Double {
            guard let v = object[field], v != .null else {
                guard let value else { throw fail(field, "missing") }
                return value
            }
            guard let n = v.number, n.isFinite else { throw fail(field, "must be a number, got \(v.serialized)") }
            return n
        }
        func bool(_ field: String, default value: Bool) throws -> Bool {
            guard let v = json[field], v != .null else { return value }
            guard case .bool(let b) = v else { throw fail(field, "must be true or false, got \(v.serialized)") }
            return b
        }
        guard json.object != nil else { throw LowRankError(.fileFormat, "the config is not a JSON object", context: [("file", path)]) }
        guard let type = json["model_type"]?.string else { throw fail("model_type", "missing") }
        guard Self.supportedTypes.contains(type) else {
            throw fail("model_type", "\"\(type)\" is not a Llama-family decoder this engine builds (\(Self.supportedTypes.joined(separator: ", ")))")
        }
        if let act = json["hidden_act"]?.string, act != "silu" {
            throw fail("hidden_act", "the Llama family's MLP is SwiGLU (silu); got \"\(act)\"")
        }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        self.init(modelType: type, vocabularySize: try int("vocab_size"), hiddenSize: hidden, intermediateSize: try int("intermediate_size"),
                  layerCount: try int("num_hidden_layers"), headCount: heads,
                  keyValueHeadCount: try int("num_key_value_heads", default: heads), headDim: try int("head_dim", default: hidden / heads),
                  rmsNormEpsilon: Float(try number(json, "rms_norm_eps", default: 1e-6)),
                  tiedEmbeddings: try bool("tie_word_embeddings", default: false),
                  attentionBias: type == "qwen2" ? true : try bool("attention_bias", default: false),
                  mlpBias: try bool("mlp_bias", default: false))
        guard heads % keyValueHeadCount == 0 else {
            throw fail("num_key_value_heads", "\(keyValueHeadCount) does not divide num_attention_heads \(heads)")
        }
        guard headDim % 2 == 0 else { throw fail("head_dim", "RoPE needs an even head dim, got \(headDim)") }

        // transformers 5 folds rope_theta into rope_parameters; older configs keep them apart.
        let rope = json["rope_parameters"].flatMap { $0 == .null ? nil : $0 } ?? json["rope_scaling"].flatMap { $0 == .null ? nil : $0 }
        ropeTheta = try number(rope?["rope_theta"] != nil ? rope! : json, "rope_theta", default: 10000)
        if let rope {
            let kind = rope["rope_type"]?.string ?? rope["type"]?.string ?? "default"
            switch kind {
            case "default": ropeScaling = .none
            case "linear": ropeScaling = .linear(factor: try number(rope, "factor"))
            case "llama3":
                ropeScaling = .llama3(factor: try number(rope, "factor"), lowFrequencyFactor: try number(rope, "low_freq_factor"),
                                      highFrequencyFactor: try number(rope, "high_freq_factor"),
                                      originalContext: try number(rope, "original_max_position_embeddings"))
            default:
                throw fail("rope_type", "RoPE scaling \"\(kind)\" is not supported (default, linear, llama3)")
            }
        }
        let qwenWindow = try bool("use_sliding_window", default: false)
        let windowed = type == "mistral" || (type == "qwen2" && qwenWindow)
        slidingWindow = windowed ? json["sliding_window"]?.int : nil
    }

    /// The RoPE inverse frequencies, `headDim / 2` of them, computed in f32 as transformers does.
    public var inverseFrequencies: [Float] {
        let base = (0..<(headDim / 2)).map { 1 / powf(Float(ropeTheta), Float(2 * $0) / Float(headDim)) }
        switch ropeScaling {
        case .none:
            return base
        case .linear(let factor):
            return base.map { $0 / Float(factor) }
        case .llama3(let factor, let low, let high, let context):
            let (f, lowWavelength, highWavelength) = (Float(factor), Float(context / low), Float(context / high))
            return base.map { inv in
                let wavelength = 2 * Float.pi / inv
                if wavelength < highWavelength { return inv }
                if wavelength > lowWavelength { return inv / f }
                let smooth = (Float(context) / wavelength - Float(low)) / Float(high - low)
                return (1 - smooth) * inv / f + smooth * inv
            }
        }
    }

    /// The JSON transformers writes for this architecture (with `rope_theta` and `rope_scaling`,
    /// which every transformers version reads).
    public var json: JSON {
        var o: [String: JSON] = [
            "architectures": .array([.string(["llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"][modelType]!)]),
            "model_type": .string(modelType), "vocab_size": .number(Double(vocabularySize)), "hidden_size": .number(Double(hiddenSize)),
            "intermediate_size": .number(Double(intermediateSize)), "num_hidden_layers": .number(Double(layerCount)),
            "num_attention_heads": .number(Double(headCount)), "num_key_value_heads": .number(Double(keyValueHeadCount)),
            "head_dim": .number(Double(headDim)), "rms_norm_eps": .number(Double(rmsNormEpsilon)), "rope_theta": .number(ropeTheta),
            "tie_word_embeddings": .bool(tiedEmbeddings), "hidden_act": .string("silu"), "max_position_embeddings": .number(4096),
            "torch_dtype": .string("float32"),
        ]
        if modelType == "llama" { o["attention_bias"] = .bool(attentionBias); o["mlp_bias"] = .bool(mlpBias) }
        switch ropeScaling {
        case .none: break
        case .linear(let factor): o["rope_scaling"] = .object(["rope_type": .string("linear"), "factor": .number(factor)])
        case .llama3(let factor, let low, let high, let context):
            o["rope_scaling"] = .object(["rope_type": .string("llama3"), "factor": .number(factor), "low_freq_factor": .number(low),
                                         "high_freq_factor": .number(high), "original_max_position_embeddings": .number(context)])
        }
        return .object(o)
    }

    /// The linear layers of each decoder block, by the names PEFT targets and their `[d_out, d_in]`.
    public var projections: [(name: String, path: String, outFeatures: Int, inFeatures: Int)] {
        let (q, kv) = (headCount * headDim, keyValueHeadCount * headDim)
        return [("q_proj", "self_attn.q_proj", q, hiddenSize), ("k_proj", "self_attn.k_proj", kv, hiddenSize),
                ("v_proj", "self_attn.v_proj", kv, hiddenSize), ("o_proj", "self_attn.o_proj", hiddenSize, q),
                ("gate_proj", "mlp.gate_proj", intermediateSize, hiddenSize), ("up_proj", "mlp.up_proj", intermediateSize, hiddenSize),
                ("down_proj", "mlp.down_proj", hiddenSize, intermediateSize)]
    }

    /// Whether projection `name` has a bias.
    func hasBias(_ name: String) -> Bool {
        switch name {
        case "q_proj", "k_proj", "v_proj": attentionBias
        case "o_proj": attentionBias && modelType == "llama"
        default: mlpBias
        }
    }

    /// Every tensor a checkpoint of this architecture holds, with its shape.
    public var expectedTensors: [(name: String, shape: Shape)] {
        var list: [(String, Shape)] = [("model.embed_tokens.weight", [vocabularySize, hiddenSize]), ("model.norm.weight", [hiddenSize])]
        if !tiedEmbeddings { list.append(("lm_head.weight", [vocabularySize, hiddenSize])) }
        for layer in 0..<layerCount {
            let prefix = "model.layers.\(layer)."
            list += [(prefix + "input_layernorm.weight", [hiddenSize]), (prefix + "post_attention_layernorm.weight", [hiddenSize])]
            for p in projections {
                list.append((prefix + p.path + ".weight", [p.outFeatures, p.inFeatures]))
                if hasBias(p.name) { list.append((prefix + p.path + ".bias", [p.outFeatures])) }
            }
        }
        return list
    }
}
