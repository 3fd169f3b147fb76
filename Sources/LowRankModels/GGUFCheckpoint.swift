import Glibc
import LowRank
import LowRankText

/// A GGUF model file of the `llama` architecture, read as transformers' GGUF loader reads it: the
/// `llama.*` keys become the `LlamaConfig`, every tensor is found under its Hugging Face name
/// (`GGUFTensorNames`), and the query and key projections' rows are put back in Hugging Face's
/// order (llama.cpp's converter interleaves them for its RoPE), so an adapter trained on it is a
/// PEFT adapter of the model transformers builds from the same file. Rows move whole, so a
/// block-quantized projection stays quantized. Opening checks every tensor the configuration
/// implies (present, shaped as it says) and that none is left over, before anything is read.
public struct GGUFCheckpoint: ModelSource {
    public let file: GGUFFile
    public let config: LlamaConfig
    /// Whether block-quantized matrices load as f32 (or the dtype asked for) instead of as stored.
    public let dequantizing: Bool
    /// The GGUF tensor of each Hugging Face name.
    let ggufNames: [String: String]

    /// What transformers' loader leaves aside: Llama 3.1's RoPE frequency factors (llama.cpp's
    /// converter writes its `rope_scaling` as this tensor, which transformers does not read).
    static let ignoredTensors: Set<String> = ["rope_freqs.weight"]

    public init(path: String, dequantizing: Bool = false) throws {
        self.dequantizing = dequantizing
        file = try GGUFFile(path: path)
        config = try Self.config(of: file)
        var ggufNames: [String: String] = [:]
        for t in file.tensors where !Self.ignoredTensors.contains(t.name) {
            guard let huggingFace = Self.huggingFaceName(t.name) else {
                throw LowRankError(.fileFormat, "tensor \(t.name) is not one of the llama architecture's", context: [("file", path), ("tensor", t.name)])
            }
            ggufNames[huggingFace] = t.name
        }
        self.ggufNames = ggufNames
        try checkTensors()
    }

    public var name: String { file.path }

    /// `blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`.
    static func huggingFaceName(_ gguf: String) -> String? {
        for suffix in [".weight", ".bias"] where gguf.hasSuffix(suffix) {
            return GGUFTensorNames.huggingFace(String(gguf.dropLast(suffix.count))).map { $0 + suffix }
        }
        return nil
    }

    private func checkTensors() throws {
        let expected = config.expectedTensors
        for (name, shape) in expected {
            let gguf = Self.ggufName(name)
            guard let info = file.tensorInfo(gguf) else {
                throw LowRankError(.fileFormat, "the file has no tensor \(gguf) (\(name)), which its llama.* keys imply",
                                   context: [("file", file.path), ("tensor", gguf)])
            }
            guard info.shape == shape else {
                throw LowRankError(.shapeMismatch, "\(gguf) has dims \(info.dims) (shape \(info.shape)) but the llama.* keys imply \(name) of shape \(shape)",
                                   context: [("file", file.path), ("tensor", gguf)])
            }
        }
        let used = Set(expected.map(\.name))
        if let unused = ggufNames.keys.sorted().first(where: { !used.contains($0) }) {
            throw LowRankError(.fileFormat, "tensor \(ggufNames[unused]!) is not used by the model its llama.* keys describe",
                               context: [("file", file.path), ("tensor", ggufNames[unused]!)])
        }
    }

    static func ggufName(_ huggingFace: String) -> String {
        for suffix in [".weight", ".bias"] where huggingFace.hasSuffix(suffix) {
            if let module = GGUFTensorNames.gguf(String(huggingFace.dropLast(suffix.count))) { return module + suffix }
        }
        return huggingFace
    }

    private func info(_ name: String) throws -> GGUFFile.TensorInfo {
        try file.info(ggufNames[name] ?? Self.ggufName(name))
    }

    /// A float matrix loads as `override` when given, else as stored; a block-quantized projection
    /// or LM head stays quantized (unless `dequantizing`), and a quantized token embedding (which
    /// the embedding op reads as floats) is dequantized to `override` or f32. A type the engine has
    /// no dtype for is an error naming the tensor and type.
    public func matrixDType(_ override: DType?) -> @Sendable (String) throws -> DType {
        { [self] name in
            let stored = try storedDType(name)
            guard stored.isQuantized else { return override ?? stored }
            return dequantizing || name == "model.embed_tokens.weight" ? override ?? .f32 : stored
        }
    }

    /// The engine's dtype of tensor `name` as the file stores it.
    func storedDType(_ name: String) throws -> DType { try file.sourceDType(try info(name)) }

    /// Tensor `name` as `dtype`; `q_proj` and `k_proj` (weights and biases) with their rows in
    /// Hugging Face's order (`GGUFTensorNames.inverseRopeRowOrder`), copied on the host one tensor at a time.
    public func tensor(_ name: String, as dtype: DType, on backend: any Backend) throws -> Tensor {
        let t = try info(name)
        let source = try file.sourceDType(t)
        defer { file.evict(t.name) }
        return try file.withBytes(t.name) { raw in
            guard let order = try ropeRowOrder(name, t) else {
                return try Tensor(converting: raw, from: source, shape: t.shape, to: dtype, name: t.name, file: file.path, on: backend)
            }
            let reordered = try HostBuffer(byteCount: raw.count, for: "tensor \(t.name) with its rows reordered")
            let rowBytes = raw.count / order.count
            for (row, from) in order.enumerated() {
                memcpy(reordered.pointer + row * rowBytes, raw.baseAddress! + from * rowBytes, rowBytes)
            }
            return try Tensor(converting: UnsafeRawBufferPointer(reordered.bytes), from: source, shape: t.shape, to: dtype,
                              name: t.name, file: file.path, on: backend)
        }
    }

