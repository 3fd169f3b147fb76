import LowRankCore

/// A model folder's chat template and special tokens, found where transformers looks for them.
public struct ModelChatTemplate {
    public let template: ChatTemplate
    public let bosToken: String?
    public let eosToken: String?

    /// `chat_template.jinja` if the folder has one, else `chat_template` in `tokenizer_config.json`
    /// (a string, or a list of `{"name", "template"}` where `name` picks one, "default" otherwise);
    /// `bos_token` and `eos_token` from `tokenizer_config.json` (a string or an AddedToken object).
    public init(modelDirectory: String, templateName: String? = nil) throws {
        if modelDirectory.lowercased().hasSuffix(".gguf") {
            let file = try GGUFFile(path: modelDirectory)
            guard let template = try Self.template(of: file) else {
                throw LowRankError(.fileFormat, "the model has no chat template (no tokenizer.chat_template)", context: [("file", modelDirectory)])
            }
            guard templateName == nil else {
                throw LowRankError(.invalidArgument, "a GGUF file has one chat template, not one named '\(templateName!)'", context: [("file", modelDirectory)])
            }
            let tokenizer = try GGUFTokenizer(file)
            (self.template, bosToken, eosToken) = (template, tokenizer?.bosToken, tokenizer?.eosToken)
            return
        }
        let configPath = modelDirectory + "/tokenizer_config.json"
        let jinjaPath = modelDirectory + "/chat_template.jinja"
        let config = FileIO.exists(configPath) ? try JinjaValue(jsonFile: configPath) : nil
        func token(_ key: String) throws -> String? {
            switch config.flatMap({ if case .dict(let d) = $0 { d[key] } else { nil } }) {
            case nil, .none?: return nil
            case .string(let s)?: return s
            case .dict(let added)?:
                if case .string(let s)? = added["content"] { return s }
                fallthrough
            default: throw LowRankError(.fileFormat, "\(key) must be a string or an object with \"content\"", context: [("file", configPath)])
            }
        }
        if FileIO.exists(jinjaPath), templateName == nil {
            template = try ChatTemplate(source: String(decoding: try FileIO.read(jinjaPath), as: UTF8.self), name: jinjaPath)
        } else {
            guard case .dict(let fields)? = config, let field = fields["chat_template"] else {
                throw LowRankError(.fileFormat, "the model has no chat template (neither chat_template.jinja nor chat_template in tokenizer_config.json)",
                                   context: [("folder", modelDirectory)])
            }
            template = try ChatTemplate(source: try ModelChatTemplate.select(field, name: templateName, file: configPath),
                                        name: configPath + (templateName.map { " (\($0))" } ?? ""))
        }
        bosToken = try token("bos_token")
        eosToken = try token("eos_token")
    }

    /// A GGUF file's `tokenizer.chat_template`, or nil when it has none.
    public static func template(of file: GGUFFile) throws -> ChatTemplate? {
        try file["tokenizer.chat_template"].map { value in
            guard let source = value.string else {
                throw LowRankError(.fileFormat, "tokenizer.chat_template is not a string", context: [("file", file.path), ("field", "tokenizer.chat_template")])
            }
            return try ChatTemplate(source: source, name: file.path + " (tokenizer.chat_template)")
        }
    }

    private static func select(_ field: JinjaValue, name: String?, file: String) throws -> String {
        switch field {
        case .string(let s) where name == nil || name == "default": return s
        case .list(let entries):
            var named: [String: String] = [:]
            for entry in entries {
                guard case .dict(let d) = entry, case .string(let n)? = d["name"], case .string(let t)? = d["template"] else {
                    throw LowRankError(.fileFormat, "chat_template entries must be {\"name\": ..., \"template\": ...}", context: [("file", file)])
                }
                named[n] = t
            }
            let wanted = name ?? "default"
            guard let source = named[wanted] else {
                throw LowRankError(.invalidArgument, "no chat template named '\(wanted)' (the model has \(named.keys.sorted().joined(separator: ", ")))",
                                   context: [("file", file)])
            }
            return source
        case .string: throw LowRankError(.invalidArgument, "the model has one chat template, not one named '\(name!)'", context: [("file", file)])
        default: throw LowRankError(.fileFormat, "chat_template must be a string or a list of named templates", context: [("file", file)])
        }
    }
}
