import LowRankCore

/// The tokenizer a GGUF file's `tokenizer.ggml.*` metadata describes, built as transformers' GGUF
/// loader builds it (`integrations/gguf/gguf_tokenizer_mapping.py`): the same `tokenizer.json`
/// description, handed to the same `Tokenizer`, so ids equal transformers' for the same file.
///
/// - `gpt2`: byte-level BPE with the file's merges; a token outside the byte alphabet is respelled
///   in it; `tokenizer.ggml.pre` picks the split regex (Llama 3's or Qwen2's), else GPT-2's.
/// - `llama`: SentencePiece BPE with byte fallback and `Metaspace` (prepend "first"); the merges are
///   the file's or, as SentencePiece files have none, recovered from the scores (`generate_merges`).
///
/// Control tokens (type 3) and the BOS/EOS/unknown/padding tokens are special added tokens,
/// user-defined ones (type 4) plain added tokens; `add_bos_token` (default on for `llama`) and
/// `add_eos_token` add them around every encoding.
public struct GGUFTokenizer {
    public let tokenizer: Tokenizer
    /// The `tokenizer.json` it was built from (what a merged model folder carries).
    public let json: JSON
    public let bosToken: String?
    public let eosToken: String?
    public let padToken: String?

    /// The GGUF token types llama.cpp writes.
    enum TokenType: Int { case normal = 1, unknown, control, userDefined, unused, byte }

    /// nil when the file has no `tokenizer.ggml.model`.
    public init?(_ file: GGUFFile) throws {
        guard let modelValue = file["tokenizer.ggml.model"] else { return nil }
        func fail(_ key: String, _ message: String, kind: LowRankError.Kind = .fileFormat) -> LowRankError {
            LowRankError(kind, "\(key): \(message)", context: [("file", file.path), ("field", key)])
        }
        guard let model = modelValue.string else { throw fail("tokenizer.ggml.model", "must be a string") }
        guard model == "gpt2" || model == "llama" else {
            throw fail("tokenizer.ggml.model", "\"\(model)\" is not supported (gpt2: byte-level BPE; llama: SentencePiece BPE)", kind: .unsupported)
        }
        func strings(_ key: String) throws -> [String]? {
            guard let value = file[key] else { return nil }
            guard let list = value.array, case .array(.string, _) = value else { throw fail(key, "must be an array of strings") }
            return list.map { $0.string! }
        }
        func numbers(_ key: String) throws -> [Double]? {
            guard let value = file[key] else { return nil }
            guard let list = value.array?.map(\.number), list.allSatisfy({ $0 != nil }) else { throw fail(key, "must be an array of numbers") }
            return list.map { $0! }
        }
        func id(_ key: String, count: Int) throws -> Int? {
            guard let value = file[key] else { return nil }
            guard let i = value.integer, (0..<count).contains(i) else { throw fail(key, "\(value) is not a token id below \(count)") }
            return i
        }
        func flag(_ key: String) throws -> Bool? {
            guard let value = file[key] else { return nil }
            guard let b = value.bool else { throw fail(key, "must be a bool") }
            return b
        }
        guard let tokens = try strings("tokenizer.ggml.tokens") else { throw fail("tokenizer.ggml.tokens", "missing") }
        let types = try numbers("tokenizer.ggml.token_type")?.map { Int($0) } ?? []
        guard types.isEmpty || types.count == tokens.count else {
            throw fail("tokenizer.ggml.token_type", "has \(types.count) entries for \(tokens.count) tokens")
        }
        let byteLevel = model == "gpt2"
        // A byte-level vocabulary spells every token in GPT-2's byte alphabet; one that is not is respelled in it.
        let alphabet = Set(ByteLevel.characters)
        func spelled(_ token: String) -> Bool { !byteLevel || token.unicodeScalars.allSatisfy(alphabet.contains) }
        var vocabulary: [String: JSON] = [:]
        for (i, token) in tokens.enumerated() {
            let key = spelled(token) ? token : String(String.UnicodeScalarView(token.utf8.map { ByteLevel.characters[Int($0)] }))
            vocabulary[key] = .number(Double(i))
        }

        let merges: [(String, String)]
        if let listed = try strings("tokenizer.ggml.merges") {
            merges = try listed.map { merge in
                let parts = merge.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw fail("tokenizer.ggml.merges", "\"\(merge)\" is not two tokens separated by a space") }
                return (String(parts[0]), String(parts[1]))
            }
        } else if !byteLevel {
            guard let scores = try numbers("tokenizer.ggml.scores"), scores.count == tokens.count else {
                throw fail("tokenizer.ggml.scores", "a SentencePiece vocabulary without merges needs one score per token")
            }
            merges = Self.mergesFromScores(tokens, scores)
        } else {
            throw fail("tokenizer.ggml.merges", "missing (a gpt2 vocabulary needs its merges)")
        }

