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

    /// The most decoder blocks a config may name: llama.cpp's `LLAMA_MAX_LAYERS`, four times the
    /// deepest Llama (3.1 405B, 126). An untrusted count of a billion tiny layers would otherwise be
    /// a list of billions of tensor names before any check against the checkpoint could refuse it.
    public static let maximumLayerCount = 512

    /// Reads `path` (a `config.json`); every missing, mistyped or unsupported field is an error that
    /// names the file and the field.
    public init(contentsOf path: String) throws {
        try self.init(json: try JSON.read(path, what: "the model's config"), path: path)
    }

    public init(json: JSON, path: String = "config.json") throws {
        let fields = try ConfigFields(json, path: path, what: "the model's config")
        let type = try fields.string("model_type")
        guard Self.supportedTypes.contains(type) else {
            throw fields.fail("model_type", "\"\(type)\" is not a Llama-family decoder this engine builds (\(Self.supportedTypes.joined(separator: ", ")))")
        }
        let act = try fields.string("hidden_act", default: "silu")
        guard act == "silu" else { throw fields.fail("hidden_act", "the Llama family's MLP is SwiGLU (silu); got \"\(act)\"") }
        let hidden = try fields.int("hidden_size"), heads = try fields.int("num_attention_heads")
        self.init(modelType: type, vocabularySize: try fields.int("vocab_size"), hiddenSize: hidden,
                  intermediateSize: try fields.int("intermediate_size"), layerCount: try fields.int("num_hidden_layers", in: 1...Self.maximumLayerCount), headCount: heads,
                  keyValueHeadCount: try fields.int("num_key_value_heads", default: heads),
                  headDim: try fields.int("head_dim", default: max(1, hidden / heads)),
                  rmsNormEpsilon: Float(try fields.number("rms_norm_eps", default: 1e-6, "a number of at least 0", where: { $0 >= 0 })),
                  tiedEmbeddings: try fields.bool("tie_word_embeddings", default: false),
                  attentionBias: type == "qwen2" ? true : try fields.bool("attention_bias", default: false),
                  mlpBias: try fields.bool("mlp_bias", default: false))
        guard heads % keyValueHeadCount == 0 else {
            throw fields.fail("num_key_value_heads", "\(keyValueHeadCount) does not divide num_attention_heads \(heads)")
        }
        guard headDim % 2 == 0 else { throw fields.fail("head_dim", "RoPE needs an even head dim, got \(headDim)") }
        try checkSizes(fields)

        // transformers 5 folds rope_theta into rope_parameters; older configs keep them apart.
        let rope = try fields.object("rope_parameters") ?? fields.object("rope_scaling")
        let thetaFields = rope?["rope_theta"] != nil ? rope! : fields
        ropeTheta = try thetaFields.number("rope_theta", default: 10000, "positive", where: { $0 > 0 })
        if let rope { ropeScaling = try Self.scaling(rope) }
        let windowed = try type == "mistral" || (type == "qwen2" && fields.bool("use_sliding_window", default: false))
        // null is no window; a window below 1 token is no window transformers could apply either.
        slidingWindow = try windowed && fields["sliding_window"] != nil ? fields.int("sliding_window") : nil
    }

    /// RoPE scaling as transformers' `rope_config_validation` checks it; what it only warns about
    /// (a factor below 1, high_freq_factor not above low_freq_factor) is refused here, since it
    /// is no scaling any checkpoint was trained with and the last divides by zero.
    private static func scaling(_ rope: ConfigFields) throws -> RoPEScaling {
        let kind = try rope.string("rope_type", default: try rope.string("type", default: "default"))
        // transformers' per-layer-type form ({"full_attention": {…}}) would otherwise read as no scaling.
        if let nested = rope.object.first(where: { $0.value.object != nil })?.key {
            throw rope.fail(nested, "RoPE parameters per layer type are not supported (a Llama-family decoder has one set)", kind: .unsupported)
        }
        let factor = { try rope.number("factor", "at least 1 (transformers' rope_config_validation)", where: { $0 >= 1 }) }
        switch kind {
        case "default":
            return .none
        case "linear":
            return .linear(factor: try factor())
        case "llama3":
            let f = try factor()
            let low = try rope.number("low_freq_factor", "positive", where: { $0 > 0 })
            let high = try rope.number("high_freq_factor", "greater than low_freq_factor \(low)", where: { $0 > low })
            let context = try rope.int("original_max_position_embeddings")
            return .llama3(factor: f, lowFrequencyFactor: low, highFrequencyFactor: high, originalContext: Double(context))
        default:
            throw rope.fail("rope_type", "RoPE scaling \"\(kind)\" is not supported (default, linear, llama3)", kind: .unsupported)
        }
    }

    /// Every weight's element count fits, in f32 bytes, in the address space: untrusted numbers
    /// such as 2^40 heads of 2^40 dimensions are an error naming the fields, not an overflow trap.
    private func checkSizes(_ fields: ConfigFields) throws {
        func product(_ a: (field: String, value: Int), _ b: (field: String, value: Int)) throws -> Int {
            let (p, overflow) = a.value.multipliedReportingOverflow(by: b.value)
            guard !overflow, p <= Int.max / MemoryLayout<Float>.size else {
                throw fields.fail(b.field, "\(a.field) \(a.value) × \(b.field) \(b.value) is beyond any tensor this engine can hold",
                                  kind: .invalidArgument)
            }
            return p
        }
        let q = try product(("num_attention_heads", headCount), ("head_dim", headDim))
        _ = try product(("num_key_value_heads", keyValueHeadCount), ("head_dim", headDim))
        for (a, b) in [(("vocab_size", vocabularySize), ("hidden_size", hiddenSize)), (("num_attention_heads × head_dim", q), ("hidden_size", hiddenSize)),
                       (("intermediate_size", intermediateSize), ("hidden_size", hiddenSize))] {
            _ = try product(a, b)
        }
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

    /// The transformers class of this model type (`LlamaForCausalLM`).
    public var architecture: String {
        ["llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"][modelType] ?? modelType
    }

    /// The JSON transformers writes for this architecture (with `rope_theta` and `rope_scaling`,
    /// which every transformers version reads).
    public var json: JSON {
        var o: [String: JSON] = [
            "architectures": .array([.string(architecture)]),
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
