import LowRankCore

/// A model's chat template, rendered as transformers' `apply_chat_template(..., tokenize=False)` renders it.
public struct ChatTemplate {
    public let source: String
    let template: JinjaTemplate

    /// Fields transformers copies a message's reasoning from, under all of these names.
    private static let reasoningFields = ["reasoning_content", "thinking", "reasoning"]

    public init(source: String, name: String = "chat_template") throws {
        self.source = source
        template = try JinjaTemplate(source: source, name: name)
    }

    /// The text of the conversation. As transformers passes them, `tools` and `documents` are None
    /// when not given, `bos_token`/`eos_token` are absent unless given, and `extra` (e.g.
    /// `date_string`) adds or overrides variables. A template's `raise_exception(message)` is an error
    /// whose message is the template's and whose context has `("raised by", "raise_exception")`.
    public func render(messages: [JinjaValue], addGenerationPrompt: Bool = false, bosToken: String? = nil,
                       eosToken: String? = nil, tools: JinjaValue? = nil, documents: JinjaValue? = nil,
                       extra: JinjaDictionary = JinjaDictionary()) throws -> String {
        var context = JinjaDictionary()
        context["messages"] = .list(try messages.enumerated().map { try ChatTemplate.aliasingReasoning($1, index: $0) })
        context["tools"] = tools ?? JinjaValue.none
        context["documents"] = documents ?? JinjaValue.none
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        if let bosToken { context["bos_token"] = .string(bosToken) }
        if let eosToken { context["eos_token"] = .string(eosToken) }
        for (key, value) in extra.pairs { context[key] = value }
        return try template.render(context)
    }

    /// transformers fills `thinking` and `reasoning_content` from whichever reasoning field a message has.
    private static func aliasingReasoning(_ message: JinjaValue, index: Int) throws -> JinjaValue {
        guard case .dict(let fields) = message else {
            throw LowRankError(.invalidArgument, "chat messages must be objects, got \(message.typeName)", context: [("message", String(index))])
        }
        guard let reasoning = reasoningFields.lazy.compactMap({ key -> JinjaValue? in
            guard let value = fields[key] else { return nil }
            if case .none = value { return nil }
            return value
        }).first else { return message }
        var aliased = JinjaDictionary([("thinking", reasoning)])
        for (key, value) in fields.pairs { aliased[key] = value }
        aliased["reasoning_content"] = reasoning
        return .dict(aliased)
    }
}
