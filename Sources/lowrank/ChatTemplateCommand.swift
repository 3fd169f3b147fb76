import ArgumentParser
import LowRankCore
import LowRankText

struct ChatTemplateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-template",
        abstract: "Render conversations with a model's chat template, as transformers' apply_chat_template(tokenize=False) does.",
        discussion: "Reads {\"messages\": [...]} per line of --input (optionally \"tools\": [...]) and prints {\"text\": ...} per line.")

    @Option(help: "A model folder (chat_template.jinja, or chat_template in tokenizer_config.json), or a .gguf file (tokenizer.chat_template).") var model: String?
    @Option(help: "A Jinja template file, instead of --model.") var template: String?
    @Option(help: "JSONL: one {\"messages\": [{\"role\": …, \"content\": …}, …]} per line.") var input: String
    @Flag(help: "End with the header that starts the assistant's reply.") var addGenerationPrompt = false
    @Option(help: "bos_token (default: tokenizer_config.json's with --model, else undefined).") var bosToken: String?
    @Option(help: "eos_token (default: tokenizer_config.json's with --model, else undefined).") var eosToken: String?

    func validate() throws {
        if (model == nil) == (template == nil) { throw ValidationError("give exactly one of --model and --template") }
    }

    func run() throws {
        let chatTemplate: ChatTemplate
        var bos = bosToken, eos = eosToken
        if let model {
            let loaded = try ModelChatTemplate(modelDirectory: model)
            chatTemplate = loaded.template
            bos = bos ?? loaded.bosToken
            eos = eos ?? loaded.eosToken
        } else {
            chatTemplate = try ChatTemplate(source: String(decoding: try FileIO.read(template!), as: UTF8.self), name: template!)
        }
        let lines = String(decoding: try FileIO.read(input), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() where !line.allSatisfy(\.isWhitespace) {
            do {
                guard case .dict(let fields) = try JinjaValue(json: String(line)), case .list(let messages)? = fields["messages"] else {
                    throw LowRankError(.fileFormat, "expected an object with a \"messages\" list")
                }
                let text = try chatTemplate.render(messages: messages, addGenerationPrompt: addGenerationPrompt,
                                                   bosToken: bos, eosToken: eos, tools: fields["tools"])
                print("{\"text\": \(JSON.quote(text))}")
            } catch let error as LowRankError {
                throw error.adding("input", "\(input) line \(index + 1)")
            }
        }
    }
}
