import LowRank
import LowRankText

/// Text generation with a KV cache (`KVCacheDecoder`), as transformers' `generate`: the prompt is
/// run once, then one token at a time is drawn (`TokenSampler`) and run, until a stop token (which
/// is returned as the last id) or `maxNewTokens`.
public final class TextGenerator {
    public let model: LlamaModel
    public let adapter: ModelAdapter?
    private var decoder: KVCacheDecoder?

    public init(model: LlamaModel, adapter: ModelAdapter?) {
        (self.model, self.adapter) = (model, adapter)
    }

    /// The generated ids after `prompt`; `onToken` sees each as it is drawn.
    public func generate(prompt: [Int32], maxNewTokens: Int, sampling: SamplingSettings = .greedy, stopTokens: Set<Int32> = [],
                         onToken: (Int32) throws -> Void = { _ in }) throws -> [Int32] {
        guard !prompt.isEmpty else { throw LowRankError(.invalidArgument, "the prompt has no tokens") }
        guard maxNewTokens >= 1 else { throw LowRankError(.invalidArgument, "at least one new token must be asked for, got \(maxNewTokens)") }
        var sampler = try TokenSampler(sampling)
        let decoder = try self.decoder(holding: prompt.count + maxNewTokens)
        decoder.reset()
        var logits = try decoder.logits(after: prompt), generated: [Int32] = []
        while true {
            let id = try sampler.next(logits)
            generated.append(id)
            try onToken(id)
            if stopTokens.contains(id) || generated.count == maxNewTokens { return generated }
            logits = try decoder.logits(after: [id])
        }
    }

    /// The cache of the last generation when it is large enough (its plans are kept with it).
    private func decoder(holding tokens: Int) throws -> KVCacheDecoder {
        if let decoder, decoder.capacity >= tokens { return decoder }
        decoder = nil  // its memory goes before the larger one is made
        let made = try KVCacheDecoder(model: model, adapter: adapter, capacity: tokens)
        decoder = made
        return made
    }
}

/// The ids that end a generation for a model folder, as transformers stops: `generation_config.json`'s
/// `eos_token_id` (one id or a list; else `config.json`'s), the tokenizer's EOS, and the end-of-turn
/// token of its chat template (`<|im_end|>`, `<|eot_id|>`, … when the template writes it).
public enum StopTokens {
    /// End-of-turn tokens of the chat formats the supported models use.
    static let endOfTurn = ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"]

    public static func of(modelDirectory: String, tokenizer: Tokenizer?, chatTemplate: ChatTemplate?) throws -> Set<Int32> {
        var ids = Set<Int32>()
        for name in ["generation_config.json", "config.json"] where ids.isEmpty {
            let path = modelDirectory + "/" + name
            guard FileIO.exists(path), let field = try JSON.read(path, what: name)["eos_token_id"] else { continue }
            let values = field.array ?? [field]
            for value in values {
                guard let id = value.int else {
                    if value == .null { continue }
                    throw LowRankError(.fileFormat, "eos_token_id must be a token id or a list of them, got \(field.serialized)", context: [("file", path)])
                }
                ids.insert(Int32(clamping: id))
            }
        }
        if let eos = tokenizer?.eosTokenID { ids.insert(eos) }
        if let tokenizer, let source = chatTemplate?.source {
            for token in endOfTurn where source.contains(token) {
                if let id = tokenizer.id(forToken: token) { ids.insert(id) }
            }
        }
        return ids
    }
}

extension TextFormat {
    /// A conversation rendered by the chat template as `apply_chat_template(messages, tokenize=False)`
    /// renders it.
    public func render(_ messages: [JinjaValue], addGenerationPrompt: Bool) throws -> String {
        guard let chatTemplate else {
            throw LowRankError(.fileFormat, "messages need the model's chat template, and its folder has none (chat_template.jinja or tokenizer_config.json's chat_template)")
        }
        return try chatTemplate.render(messages: messages, addGenerationPrompt: addGenerationPrompt, bosToken: bosToken, eosToken: eosToken)
    }

    /// The ids of a conversation rendered with the generation prompt, as `apply_chat_template(messages,
    /// add_generation_prompt=True)` tokenizes it (no special tokens added: the template writes them).
    public func generationPrompt(messages: [JinjaValue]) throws -> [Int32] {
        tokenizer.encode(try render(messages, addGenerationPrompt: true), addSpecialTokens: false)
    }

    /// The messages of `[{"role", "content"}…]` or `{"messages": […]}`.
    public static func messages(_ json: JSON) throws -> [JinjaValue] {
        guard let list = (json["messages"] ?? json).array, list.allSatisfy({ $0.object != nil }) else {
            throw LowRankError(.fileFormat, "expected a list of {\"role\": …, \"content\": …} objects, or {\"messages\": […]}")
        }
        return try list.map { try JinjaValue(json: $0.serialized) }
    }

    /// A message `{"role": role, "content": content}` for a chat template.
    public static func message(_ role: String, _ content: String) -> JinjaValue {
        var fields = JinjaDictionary()
        fields["role"] = .string(role)
        fields["content"] = .string(content)
        return .dict(fields)
    }
}
