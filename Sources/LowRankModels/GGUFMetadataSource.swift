import LowRank
import LowRankText

/// Where a GGUF model file's metadata comes from: the configuration keys of the `llama`
/// architecture and the tokenizer, everything but the tensors. A Hugging Face folder gives them
/// from `config.json`, `tokenizer.json` and `tokenizer_config.json`
/// (`HuggingFaceGGUFMetadata`); a GGUF model read as the input would carry its own over, with its
/// `general.file_type` replaced.
public protocol GGUFMetadataSource {
    /// The keys in the order they are written, `general.file_type` set to `fileType` (llama.cpp's
    /// `llama_ftype`), and what the user should hear about them (a tokenizer llama.cpp will not
    /// recognise, a missing vocabulary).
    func ggufMetadata(fileType: UInt32) throws -> (metadata: [(key: String, value: GGUF.Value)], warnings: [String])
}

/// A Hugging Face model folder's metadata as llama.cpp's `convert_hf_to_gguf.py` writes it for a
/// `LlamaForCausalLM` (`TextModel.set_gguf_parameters`, `LlamaModel.set_gguf_parameters` and
/// `set_vocab`, `SpecialVocab`; for Qwen2, `Qwen2Model`'s): `general.*`, the `llama.*` (`qwen2.*`)
/// configuration, `tokenizer.ggml.*` and `tokenizer.chat_template`.
public struct HuggingFaceGGUFMetadata: GGUFMetadataSource {
    public let folder: String
    public let config: LlamaConfig

    public init(folder: String, config: LlamaConfig) {
        (self.folder, self.config) = (folder, config)
    }

    static let specialTokenTypes = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"]

    public func ggufMetadata(fileType: UInt32) throws -> (metadata: [(key: String, value: GGUF.Value)], warnings: [String]) {
        let configPath = folder + "/config.json", architecture = config.ggufArchitecture.name
        let hf = try JSON.read(configPath, what: "the model's config")
        // llama.cpp reads these keys as u32: a value beyond it is an error naming the field, not a trap.
        let u32 = { (n: Int, field: String) throws -> GGUF.Value in
            guard let value = UInt32(exactly: n) else {
                throw LowRankError(.fileFormat, "\(field) \(n) does not fit GGUF's u32", context: [("file", configPath), ("field", field)])
            }
            return .uint32(value)
        }
        var metadata: [(key: String, value: GGUF.Value)] = [
            ("general.architecture", .string(architecture)),
            ("general.type", .string("model")),
            ("general.name", .string(FileIO.lastComponent(folder))),
            ("\(architecture).block_count", try u32(config.layerCount, "num_hidden_layers")),
        ]
        if let context = hf["max_position_embeddings"]?.int { metadata.append(("\(architecture).context_length", try u32(context, "max_position_embeddings"))) }
        metadata += [
            ("\(architecture).embedding_length", try u32(config.hiddenSize, "hidden_size")),
            ("\(architecture).feed_forward_length", try u32(config.intermediateSize, "intermediate_size")),
            ("\(architecture).attention.head_count", try u32(config.headCount, "num_attention_heads")),
            ("\(architecture).attention.head_count_kv", try u32(config.keyValueHeadCount, "num_key_value_heads")),
        ]
        if case .linear(let factor) = config.ropeScaling {
            metadata += [("\(architecture).rope.scaling.type", .string("linear")), ("\(architecture).rope.scaling.factor", .float32(Float(factor)))]
        }  // llama3 scaling is the rope_freqs tensor
        metadata += [
            ("\(architecture).rope.freq_base", .float32(Float(config.ropeTheta))),
            ("\(architecture).attention.layer_norm_rms_epsilon", .float32(config.rmsNormEpsilon)),
        ]
        if hf["head_dim"]?.int != nil {
            metadata += [("\(architecture).attention.key_length", try u32(config.headDim, "head_dim")), ("\(architecture).attention.value_length", try u32(config.headDim, "head_dim"))]
        }
        metadata.append(("general.file_type", .uint32(fileType)))
        if config.ggufArchitecture.permutesQueryKey {  // LlamaModel.set_gguf_parameters; Qwen2's converter writes neither
            metadata += [("llama.vocab_size", try u32(config.vocabularySize, "vocab_size")),
                         ("llama.rope.dimension_count", try u32(config.headDim, "head_dim"))]
        }
        metadata.append(("general.quantization_version", .uint32(2)))
        guard FileIO.exists(folder + "/tokenizer.json") else {
            return (metadata, ["warning: \(folder) has no tokenizer.json, so the GGUF file has no vocabulary; llama.cpp needs one to load it"])
        }
        let (tokenizerKeys, warnings) = try tokenizerMetadata(hf)
        return (metadata + tokenizerKeys, warnings)
    }