        let specialIDs = try ["bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"].map {
            try id("tokenizer.ggml." + $0, count: tokens.count)
        }
        let (bos, eos) = (specialIDs[0], specialIDs[1])
        var added: [(id: Int, special: Bool)] = []
        // A control token outside the byte alphabet is a llama.cpp mislabel transformers skips.
        for (i, type) in types.enumerated() where spelled(tokens[i]) {
            if type == TokenType.control.rawValue {
                added.append((i, true))
            } else if type == TokenType.userDefined.rawValue {
                added.append((i, false))
            }
        }
        // transformers' tokenizer classes add their own default special tokens (Llama's "<unk>", "<s>"
        // and "</s>" when the vocabulary has them; GPT-2's unknown token "<|endoftext|>" always, after
        // the vocabulary when it is not in it), whatever the file's ids say.
        var contents = tokens
        let defaults = byteLevel ? ["<|endoftext|>"] : ["<unk>", "<s>", "</s>"]
        var defaultIDs = defaults.compactMap { token in tokens.lastIndex(of: token) }
        if byteLevel, defaultIDs.isEmpty {
            defaultIDs.append(contents.count)
            contents.append("<|endoftext|>")
        }
        for i in specialIDs.compactMap({ $0 }) + defaultIDs where !added.contains(where: { $0.id == i }) { added.append((i, true)) }

        let addBOS = try flag("tokenizer.ggml.add_bos_token") ?? !byteLevel
        let addEOS = try flag("tokenizer.ggml.add_eos_token") ?? false
        func special(_ i: Int?, _ key: String, needed: Bool) throws -> [JSON] {
            guard needed else { return [] }
            guard let i else { throw fail(key, "missing, but add_\(key.contains("bos") ? "bos" : "eos")_token is set") }
            return [.object(["SpecialToken": .object(["id": .string(tokens[i]), "type_id": .number(0)])])]
        }
        let single = try special(bos, "tokenizer.ggml.bos_token_id", needed: addBOS)
            + [.object(["Sequence": .object(["id": .string("A"), "type_id": .number(0)])])]
            + special(eos, "tokenizer.ggml.eos_token_id", needed: addEOS)
        var specialTokens: [String: JSON] = [:]
        for case let i? in [addBOS ? bos : nil, addEOS ? eos : nil] {
            specialTokens[tokens[i]] = .object(["id": .string(tokens[i]), "ids": .array([.number(Double(i))]), "tokens": .array([.string(tokens[i])])])
        }

