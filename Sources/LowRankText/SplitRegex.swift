/// The pre-tokenizer split regexes of the supported models, as hand-written scanners that return the
/// same matches as the `tokenizers` library's Oniguruma regex (leftmost match, first alternative
/// that matches, greedy quantifiers with backtracking). Keyed by the exact pattern string; any other
/// pattern is refused by name.
struct SplitRegex: Sendable {
    /// GPT-2's pattern, used by the ByteLevel pre-tokenizer itself (SmolLM2, GPT-2, RoBERTa).
    static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    /// Llama 3's pattern; Qwen2's is the same with single digits.
    static let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    private enum Flavor { case gpt2, llama3 }
    private let flavor: Flavor
    /// `\p{N}{1,maxDigits}` in the Llama 3 flavor.
    private let maxDigits: Int

    init?(pattern: String) {
        switch pattern {
        case Self.gpt2: flavor = .gpt2; maxDigits = .max
        case Self.llama3: flavor = .llama3; maxDigits = 3
        case Self.qwen2: flavor = .llama3; maxDigits = 1
        default: return nil
        }
    }

    /// The byte ranges of every match in `text`, in order; these patterns match every character, so
    /// the matches tile the text.
    func matches(in text: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var p = 0
        while p < text.count {
            let end = matchEnd(text, at: p)
            result.append(p..<end)
            p = end
        }
        return result
    }

    private func matchEnd(_ t: UnsafeBufferPointer<UInt8>, at p: Int) -> Int {
        let n = t.count
        let (c, cLen) = UTF8Scalars.decode(t, at: p)
        let cClass = ScalarClass.of(c)
        @inline(__always) func classAt(_ i: Int) -> ScalarClass? { i < n ? ScalarClass.of(UTF8Scalars.decode(t, at: i).scalar) : nil }
        /// The end of the run of `cls` characters starting at `i`.
        func run(_ cls: ScalarClass, from i: Int, limit: Int = .max) -> Int {
            var i = i, count = 0
            while i < n, count < limit {
                let (s, len) = UTF8Scalars.decode(t, at: i)
                guard ScalarClass.of(s) == cls else { break }
                i += len
                count += 1
            }
            return i
        }
        func isNewline(_ s: UInt32) -> Bool { s == 0x0A || s == 0x0D }

        // 's|'t|'re|'ve|'m|'ll|'d, case-insensitive in Llama 3 (where ſ folds to s).
        if c == 0x27, p + 1 < n, let end = contraction(t, at: p + 1, caseInsensitive: flavor == .llama3) { return end }

        switch flavor {
        case .gpt2:
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            let afterSpace = c == 0x20 ? p + 1 : p
            if let cls = classAt(afterSpace), cls != .whitespace {
                if cls == .other { return run(.other, from: afterSpace) }
                return run(cls, from: afterSpace)
            }
        case .llama3:
            // `[^\r\n\p{L}\p{N}]?\p{L}+`
            if cClass == .letter { return run(.letter, from: p) }
            if cClass != .number, !isNewline(c), classAt(p + cLen) == .letter { return run(.letter, from: p + cLen) }
            // `\p{N}{1,3}`
            if cClass == .number { return run(.number, from: p, limit: maxDigits) }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let afterSpace = c == 0x20 ? p + 1 : p
            if classAt(afterSpace) == .other {
                var end = run(.other, from: afterSpace)
                while end < n, isNewline(UInt32(t[end])) { end += 1 }
                return end
            }
        }
        // Whitespace from here on. `\s*[\r\n]+` ends after the run's last newline.
        let runEnd = run(.whitespace, from: p)
        if flavor == .llama3 {
            var lastNewlineEnd: Int? = nil
            var i = p
            while i < runEnd {
                let (s, len) = UTF8Scalars.decode(t, at: i)
                i += len
                if isNewline(s) { lastNewlineEnd = i }
            }
            if let lastNewlineEnd { return lastNewlineEnd }
        }
        // `\s+(?!\S)` gives back the run's last character when a non-space follows; `\s+` takes a lone one.
        if runEnd < n, runEnd - p > cLen { return runEnd - UTF8Scalars.decode(t, endingAt: runEnd).length }
        return runEnd
    }

    /// The end of `s|t|re|ve|m|ll|d` at `i` (after an apostrophe), if one is there.
    private func contraction(_ t: UnsafeBufferPointer<UInt8>, at i: Int, caseInsensitive: Bool) -> Int? {
        func letter(_ at: Int) -> (UInt32, Int)? {
            guard at < t.count else { return nil }
            var (s, len) = UTF8Scalars.decode(t, at: at)
            if caseInsensitive {
                if s == 0x17F { s = 0x73 } else if s >= 0x41, s <= 0x5A { s += 0x20 }
            }
            return (s, len)
        }
        guard let (first, firstLen) = letter(i) else { return nil }
        switch first {
        case 0x73, 0x74, 0x6D, 0x64: return i + firstLen // s t m d
        case 0x72, 0x76: // re ve
            if let (second, len) = letter(i + firstLen), second == 0x65 { return i + firstLen + len }
        case 0x6C: // ll
            if let (second, len) = letter(i + firstLen), second == 0x6C { return i + firstLen + len }
        default: break
        }
        return nil
    }
}
