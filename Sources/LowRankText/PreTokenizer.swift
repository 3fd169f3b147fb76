import LowRankCore

/// A piece of text between added tokens, split further by the pre-tokenizer; BPE runs on each piece.
struct Piece {
    var text: [UInt8]
    /// Whether the piece begins at the start of the input (Metaspace's `prepend_scheme: first`).
    var atStart: Bool
}

/// `tokenizer.json`'s `pre_tokenizer`.
indirect enum PreTokenizer: Sendable {
    case sequence([PreTokenizer])
    case byteLevel(addPrefixSpace: Bool, regex: SplitRegex?)
    case split(SplitPattern, SplitBehavior, invert: Bool)
    case digits(individually: Bool)
    case metaspace(Metaspace)

    init(_ json: TokenizerJSON) throws {
        switch try json.type {
        case "Sequence": self = .sequence(try json.array("pretokenizers").map(PreTokenizer.init))
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: try json.bool("add_prefix_space", default: true),
                              regex: try json.bool("use_regex", default: true) ? SplitRegex(pattern: SplitRegex.gpt2)! : nil)
        case "Split":
            self = .split(try SplitPattern(try json.pattern("pattern"), path: "\(json.path).pattern"),
                          try SplitBehavior(json), invert: try json.bool("invert", default: false))
        case "Digits": self = .digits(individually: try json.bool("individual_digits", default: false))
        case "Metaspace": self = .metaspace(try Metaspace(json))
        case let other: throw TokenizerJSON.unsupported("\(json.path).type", "pre-tokenizer \(other) is not supported")
        }
    }

    func split(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case .sequence(let steps): return steps.reduce(pieces) { $1.split($0) }
        case .byteLevel(let addPrefixSpace, let regex):
            return pieces.flatMap { piece -> [Piece] in
                var piece = piece
                if addPrefixSpace, piece.text.first != 0x20 { piece.text.insert(0x20, at: 0) }
                let parts = regex.map { r in piece.split(SplitBehavior.isolated.apply(piece.text.withUnsafeBufferPointer { r.matches(in: $0) }.map { ($0, true) })) } ?? [piece]
                return parts.map { part in Piece(text: part.text.withUnsafeBufferPointer(ByteLevel.encode), atStart: part.atStart) }
            }
        case .split(let pattern, let behavior, let invert):
            return pieces.flatMap { piece in
                piece.split(behavior.apply(pattern.matches(in: piece.text).map { ($0.0, $0.1 != invert) }))
            }
        case .digits(let individually):
            let digit = SplitPattern.numeric
            return pieces.flatMap { piece in
                piece.split((individually ? SplitBehavior.isolated : .contiguous).apply(digit.matches(in: piece.text)))
            }
        case .metaspace(let metaspace): return pieces.flatMap(metaspace.split)
        }
    }
}

extension Piece {
    /// The non-empty sub-pieces at `ranges`.
    func split(_ ranges: [Range<Int>]) -> [Piece] {
        ranges.compactMap { r in r.isEmpty ? nil : Piece(text: Array(text[r]), atStart: atStart && r.lowerBound == 0) }
    }
}

/// Metaspace: spaces become ▁ (U+2581), a ▁ is prepended per `prepend_scheme`, and with `split` the
/// text is cut before each ▁.
struct Metaspace: Sendable {
    enum PrependScheme: String, Sendable { case always, first, never }
    let replacement: Unicode.Scalar
    let prependScheme: PrependScheme
    let splits: Bool

    init(_ json: TokenizerJSON) throws {
        replacement = try json.scalar("replacement")
        if let scheme = try json.optionalString("prepend_scheme") {
            guard let s = PrependScheme(rawValue: scheme) else {
                throw TokenizerJSON.malformed("\(json.path).prepend_scheme", "expected always, first or never, got \(scheme.debugDescription)")
            }
            prependScheme = s
        } else {
            // Files written before `prepend_scheme` existed say `add_prefix_space`.
            prependScheme = try json.bool("add_prefix_space", default: true) ? .always : .never
        }
        splits = try json.bool("split", default: true)
    }

