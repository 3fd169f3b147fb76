import Foundation
import LowRankCore

/// What `tokenizer_config.json` adds to `tokenizer.json`: the BOS, EOS and padding tokens. Its
/// `add_bos_token` and `add_eos_token` are ignored, as transformers ignores them when there is a
/// `tokenizer.json`: the file's post-processor decides.
public struct TokenizerConfig: Sendable {
    public var bosToken: String?
    public var eosToken: String?
    public var padToken: String?

    public init(bosToken: String? = nil, eosToken: String? = nil, padToken: String? = nil) {
        self.bosToken = bosToken
        self.eosToken = eosToken
        self.padToken = padToken
    }

    public init(json: JSON) throws {
        let root = TokenizerJSON(json, path: "")
        // A token is a string, or an AddedToken written as {"content": …, …}.
        func token(_ key: String) throws -> String? {
            guard let c = root.child(key) else { return nil }
            if let s = c.value.string { return s }
            return try c.string("content")
        }
        bosToken = try token("bos_token")
        eosToken = try token("eos_token")
        padToken = try token("pad_token")
    }
}

extension Tokenizer {
    /// Loads `tokenizer.json` itself, a model folder's `tokenizer.json` with its `tokenizer_config.json`,
    /// or the tokenizer a `.gguf` file's metadata describes (`GGUFTokenizer`).
    public static func load(_ path: String) throws -> Tokenizer {
        if path.lowercased().hasSuffix(".gguf") {
            guard let gguf = try GGUFTokenizer(try GGUFFile(path: path)) else {
                throw LowRankError(.fileFormat, "the file has no tokenizer (no tokenizer.ggml.model)", context: [("file", path)])
            }
            return gguf.tokenizer
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw LowRankError(.io, "no tokenizer.json file or model folder here", context: [("path", path)])
        }
        let file = isDirectory.boolValue ? (path as NSString).appendingPathComponent("tokenizer.json") : path
        var config = TokenizerConfig()
        if isDirectory.boolValue {
            let configFile = (path as NSString).appendingPathComponent("tokenizer_config.json")
            if FileManager.default.fileExists(atPath: configFile) {
                do { config = try TokenizerConfig(json: JSON.read(configFile, what: "tokenizer_config.json")) } catch let e as LowRankError {
                    throw e.adding("file", configFile)
                }
            }
        }
        let json = try JSON.read(file, what: "tokenizer.json")
        do { return try Tokenizer(json: json, config: config) } catch let e as LowRankError { throw e.adding("file", file) }
    }
}
