import LowRankCore
import Synchronization

/// A Hugging Face tokenizer read from `tokenizer.json`: the same ids as the `tokenizers` library for
/// every string, and the same text back. Byte-level BPE (GPT-2, SmolLM2, Llama 3, Qwen2) and
/// SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral); any other component
/// is refused by name when loading. Safe to share between threads.
public final class Tokenizer: Sendable {
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: BytePairEncoding
    let postProcessor: PostProcessor
    let decoder: TokenDecoder?
    /// Added tokens matched in the input as given, then those matched after normalization.
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    /// An added token's text by id; a `normalized` one's as the normalizer writes it (as the library
    /// gives it to the decoder: "hello world" is "▁hello▁world" under the legacy SentencePiece normalizer).
    let addedTextByID: [Int32: String]
    let addedByContent: [String: Int32]
    let specialContents: Set<String>
    private let wordCache = Mutex<WordCache?>(WordCache())

    /// `added_tokens`, in file order.
    public let addedTokens: [AddedToken]
    /// From `tokenizer_config.json` when the tokenizer was loaded from a model folder.
    public let bosTokenID: Int32?
    public let eosTokenID: Int32?
    public let padTokenID: Int32?

    /// The ids of the added tokens marked special (BOS, EOS, chat-turn markers…).
    public var specialTokenIDs: Set<Int32> { Set(addedTokens.filter(\.special).map(\.id)) }

    /// One more than the largest id, over the vocabulary and the added tokens.
    public var vocabularySize: Int { max(model.tokens.count, Int(addedTokens.map(\.id).max() ?? -1) + 1) }

    /// Parses a `tokenizer.json` document; `config` is `tokenizer_config.json`'s, if any.
    public init(json: JSON, config: TokenizerConfig = TokenizerConfig()) throws {
        let root = TokenizerJSON(json, path: "")
        for field in ["truncation", "padding"] {
            if let c = root.child(field) {
                throw TokenizerJSON.unsupported(c.path, "\(field) inside tokenizer.json is not supported (set it to null)")
            }
        }
        normalizer = try root.child("normalizer").map(Normalizer.init)
        preTokenizer = try root.child("pre_tokenizer").map(PreTokenizer.init)
        let model = try BytePairEncoding(try root.required("model"))
        self.model = model
        decoder = try root.child("decoder").map(TokenDecoder.init)
        addedTokens = root.child("added_tokens") == nil ? [] : try root.array("added_tokens").map(AddedToken.init)
        let normalizer = normalizer
        addedTextByID = Dictionary(addedTokens.map { token in
            guard token.normalized, let normalizer else { return (token.id, token.content) }
            return (token.id, String(decoding: normalizer.normalize(Array(token.content.utf8)), as: UTF8.self))
        }, uniquingKeysWith: { $1 })
        let addedByContent = Dictionary(addedTokens.map { ($0.content, $0.id) }, uniquingKeysWith: { $1 })
        self.addedByContent = addedByContent
        specialContents = Set(addedTokens.filter(\.special).map(\.content))
        rawMatcher = AddedTokenMatcher(addedTokens.filter { !$0.normalized }, normalizer: nil)
        normalizedMatcher = AddedTokenMatcher(addedTokens.filter(\.normalized), normalizer: normalizer)

        func configured(_ name: String, _ token: String?) throws -> Int32? {
            guard let token else { return nil }
            guard let id = addedByContent[token] ?? model.vocab.value(token.utf8) else {
                throw LowRankError(.fileFormat, "tokenizer_config.json: \(name) \(token.debugDescription) is not a token of tokenizer.json", context: [("field", name)])
            }
            return id
        }
        let bosTokenID = try configured("bos_token", config.bosToken), eosTokenID = try configured("eos_token", config.eosToken)
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        padTokenID = try configured("pad_token", config.padToken)
        postProcessor = try root.child("post_processor").map(PostProcessor.init) ?? PostProcessor(prefix: [], suffix: [])
        try checkDenseIDs()
    }

    /// The loader keys tokens by `String`, which merges canonically equivalent ones ("é", "e\u{301}");
    /// a vocabulary that had such a pair shows a missing id, and is refused rather than encoded wrongly.
    private func checkDenseIDs() throws {
        for (id, token) in model.tokens.enumerated() where token == nil && addedTextByID[Int32(id)] == nil {
            throw TokenizerJSON.unsupported("model.vocab", "no token has id \(id) (ids must run from 0 without gaps; canonically equivalent tokens are not told apart)")
        }
    }

    /// The ids of `text`; with `addSpecialTokens`, the post-processor's BOS/EOS around them.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        var ids: [Int32] = []
        var cache = wordCache.withLock { $0.take() } ?? WordCache()
        for segment in rawMatcher.split(Piece(text: Array(text.utf8), atStart: true)) {
            guard case .text(let piece) = segment else {
                if case .token(let id) = segment { ids.append(id) }
                continue
            }
            let normalized = Piece(text: normalizer?.normalize(piece.text) ?? piece.text, atStart: piece.atStart)
            for inner in normalizedMatcher.split(normalized) {
                switch inner {
                case .token(let id): ids.append(id)
                case .text(let piece):
                    for word in preTokenizer?.split([piece]) ?? [piece] {
                        cache.encode(word.text, with: model, into: &ids)
                    }
                }
            }
        }
        wordCache.withLock { if $0 == nil { $0 = cache } }
        return addSpecialTokens ? postProcessor.apply(ids) : ids
    }

    /// The text of `ids`, through the decoder; ids that are not tokens are skipped, as the library does.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        let tokens = ids.compactMap { id -> String? in
            guard let token = self.token(forID: id) else { return nil }
            return skipSpecialTokens && specialContents.contains(token) ? nil : token
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens).joined()
    }

    /// The id of a token's exact text (an added token or a vocabulary entry).
    public func id(forToken token: String) -> Int32? {
        addedByContent[token] ?? model.vocab.value(token.utf8)
    }

    public func token(forID id: Int32) -> String? {
        if let added = addedTextByID[id] { return added }
        return id >= 0 && Int(id) < model.tokens.count ? model.tokens[Int(id)] : nil
    }
}

/// Ids of words already encoded. The library keeps 10 000; so does this.
struct WordCache: Sendable {
    static let capacity = 10_000
    /// Longer words are encoded each time.
    static let maxWordLength = 256
    private var entries: [[UInt8]: [Int32]] = [:]

    mutating func encode(_ word: [UInt8], with model: BytePairEncoding, into ids: inout [Int32]) {
        if let hit = entries[word] {
            ids += hit
            return
        }
        let start = ids.count
        word.withUnsafeBufferPointer { model.encode($0, into: &ids) }
        if word.count <= Self.maxWordLength, entries.count < Self.capacity { entries[word] = Array(ids[start...]) }
    }
}
