import LowRankCore

/// `tokenizer.json`'s `decoder`: turns token strings back into text, each step mapping the list of
/// strings to a new list (the library's `decode_chain`), the results joined at the end.
indirect enum TokenDecoder: Sendable {
    case sequence([TokenDecoder])
    case byteLevel
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case replace(pattern: [UInt8], content: [UInt8])
    case metaspace(replacement: Unicode.Scalar, prependScheme: Metaspace.PrependScheme)

    init(_ json: TokenizerJSON) throws {
        switch try json.type {
        case "Sequence": self = .sequence(try json.array("decoders").map(TokenDecoder.init))
        case "ByteLevel": self = .byteLevel
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Strip":
            let start = try json.int("start"), stop = try json.int("stop")
            guard start >= 0, stop >= 0 else { throw TokenizerJSON.malformed(json.path, "Strip's start and stop must be non-negative") }
            self = .strip(content: try json.scalar("content"), start: start, stop: stop)
        case "Replace":
            guard case .string(let pattern) = try json.pattern("pattern") else {
                throw TokenizerJSON.unsupported("\(json.path).pattern", "a Replace decoder with a regex pattern is not supported")
            }
            self = .replace(pattern: Array(pattern.utf8), content: Array(try json.string("content").utf8))
        case "Metaspace":
            let metaspace = try Metaspace(json)
            self = .metaspace(replacement: metaspace.replacement, prependScheme: metaspace.prependScheme)
        case let other: throw TokenizerJSON.unsupported("\(json.path).type", "decoder \(other) is not supported")
        }
    }

    func decode(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let steps): return steps.reduce(tokens) { $1.decode($0) }
        case .byteLevel:
            // A token with a character outside the byte map stands for its own UTF-8 (an added token).
            let bytes = tokens.flatMap { ByteLevel.decode($0) ?? Array($0.utf8) }
            return [String(decoding: bytes, as: UTF8.self)]
        case .byteFallback: return Self.byteFallback(tokens)
        case .fuse: return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                let scalars = Array(token.unicodeScalars)
                var from = 0
                while from < min(start, scalars.count), scalars[from] == content { from += 1 }
                var to = scalars.count
                while scalars.count - to < stop, to > from, scalars[to - 1] == content { to -= 1 }
                var out = String.UnicodeScalarView()
                out.append(contentsOf: scalars[from..<to])
                return String(out)
            }
        case .replace(let pattern, let content):
            return tokens.map { String(decoding: ByteString.replacing(pattern, with: content, in: Array($0.utf8)), as: UTF8.self) }
        case .metaspace(let replacement, let prependScheme):
            // The first token loses its markers (the prepended space), later ones become spaces.
            return tokens.enumerated().map { i, token in
                var out = String.UnicodeScalarView()
                for s in token.unicodeScalars {
                    if s != replacement { out.append(s) } else if i != 0 || prependScheme == .never { out.append(" ") }
                }
                return String(out)
            }
        }
    }

    /// `<0xHH>` tokens become their bytes: valid UTF-8 runs as text, an invalid run as one U+FFFD per byte.
    private static func byteFallback(_ tokens: [String]) -> [String] {
        var out: [String] = []
        var bytes: [UInt8] = []
        func flush() {
            guard !bytes.isEmpty else { return }
            if let s = String(validating: bytes, as: UTF8.self) { out.append(s) } else { out += Array(repeating: "\u{FFFD}", count: bytes.count) }
            bytes.removeAll()
        }
        for token in tokens {
            if let b = byteToken(token) { bytes.append(b); continue }
            flush()
            out.append(token)
        }
        flush()
        return out
    }

    /// The byte of a `<0xHH>` token (six bytes; the two after "0x" read as Rust's `u8::from_str_radix` reads them, a leading + allowed).
    private static func byteToken(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        guard u[3] != 0x2D else { return nil } // Swift would read "-0" as zero; Rust refuses a sign on an unsigned type
        return UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16)
    }
}