    /// `tokenizer.ggml.*` and the chat template: the vocabulary (`Tokenizer.ggufVocabulary`), then
    /// what `SpecialVocab` adds: merges, special token ids, add-BOS/EOS flags, the template.
    private func tokenizerMetadata(_ hf: JSON) throws -> (metadata: [(key: String, value: GGUF.Value)], warnings: [String]) {
        let tokenizerPath = folder + "/tokenizer.json", tokenizerConfigPath = folder + "/tokenizer_config.json"
        let tokenizer = try Tokenizer.load(folder)
        let tokenizerJSON = try JSON.read(tokenizerPath, what: "tokenizer.json")
        let tokenizerConfig = FileIO.exists(tokenizerConfigPath) ? try JSON.read(tokenizerConfigPath, what: "tokenizer_config.json") : nil
        let vocabulary: GGUFVocabulary
        do { vocabulary = try tokenizer.ggufVocabulary(size: config.vocabularySize) } catch let error as LowRankError {
            throw error.adding("file", tokenizerPath)
        }
        var metadata: [(key: String, value: GGUF.Value)] = [], warnings: [String] = []
        if let addPrefixSpace = tokenizerConfig?["add_prefix_space"]?.flag {
            metadata.append(("tokenizer.ggml.add_space_prefix", .bool(addPrefixSpace)))
        }
        if vocabulary.pre == nil {
            warnings.append("warning: llama.cpp's converter knows no pre-tokenizer with this tokenizer's hash \(vocabulary.preTokenizerHash); "
                            + "tokenizer.ggml.pre is \"default\", so llama.cpp may split text differently than tokenizer.json does")
        }
        metadata += [
            ("tokenizer.ggml.model", .string(vocabulary.model)),
            ("tokenizer.ggml.pre", .string(vocabulary.pre ?? "default")),
            ("tokenizer.ggml.tokens", .array(.string, vocabulary.tokens.map { .string($0) })),
        ]
        if let scores = vocabulary.scores { metadata.append(("tokenizer.ggml.scores", .array(.float32, scores.map { .float32($0) }))) }
        metadata.append(("tokenizer.ggml.token_type", .array(.int32, vocabulary.types.map { .int32($0.rawValue) })))
        if !vocabulary.merges.isEmpty { metadata.append(("tokenizer.ggml.merges", .array(.string, vocabulary.merges.map { .string($0) }))) }

        // SpecialVocab: ids of the configured special tokens among the added tokens, then config.json's `<type>_token_id`.
        var ids: [(type: String, id: Int)] = []
        let added = tokenizerJSON["added_tokens"]?.array ?? []
        for type in Self.specialTokenTypes {
            let entry = tokenizerConfig?[type + "_token"]
            guard let content = entry?.string ?? entry?["content"]?.string,
                  let id = added.first(where: { $0["content"]?.string == content })?["id"]?.int else { continue }
            if (0..<config.vocabularySize).contains(id) { ids.append((type, id)) }
        }
        for type in Self.specialTokenTypes where !ids.contains(where: { $0.type == type }) {
            if let id = hf[type + "_token_id"]?.int, id >= 0, id < config.vocabularySize { ids.append((type, id)) }
        }
        metadata += ids.map { ("tokenizer.ggml.\($0.type)_token_id", .uint32(UInt32($0.id))) }

        // add_bos/add_eos: the post-processor's template first, then tokenizer_config.json's flags.
        var add: [(type: String, value: Bool)] = []
        func setAdd(_ type: String, _ value: Bool) {
            if let i = add.firstIndex(where: { $0.type == type }) { add[i].value = value } else { add.append((type, value)) }
        }
        let processor = tokenizerJSON["post_processor"]
        let steps = processor?["processors"]?.array ?? processor.map({ [$0] }) ?? []
        for step in steps where step["type"]?.string == "TemplateProcessing" {
            guard let single = step["single"]?.array, single.count > 1 else { continue }
            let special = { (item: JSON) in item["SpecialToken"]?["id"]?.string }
            let content = { (type: String) in tokenizerConfig?[type + "_token"].flatMap { $0.string ?? $0["content"]?.string } }
            if let first = special(single.first!) { setAdd("bos", first == content("bos") || first == content("cls")) }
            if let last = special(single.last!) { setAdd("eos", last == content("eos")) }
        }
        for type in Self.specialTokenTypes {
            if let flag = tokenizerConfig?["add_\(type)_token"]?.flag { setAdd(type, flag) }
        }
        metadata += add.map { ("tokenizer.ggml.add_\($0.type)_token", .bool($0.value)) }
        metadata += try chatTemplate(tokenizerConfig, path: tokenizerConfigPath)
        return (metadata, warnings)
    }

