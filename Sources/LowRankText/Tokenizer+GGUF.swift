import LowRankCore

/// A tokenizer's vocabulary as llama.cpp's converter (`convert_hf_to_gguf.py`) writes it into a
/// GGUF file's `tokenizer.ggml.*` keys, for the two kinds of BPE this engine reads.
public struct GGUFVocabulary: Sendable {
    /// `tokenizer.ggml.token_type`, as llama.cpp numbers them.
    public enum TokenType: Int32, Sendable {
        case normal = 1, unknown, control, userDefined, unused, byte
    }

    /// `tokenizer.ggml.model`: "gpt2" for byte-level BPE, "llama" for SentencePiece-style BPE with byte fallback.
    public let model: String
    /// `tokenizer.ggml.pre`: llama.cpp's name for the pre-tokenizer, found as its converter finds it
    /// (by `preTokenizerHash`); nil when the hash is none this engine knows ("default" for "llama").
    public let pre: String?
    /// The SHA-256 of the ids the tokenizer gives llama.cpp's test text, as its converter computes it.
    public let preTokenizerHash: String
    /// One token per id up to the model's vocabulary size, `[PAD<id>]` where the tokenizer has none.
    public let tokens: [String]
    public let types: [TokenType]
    /// "llama" only: each token's score. tokenizer.json keeps SentencePiece's merge order but not its
    /// scores, so a token made by a merge scores minus that merge's rank and others 0: llama.cpp
    /// (and transformers' GGUF loader) merge the highest-scoring pair first, which is then the order
    /// of tokenizer.json's merges. (The converter writes −1000 for every token here, from which
    /// llama.cpp's SentencePiece tokenizer, ranking pairs by score and then by position, would merge
    /// leftmost first.)
    public let scores: [Float]?
    /// "gpt2" only: `tokenizer.ggml.merges`, "left right" in rank order (a space inside a token written as U+0120, as the converter does).
    public let merges: [String]
}

extension Tokenizer {
    /// The text llama.cpp's converter encodes to recognise a pre-tokenizer (`get_vocab_base_pre`'s `chktxt`).
    static let preTokenizerCheckText = [
        "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\u{1f680} (normal) \u{1f636}\u{200d}\u{1f32b}\u{fe0f} (multip",
        "le emojis concatenated) \u{2705} \u{1f999}\u{1f999} 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3",
        " \u{1780}\u{17b6}\u{1793}\u{17cb}\u{178f}\u{17c2}\u{1796}\u{17b7}\u{179f}\u{17c1}\u{179f}\u{17a2}\u{17b6}",
        "\u{1785}\u{1f601} ?\u{6211}\u{60f3}\u{5728}apple\u{5de5}\u{4f5c}1314151\u{5929}\u{ff5e} ------======= \u{43d}",
        "\u{435}\u{449}\u{43e} \u{43d}\u{430} \u{411}\u{44a}\u{43b}\u{433}\u{430}\u{440}\u{441}\u{43a}\u{438} ''''''```",
        "````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like",
        " some tea? We'Ve a'lL",
    ].joined()

    /// llama.cpp's names of the pre-tokenizers of the model families this engine trains, by the hash
    /// its converter computes (`get_vocab_base_pre`).
    static let knownPreTokenizers: [String: String] = [
        "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  // Llama 3
        "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",  // Smaug-Llama-3
        "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  // SmolLM, SmolLM2
        "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  // Qwen1.5, Qwen2, Qwen2.5
        "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  // Qwen3 embedding
        "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
        "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",
        "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  // Mistral Nemo
        "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
        "b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166": "olmo",
        "32d85c31273f8019248f2559fed492d929ea28b17e51d81d3bb36fff23ca72b3": "stablelm2",
        "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
        "0fe1cf6eda062318a1af7270f3331a85c539a01778ff948e24388e949c5282f4": "gpt-2",
    ]

    /// The hash llama.cpp's converter names pre-tokenizers by: SHA-256 of Python's `str()` of the
    /// ids of `preTokenizerCheckText`, special tokens added.
    public var preTokenizerHash: String {
        let ids = encode(Self.preTokenizerCheckText)
        return SHA256.hex(Array(("[" + ids.map(String.init).joined(separator: ", ") + "]").utf8))
    }

    /// This vocabulary for a model with `size` token rows, as `convert_hf_to_gguf.py` writes it for a
    /// Llama model: SentencePiece-style BPE (byte fallback) as "llama" (`_set_vocab_llama_hf`), any
    /// other as "gpt2" (`get_vocab_base`). Ids the tokenizer lacks below `size` become `[PAD<id>]`
    /// (unused); a token id at or beyond `size` is an error, as the model has no row for it.
    public func ggufVocabulary(size: Int) throws -> GGUFVocabulary {
        guard vocabularySize <= size else {
            throw LowRankError(.shapeMismatch, "the tokenizer has ids up to \(vocabularySize - 1), beyond the model's \(size) embedding rows",
                               context: [("field", "vocab_size")])
        }
        let sentencePiece = model.byteFallbackIDs != nil
        let added = Dictionary(addedTokens.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        var tokens: [String] = [], types: [GGUFVocabulary.TokenType] = []
        for id in 0..<Int32(size) {
            if let token = added[id] {
                let control = token.special || (!sentencePiece && Self.looksSpecial(token.content))
                // The converter writes user-defined tokens with SentencePiece's ▁ as the space it stands for.
                tokens.append(control || sentencePiece ? token.content : token.content.replacing("\u{2581}", with: " "))
                types.append(control ? .control : .userDefined)
            } else if let token = self.token(forID: id) {
                tokens.append(token)
                let byte = sentencePiece && token.utf8.count == 6 && token.hasPrefix("<0x") && token.hasSuffix(">")
                    && token.dropFirst(3).dropLast().allSatisfy(\.isHexDigit)
                types.append(byte ? .byte : .normal)
            } else {
                tokens.append("[PAD\(id)]")
                types.append(.unused)
            }
        }
        let ranked = model.merges.values.sorted { $0.rank < $1.rank }
        let merges: [String], scores: [Float]?
        if sentencePiece {
            var score = [Float](repeating: 0, count: size)
            for merge in ranked.reversed() { score[Int(merge.id)] = -Float(merge.rank) }
            (merges, scores) = ([], score)
        } else {
            let pairs = model.merges.map { (key: $0.key, rank: $0.value.rank) }.sorted { $0.rank < $1.rank }
            merges = pairs.map { pair in
                [Int32(truncatingIfNeeded: pair.key >> 32), Int32(truncatingIfNeeded: pair.key & 0xFFFF_FFFF)]
                    .map { model.tokens[Int($0)]!.replacing(" ", with: "\u{120}") }.joined(separator: " ")
            }
            scores = nil
        }
        let hash = preTokenizerHash
        return GGUFVocabulary(model: sentencePiece ? "llama" : "gpt2", pre: sentencePiece ? "default" : Self.knownPreTokenizers[hash],
                              preTokenizerHash: hash, tokens: tokens, types: types, scores: scores, merges: merges)
    }

    /// The converter's `does_token_look_special`: added tokens it marks as control though not special.
    static func looksSpecial(_ token: String) -> Bool {
        ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(token) || (token.hasPrefix("<|") && token.hasSuffix("|>"))
            || (token.hasPrefix("<\u{FF5C}") && token.hasSuffix("\u{FF5C}>")) || (token.hasPrefix("<unused") && token.hasSuffix(">"))
    }
}
