import LowRankCore

/// An entry of `tokenizer.json`'s `added_tokens`.
public struct AddedToken: Sendable {
    public let id: Int32
    public let content: String
    public let special: Bool
    /// Matched only where no letter or digit touches it on either side.
    public let singleWord: Bool
    /// The whitespace before (`lstrip`) or after (`rstrip`) it is part of the match.
    public let lstrip: Bool
    public let rstrip: Bool
    /// Matched in the normalized text (after the normalizer) rather than the input as given.
    public let normalized: Bool

    init(_ json: TokenizerJSON) throws {
        id = try (try json.required("id")).id
        content = try json.string("content")
        special = try json.bool("special", default: false)
        singleWord = try json.bool("single_word", default: false)
        lstrip = try json.bool("lstrip", default: false)
        rstrip = try json.bool("rstrip", default: false)
        normalized = try json.bool("normalized", default: !special)
    }
}

/// Either an added token already matched, or text still to normalize and pre-tokenize.
enum Segment {
    case token(Int32)
    case text(Piece)
}

/// Finds added tokens in text as the library's `AddedVocabulary` does: leftmost-longest matches,
/// a `single_word` token that touches a word skipped, `lstrip`/`rstrip` taking the whitespace beside it.
struct AddedTokenMatcher: Sendable {
    private struct Pattern: Sendable {
        var bytes: [UInt8]
        var token: AddedToken
    }

    /// Patterns by first byte, longest first.
    private let buckets: [[Pattern]]

    init(_ tokens: [AddedToken], normalizer: Normalizer?) {
        var buckets = Array(repeating: [Pattern](), count: 256)
        for token in tokens {
            let raw = Array(token.content.utf8)
            let bytes = token.normalized ? (normalizer?.normalize(raw) ?? raw) : raw
            guard let first = bytes.first else { continue }
            buckets[Int(first)].append(Pattern(bytes: bytes, token: token))
        }
        // Among equally long patterns the first added wins, as in the library's automaton.
        self.buckets = buckets.map { $0.enumerated().sorted { ($0.1.bytes.count, -$0.0) > ($1.1.bytes.count, -$1.0) }.map(\.1) }
    }

    private func longestMatch(_ text: UnsafeBufferPointer<UInt8>, at i: Int) -> Pattern? {
        for p in buckets[Int(text[i])] where i + p.bytes.count <= text.count {
            var equal = true
            for k in 1..<p.bytes.count where text[i + k] != p.bytes[k] { equal = false; break }
            if equal { return p }
        }
        return nil
    }

    /// The piece cut at each added token it contains.
    func split(_ piece: Piece) -> [Segment] {
        piece.text.withUnsafeBufferPointer { text in
            var segments: [Segment] = []
            var start = 0 // where the text not yet emitted begins
            var i = 0
            while i < text.count {
                guard let p = longestMatch(text, at: i) else { i += 1; continue }
                var matchStart = i, matchEnd = i + p.bytes.count
                i = matchEnd
                let token = p.token
                if token.singleWord {
                    let wordBefore = matchStart > 0 && UTF8Scalars.isAlphanumeric(UTF8Scalars.decode(text, endingAt: matchStart).scalar)
                    let wordAfter = matchEnd < text.count && UTF8Scalars.isAlphanumeric(UTF8Scalars.decode(text, at: matchEnd).scalar)
                    if wordBefore || wordAfter { continue }
                }
                if token.lstrip {
                    var s = matchStart
                    while s > 0 {
                        let (c, len) = UTF8Scalars.decode(text, endingAt: s)
                        guard UTF8Scalars.isWhitespace(c) else { break }
                        s -= len
                    }
                    // Whitespace that an earlier match took stays with it.
                    matchStart = max(s, start)
                }
                if token.rstrip {
                    while matchEnd < text.count {
                        let (c, len) = UTF8Scalars.decode(text, at: matchEnd)
                        guard UTF8Scalars.isWhitespace(c) else { break }
                        matchEnd += len
                    }
                }
                if start < matchStart {
                    segments.append(.text(Piece(text: Array(text[start..<matchStart]), atStart: piece.atStart && start == 0)))
                }
                segments.append(.token(token.id))
                start = matchEnd
            }
            if start < text.count {
                segments.append(.text(Piece(text: Array(text[start...]), atStart: piece.atStart && start == 0)))
            }
            return segments
        }
    }
}