        var json: [String: JSON] = [
            "added_tokens": .array(added.map { token in
                .object(["id": .number(Double(token.id)), "content": .string(contents[token.id]), "single_word": .bool(false), "lstrip": .bool(false),
                         "rstrip": .bool(false), "normalized": .bool(false), "special": .bool(token.special)])
            }),
            "post_processor": .object(["type": .string("TemplateProcessing"), "single": .array(single), "special_tokens": .object(specialTokens)]),
        ]
        var bpe: [String: JSON] = ["type": .string("BPE"), "vocab": .object(vocabulary),
                                   "merges": .array(merges.map { .array([.string($0.0), .string($0.1)]) })]
        if byteLevel {
            bpe["byte_fallback"] = .bool(false)
            json["pre_tokenizer"] = try Self.byteLevelPreTokenizer(file["tokenizer.ggml.pre"]?.string)
            json["decoder"] = .object(["type": .string("ByteLevel"), "add_prefix_space": .bool(true), "trim_offsets": .bool(true), "use_regex": .bool(true)])
        } else {
            (bpe["byte_fallback"], bpe["fuse_unk"]) = (.bool(true), .bool(true))
            json["pre_tokenizer"] = .object(["type": .string("Metaspace"), "replacement": .string("\u{2581}"), "prepend_scheme": .string("first"),
                                             "split": .bool(false)])
            json["decoder"] = .object(["type": .string("Sequence"), "decoders": .array([
                .object(["type": .string("Replace"), "pattern": .object(["String": .string("\u{2581}")]), "content": .string(" ")]),
                .object(["type": .string("ByteFallback")]), .object(["type": .string("Fuse")]),
                .object(["type": .string("Strip"), "content": .string(" "), "start": .number(1), "stop": .number(0)]),
            ])])
        }
        json["model"] = .object(bpe)
        (bosToken, eosToken, padToken) = (bos.map { tokens[$0] }, eos.map { tokens[$0] }, specialIDs[3].map { tokens[$0] })
        self.json = .object(json)
        do {
            tokenizer = try Tokenizer(json: self.json, config: TokenizerConfig(bosToken: bosToken, eosToken: eosToken, padToken: padToken))
        } catch let error as LowRankError {
            throw error.adding("file", file.path)
        }
    }

    /// The pre-tokenizer transformers gives a byte-level vocabulary: its split regex (by
    /// `tokenizer.ggml.pre`) then bytes to characters, or the ByteLevel pre-tokenizer's own GPT-2 split.
    static func byteLevelPreTokenizer(_ pre: String?) throws -> JSON {
        let llama3 = ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"]
        let qwen2 = ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"]
        let pattern = pre.flatMap { llama3.contains($0) ? SplitRegex.llama3 : qwen2.contains($0) ? SplitRegex.qwen2 : nil }
        guard let pattern else {
            if let pre, ["tekken", "qwen35", "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"].contains(pre) {
                throw LowRankError(.unsupported, "tokenizer.ggml.pre \"\(pre)\": its split regex is not one this engine scans (Llama 3's, Qwen2's, GPT-2's)",
                                   context: [("field", "tokenizer.ggml.pre")])
            }
            return .object(["type": .string("ByteLevel"), "add_prefix_space": .bool(false), "trim_offsets": .bool(true), "use_regex": .bool(true)])
        }
        return .object(["type": .string("Sequence"), "pretokenizers": .array([
            .object(["type": .string("Split"), "pattern": .object(["Regex": .string(pattern)]), "behavior": .string("Isolated"), "invert": .bool(false)]),
            .object(["type": .string("ByteLevel"), "add_prefix_space": .bool(false), "trim_offsets": .bool(true), "use_regex": .bool(false)]),
        ])])
    }

    /// transformers' `generate_merges(vocab, scores)`: every split of every token into two
    /// tokens, each token's splits ordered by the pieces' ids, then all of them by score, then the
    /// pieces' lengths in code points, highest first, ties keeping that order.
    static func mergesFromScores(_ tokens: [String], _ scores: [Double]) -> [(String, String)] {
        var id: [String: Int] = [:], score: [String: Double] = [:], order: [String] = []
        for (i, token) in tokens.enumerated() {
            if score[token] == nil { order.append(token) }
            (id[token], score[token]) = (i, scores[i])
        }
        var merges: [(left: String, right: String, score: Double, leftLength: Int, rightLength: Int)] = []
        for token in order {
            let scalars = Array(token.unicodeScalars)
            var local: [(String, String, Int, Int)] = []
            for cut in scalars.indices.dropFirst() {
                let left = String(String.UnicodeScalarView(scalars[..<cut])), right = String(String.UnicodeScalarView(scalars[cut...]))
                if let l = id[left], let r = id[right] { local.append((left, right, l, r)) }
            }
            local.sort { ($0.2, $0.3) < ($1.2, $1.3) }
            for (left, right, _, _) in local {
                merges.append((left, right, score[token]!, left.unicodeScalars.count, right.unicodeScalars.count))
            }
        }
        // Python's sorted(reverse=True) is stable: equal keys keep their order.
        let ranked = merges.enumerated().sorted { a, b in
            let (x, y) = (a.element, b.element)
            if (x.score, x.leftLength, x.rightLength) != (y.score, y.leftLength, y.rightLength) {
                return (x.score, x.leftLength, x.rightLength) > (y.score, y.leftLength, y.rightLength)
            }
            return a.offset < b.offset
        }
        return ranked.map { ($0.element.left, $0.element.right) }
    }
}