    /// The inverse of llama.cpp's row permutation for a query or key tensor, nil for the others.
    private func ropeRowOrder(_ name: String, _ t: GGUFFile.TensorInfo) throws -> [Int]? {
        let heads = name.contains(".self_attn.q_proj.") ? config.headCount : name.contains(".self_attn.k_proj.") ? config.keyValueHeadCount : 0
        guard heads > 0 else { return nil }
        guard let order = GGUFTensorNames.inverseRopeRowOrder(rows: t.shape[0], heads: heads) else {
            throw LowRankError(.shapeMismatch, "\(t.shape[0]) rows do not split into \(heads) heads of an even size", context: [("file", file.path), ("tensor", t.name)])
        }
        return order
    }

    public func textFormat(trainOnPrompt: Bool) throws -> TextFormat? {
        try Self.textFormat(of: file, trainOnPrompt: trainOnPrompt)
    }

    /// The tokenizer and chat template `file`'s metadata describes, or nil when it has no `tokenizer.ggml.model`.
    public static func textFormat(of file: GGUFFile, trainOnPrompt: Bool = false) throws -> TextFormat? {
        guard let tokenizer = try GGUFTokenizer(file) else { return nil }
        return TextFormat(tokenizer: tokenizer.tokenizer, chatTemplate: try ModelChatTemplate.template(of: file), bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken,
                          trainOnPrompt: trainOnPrompt)
    }
}

extension GGUFCheckpoint {
    /// The `llama` keys under the config.json fields transformers' GGUF loader gives them.
    static let configKeys: [(gguf: String, huggingFace: String)] = [
        ("block_count", "num_hidden_layers"), ("embedding_length", "hidden_size"), ("feed_forward_length", "intermediate_size"),
        ("attention.head_count", "num_attention_heads"), ("attention.head_count_kv", "num_key_value_heads"),
        ("attention.layer_norm_rms_epsilon", "rms_norm_eps"), ("rope.freq_base", "rope_theta"), ("rope.dimension_count", "head_dim"),
        ("vocab_size", "vocab_size"),
    ]

    /// The configuration the file's `llama.*` keys describe, checked as a config.json is
    /// (`LlamaConfig(json:)`), with errors naming the GGUF key. `vocab_size` is the token list's
    /// length when the key is absent, embeddings are tied when there is no `output.weight`, and
    /// `rope.scaling.type` `linear` (llama.cpp's converter's form of it) is read with its factor.
    public static func config(of file: GGUFFile) throws -> LlamaConfig {
        let architecture = file["general.architecture"]
        guard let arch = architecture?.string, arch == "llama" else {
            throw LowRankError(.unsupported, "general.architecture is \(architecture.map { $0.string ?? "\($0)" } ?? "missing"); only llama is read "
                               + "(Llama 2 and 3, Mistral, TinyLlama, SmolLM2 files use it)",
                               context: [("file", file.path), ("field", "general.architecture")])
        }
        var json: [String: JSON] = ["model_type": .string("llama"), "tie_word_embeddings": .bool(file.tensorInfo("output.weight") == nil)]
        for (gguf, huggingFace) in configKeys {
            if let value = file["llama." + gguf] { json[huggingFace] = Self.json(value) }
        }
        if json["vocab_size"] == nil, let tokens = file["tokenizer.ggml.tokens"]?.array {
            json["vocab_size"] = .number(Double(tokens.count))
        }
        if let kind = file["llama.rope.scaling.type"] {
            var scaling: [String: JSON] = ["rope_type": Self.json(kind)]
            if kind.string == "none" { scaling["rope_type"] = .string("default") }
            if let factor = file["llama.rope.scaling.factor"] { scaling["factor"] = Self.json(factor) }
            json["rope_scaling"] = .object(scaling)
        }
        do {
            return try LlamaConfig(json: .object(json), path: file.path)
        } catch var error as LowRankError {
            // Name the GGUF key, not the config.json field it stood for.
            if let i = error.context.firstIndex(where: { $0.0 == "field" }) {
                let field = error.context[i].1
                let key = configKeys.first { $0.huggingFace == field }.map { "llama." + $0.gguf }
                    ?? (field == "rope_scaling.rope_type" ? "llama.rope.scaling.type"
                        : field.hasPrefix("rope_scaling.") ? "llama.rope.scaling." + field.dropFirst("rope_scaling.".count) : field)
                error.context[i].1 = key
                if error.message.hasPrefix(field + ":") { error.message = key + error.message.dropFirst(field.count) }
                if field == "vocab_size", json["vocab_size"] == nil { error.message += " (neither llama.vocab_size nor tokenizer.ggml.tokens is in the file)" }
            }
            throw error
        }
    }

    private static func json(_ value: GGUF.Value) -> JSON {
        switch value {
        case .string(let s): .string(s)
        case .bool(let b): .bool(b)
        case .array(_, let values): .array(values.map(json))
        default: value.number.map(JSON.number) ?? .null
        }
    }
}