    /// `tokenizer.chat_template` from `tokenizer_config.json`, else `chat_template.jinja`; a list of
    /// named templates as `gguf`'s writer stores it (the default one, each other one as
    /// `tokenizer.chat_template.<name>`, their names in `tokenizer.chat_templates`).
    private func chatTemplate(_ tokenizerConfig: JSON?, path: String) throws -> [(key: String, value: GGUF.Value)] {
        let jinjaPath = folder + "/chat_template.jinja"
        switch tokenizerConfig?["chat_template"] {
        case .string(let template)?:
            return [("tokenizer.chat_template", .string(template))]
        case .array(let entries)?:
            var named: [(key: String, value: GGUF.Value)] = [], names: [String] = [], fallback: String?
            for entry in entries {
                guard let name = entry["name"]?.string, let template = entry["template"]?.string else {
                    throw LowRankError(.fileFormat, "chat_template entries must be {\"name\": ..., \"template\": ...}", context: [("file", path)])
                }
                let key = String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
                if key == "default" { fallback = template } else if !key.isEmpty {
                    names.append(key)
                    named.append(("tokenizer.chat_template.\(key)", .string(template)))
                }
            }
            if !names.isEmpty { named.append(("tokenizer.chat_templates", .array(.string, names.map { .string($0) }))) }
            return named + (fallback.map { [("tokenizer.chat_template", .string($0))] } ?? [])
        default:
            guard FileIO.exists(jinjaPath) else { return [] }
            return [("tokenizer.chat_template", .string(String(decoding: try FileIO.read(jinjaPath), as: UTF8.self)))]
        }
    }
}

extension JSON {
    /// The value of a JSON `true` or `false`, else nil.
    fileprivate var flag: Bool? { if case .bool(let b) = self { b } else { nil } }
}

/// A GGUF model's own metadata, carried into the merged file: every key as it was (configuration,
/// tokenizer, chat template), `general.file_type` set for the new tensor types, and the alignment
/// left to the writer.
extension GGUFCheckpoint: GGUFMetadataSource {
    public var ggufMetadata: any GGUFMetadataSource { self }

    public func ggufMetadata(fileType: UInt32) throws -> (metadata: [(key: String, value: GGUF.Value)], warnings: [String]) {
        let carried = file.keys.filter { $0 != GGUF.alignmentKey && $0 != "general.file_type" }.map { (key: $0, value: file.metadata[$0]!) }
        return (carried + [(key: "general.file_type", value: .uint32(fileType))], [])
    }
}

extension HuggingFaceCheckpoint {
    public var ggufMetadata: any GGUFMetadataSource { HuggingFaceGGUFMetadata(folder: folder, config: config) }
}