    func split(_ piece: Piece) -> [Piece] {
        let marker = UTF8Scalars.encode(replacement)
        var text = ByteString.replacing([0x20], with: marker, in: piece.text)
        switch prependScheme {
        case .always where !ByteString.hasPrefix(text, marker), .first where piece.atStart && !ByteString.hasPrefix(text, marker):
            text = marker + text
        default: break
        }
        let replaced = Piece(text: text, atStart: piece.atStart)
        guard splits else { return [replaced] }
        return replaced.split(SplitBehavior.mergedWithNext.apply(SplitPattern.literal(marker).matches(in: text)))
    }
}

/// What a split pre-tokenizer cuts on.
enum SplitPattern: Sendable {
    case literal([UInt8])
    case regex(SplitRegex)
    /// Digits' pattern: each character of a numeric category (Rust's `char::is_numeric`), not only 0-9.
    case numeric

    init(_ pattern: TokenizerJSON.Pattern, path: String) throws {
        switch pattern {
        case .string(let s): self = .literal(Array(s.utf8))
        case .regex(let r):
            guard let known = SplitRegex(pattern: r) else {
                throw TokenizerJSON.unsupported(path, "split regex \(r.debugDescription) is not supported (supported: GPT-2's, Llama 3's and Qwen2's)")
            }
            self = .regex(known)
        }
    }

    /// The text cut into matches and the gaps between them, as the library's `Pattern::find_matches`:
    /// a literal's occurrences left to right, each digit on its own.
    func matches(in text: [UInt8]) -> [(Range<Int>, Bool)] {
        guard !text.isEmpty else { return [(0..<0, false)] }
        var hits: [Range<Int>] = []
        switch self {
        case .regex(let r): hits = text.withUnsafeBufferPointer { r.matches(in: $0) }
        case .numeric:
            text.withUnsafeBufferPointer { t in
                var i = 0
                while i < t.count {
                    let (s, length) = UTF8Scalars.decode(t, at: i)
                    if ScalarClass.of(s) == .number { hits.append(i..<i + length) }
                    i += length
                }
            }
        case .literal(let needle):
            guard !needle.isEmpty else { return [(0..<text.count, false)] }
            var i = 0
            while i + needle.count <= text.count {
                if text[i..<i + needle.count].elementsEqual(needle) { hits.append(i..<i + needle.count); i += needle.count } else { i += 1 }
            }
        }
        var result: [(Range<Int>, Bool)] = []
        var previous = 0
        for hit in hits {
            if previous != hit.lowerBound { result.append((previous..<hit.lowerBound, false)) }
            result.append((hit, true))
            previous = hit.upperBound
        }
        if previous != text.count { result.append((previous..<text.count, false)) }
        return result
    }
}

/// How a split treats the matched delimiters (the library's `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

    init(_ json: TokenizerJSON) throws {
        let name = try json.string("behavior")
        guard let b = SplitBehavior(rawValue: name) else {
            throw TokenizerJSON.malformed("\(json.path).behavior", "unknown split behavior \(name.debugDescription)")
        }
        self = b
    }

    /// The ranges to keep, from matches and gaps that tile the text.
    func apply(_ matches: [(Range<Int>, Bool)]) -> [Range<Int>] {
        switch self {
        case .isolated: return matches.map(\.0)
        case .removed: return matches.filter { !$0.1 }.map(\.0)
        case .contiguous:
            var out: [Range<Int>] = []
            var previousMatch = false
            for (r, isMatch) in matches {
                if isMatch == previousMatch, let last = out.last { out[out.count - 1] = last.lowerBound..<r.upperBound } else { out.append(r) }
                previousMatch = isMatch
            }
            return out
        case .mergedWithPrevious:
            var out: [Range<Int>] = []
            var previousMatch = false
            for (r, isMatch) in matches {
                if isMatch, !previousMatch, let last = out.last { out[out.count - 1] = last.lowerBound..<r.upperBound } else { out.append(r) }
                previousMatch = isMatch
            }
            return out
        case .mergedWithNext:
            var out: [Range<Int>] = []
            var previousMatch = false
            for (r, isMatch) in matches.reversed() {
                if isMatch, !previousMatch, let last = out.last { out[out.count - 1] = r.lowerBound..<last.upperBound } else { out.append(r) }
                previousMatch = isMatch
            }
            return out.reversed()
        }
    }
}
