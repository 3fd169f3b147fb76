import Foundation
import LowRankCore

/// `tokenizer.json`'s `normalizer`, applied to UTF-8 text: the legacy SentencePiece layout
/// (Prepend ▁, Replace space → ▁) and Unicode normal forms (Qwen2's NFC).
indirect enum Normalizer: Sendable {
    case sequence([Normalizer])
    case prepend([UInt8])
    case replace(pattern: [UInt8], content: [UInt8])
    case nfc, nfd, nfkc, nfkd

    init(_ json: TokenizerJSON) throws {
        switch try json.type {
        case "Sequence": self = .sequence(try json.array("normalizers").map(Normalizer.init))
        case "Prepend": self = .prepend(Array(try json.string("prepend").utf8))
        case "Replace":
            guard case .string(let pattern) = try json.pattern("pattern") else {
                throw TokenizerJSON.unsupported("\(json.path).pattern", "a Replace normalizer with a regex pattern is not supported")
            }
            guard !pattern.isEmpty else { throw TokenizerJSON.malformed("\(json.path).pattern", "empty pattern") }
            self = .replace(pattern: Array(pattern.utf8), content: Array(try json.string("content").utf8))
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case let other: throw TokenizerJSON.unsupported("\(json.path).type", "normalizer \(other) is not supported")
        }
    }

    func normalize(_ text: [UInt8]) -> [UInt8] {
        switch self {
        case .sequence(let steps): return steps.reduce(text) { $1.normalize($0) }
        case .prepend(let prefix): return text.isEmpty ? text : prefix + text
        case .replace(let pattern, let content): return ByteString.replacing(pattern, with: content, in: text)
        case .nfc: return Array(String(decoding: text, as: UTF8.self).precomposedStringWithCanonicalMapping.utf8)
        case .nfd: return Array(String(decoding: text, as: UTF8.self).decomposedStringWithCanonicalMapping.utf8)
        case .nfkc: return Array(String(decoding: text, as: UTF8.self).precomposedStringWithCompatibilityMapping.utf8)
        case .nfkd: return Array(String(decoding: text, as: UTF8.self).decomposedStringWithCompatibilityMapping.utf8)
        }
    }
}

/// Byte-string operations on UTF-8: `String`'s own operations compare by grapheme and canonical
/// equivalence, where tokenizers compare code points.
enum ByteString {
    /// Every non-overlapping occurrence of `pattern`, left to right, replaced by `content`.
    static func replacing(_ pattern: [UInt8], with content: [UInt8], in text: [UInt8]) -> [UInt8] {
        guard !pattern.isEmpty, text.count >= pattern.count else { return text }
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            if text[i] == pattern[0], i + pattern.count <= text.count, text[i..<i + pattern.count].elementsEqual(pattern) {
                out += content
                i += pattern.count
            } else {
                out.append(text[i])
                i += 1
            }
        }
        return out
    }

    static func hasPrefix(_ text: [UInt8], _ prefix: [UInt8]) -> Bool {
        text.count >= prefix.count && text[..<prefix.count].elementsEqual(prefix)
    }
}
