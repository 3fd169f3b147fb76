import LowRank
import LowRankText

/// How JSONL lines of text become token ids and labels, as TRL's `SFTTrainer` tokenizes them:
/// `{"text"}` gets EOS appended (unless it ends with it) and is trained on whole; `{"prompt",
/// "completion"}` and `{"messages"}` are trained on the completion only, unless `trainOnPrompt`.
/// With a chat template, a prompt/completion pair is one user turn and one assistant turn; the
/// prompt is the conversation up to its last user turn rendered with the generation prompt, and the
/// completion is every token of the whole rendering after the longest prefix the two share (TRL's
/// `common_prefix_length`), so the end-of-turn token and what the template puts after it are trained
/// on. Without a template, a prompt/completion pair is the prompt's text followed by the
/// completion's with EOS appended, and `{"messages"}` is an error.
public struct TextFormat {
    public let tokenizer: Tokenizer
    public let chatTemplate: ChatTemplate?
    /// `bos_token` and `eos_token` as the chat template sees them.
    public let bosToken: String?
    public let eosToken: String?
    /// Train on every token, the prompt's too.
    public var trainOnPrompt: Bool

    public init(tokenizer: Tokenizer, chatTemplate: ChatTemplate?, bosToken: String? = nil, eosToken: String? = nil, trainOnPrompt: Bool = false) {
        (self.tokenizer, self.chatTemplate, self.bosToken, self.eosToken) = (tokenizer, chatTemplate, bosToken, eosToken)
        self.trainOnPrompt = trainOnPrompt
    }

    /// The tokenizer (`tokenizer.json`) and chat template of a model folder, or nil when it has no
    /// `tokenizer.json`. A folder without a chat template reads text and prompt/completion lines.
    public init?(modelDirectory: String, trainOnPrompt: Bool = false) throws {
        guard FileIO.exists(modelDirectory + "/tokenizer.json") else { return nil }
        let tokenizer = try Tokenizer.load(modelDirectory)
        let configPath = modelDirectory + "/tokenizer_config.json"
        let config = FileIO.exists(configPath) ? try JSON.read(configPath, what: "tokenizer_config.json") : nil
        let hasTemplate = FileIO.exists(modelDirectory + "/chat_template.jinja") || config?["chat_template"] != nil
        let template = hasTemplate ? try ModelChatTemplate(modelDirectory: modelDirectory) : nil
        self.init(tokenizer: tokenizer, chatTemplate: template?.template, bosToken: template?.bosToken, eosToken: template?.eosToken,
                  trainOnPrompt: trainOnPrompt)
    }

    /// The fields that make a line text.
    static let fields = ["text", "prompt", "messages"]
    static let unknownForm = LowRankError(.fileFormat, "the line is none of {\"input_ids\"}, {\"text\"}, {\"prompt\", \"completion\"} or {\"messages\"}")

    /// The ids of one line in a text form, and its labels (unshifted, −100 where not trained on).
    public func tokenize(_ line: JSON) throws -> (ids: [Int32], labels: [Int32]) {
        if let text = line["text"] {
            let ids = tokenizer.encode(try endingWithEOS(try Self.string(text, "text")))
            return (ids, ids)
        }
        let ids: [Int32], prompt: [Int32]
        if let promptField = line["prompt"] {
            guard let completionField = line["completion"] else { throw LowRankError(.fileFormat, "a \"prompt\" needs a \"completion\"") }
            let (promptText, completion) = (try Self.string(promptField, "prompt"), try Self.string(completionField, "completion"))
            if let chatTemplate {
                (ids, prompt) = try rendered([Self.message("user", promptText), Self.message("assistant", completion)], lastUser: 0, with: chatTemplate)
            } else {
                ids = tokenizer.encode(promptText + (try endingWithEOS(completion)))
                prompt = tokenizer.encode(promptText)
            }
        } else if let messages = line["messages"] {
            guard let chatTemplate else {
                throw LowRankError(.fileFormat, "\"messages\" need the model's chat template, and its folder has none (chat_template.jinja or tokenizer_config.json's chat_template)")
            }
            guard let list = messages.array, list.allSatisfy({ $0.object != nil }) else {
                throw LowRankError(.fileFormat, "\"messages\" must be a list of {\"role\": …, \"content\": …} objects")
            }
            guard let lastUser = list.lastIndex(where: { $0["role"]?.string == "user" }) else {
                throw LowRankError(.fileFormat, "the conversation has no user turn, so no prompt to complete")
            }
            (ids, prompt) = try rendered(try list.map { try JinjaValue(json: $0.serialized) }, lastUser: lastUser, with: chatTemplate)
        } else {
            throw Self.unknownForm
        }
        let promptLength = zip(prompt, ids).prefix { $0 == $1 }.count
        let labels = trainOnPrompt ? ids : Array(repeating: CausalLMPlan.ignoredLabel, count: promptLength) + ids[promptLength...]
        return (ids, labels)
    }

    /// The whole conversation's ids and its prompt's: the conversation up to its last user turn
    /// with the generation prompt, tokenized as `apply_chat_template(tokenize=True)` does (no
    /// special tokens added: the template writes them).
    private func rendered(_ messages: [JinjaValue], lastUser: Int, with template: ChatTemplate) throws -> (ids: [Int32], prompt: [Int32]) {
        guard lastUser < messages.count - 1 else {
            throw LowRankError(.fileFormat, "the conversation ends with a user turn: no reply to train on")
        }
        let render = { (messages: [JinjaValue], prompt: Bool) in
            tokenizer.encode(try template.render(messages: messages, addGenerationPrompt: prompt, bosToken: bosToken, eosToken: eosToken),
                             addSpecialTokens: false)
        }
        return (try render(messages, false), try render(Array(messages[...lastUser]), true))
    }

    private func endingWithEOS(_ text: String) throws -> String {
        guard let eos = tokenizer.eosTokenID.flatMap(tokenizer.token(forID:)) else {
            throw LowRankError(.fileFormat, "the tokenizer has no eos_token (tokenizer_config.json) to end text with")
        }
        return text.hasSuffix(eos) ? text : text + eos
    }

    private static func string(_ value: JSON, _ field: String) throws -> String {
        guard let s = value.string else { throw LowRankError(.fileFormat, "\"\(field)\" must be a string, got \(value.serialized)") }
        return s
    }
}
