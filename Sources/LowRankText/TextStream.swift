/// Text of generated ids as they arrive, for printing while generating (transformers'
/// `TextStreamer`): each new id's text is what the decoding of every id so far adds, held back while
/// it ends in U+FFFD, the replacement character of an incomplete UTF-8 sequence (a character whose
/// bytes span several byte-level or byte-fallback tokens), until the rest of it arrives.
public struct TextStream {
    public let tokenizer: Tokenizer
    public let skipSpecialTokens: Bool
    public private(set) var ids: [Int32] = []
    /// Unicode scalars of the decoding handed out so far.
    private var printed = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = true) {
        (self.tokenizer, self.skipSpecialTokens) = (tokenizer, skipSpecialTokens)
    }

    /// The text `id` completes: empty while a character is still incomplete.
    public mutating func append(_ id: Int32) -> String {
        ids.append(id)
        let text = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        guard text.unicodeScalars.last != "\u{FFFD}" else { return "" }
        return take(text)
    }

    /// What is still held back (an incomplete character at the end, as its replacement character).
    public mutating func finish() -> String { take(tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)) }

    private mutating func take(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard scalars.count > printed else { return "" }
        defer { printed = scalars.count }
        return String(String.UnicodeScalarView(scalars.dropFirst(printed)))
    }
}
