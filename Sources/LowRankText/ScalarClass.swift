/// The character classes the split regexes use, as Oniguruma defines them for UTF-8: `\p{L}` and
/// `\p{N}` are general categories, `\s` is the White_Space property.
enum ScalarClass: UInt8 {
    case letter, number, whitespace, other

    private static let ascii: [ScalarClass] = (0..<128).map { classify(Unicode.Scalar(UInt8($0))) }

    static func of(_ v: UInt32) -> ScalarClass {
        v < 128 ? ascii[Int(v)] : classify(Unicode.Scalar(v) ?? "\u{FFFD}")
    }

    private static func classify(_ s: Unicode.Scalar) -> ScalarClass {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return s.properties.isWhitespace ? .whitespace : .other
        }
    }
}

/// UTF-8 decoding of text the tokenizer itself produced or validated.
enum UTF8Scalars {
    /// The scalar starting at byte `i` and its length in bytes.
    @inline(__always)
    static func decode(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> (scalar: UInt32, length: Int) {
        let b0 = UInt32(b[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F), 2) }
        if b0 < 0xF0 { return ((b0 & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F), 3) }
        return ((b0 & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6 | UInt32(b[i + 3] & 0x3F), 4)
    }

    @inline(__always)
    static func length(leadByte b: UInt8) -> Int {
        b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
    }

    static func encode(_ s: Unicode.Scalar) -> [UInt8] { Array(String(s).utf8) }

    /// Rust's `char::is_alphanumeric`: the Alphabetic property or a numeric general category.
    static func isAlphanumeric(_ v: UInt32) -> Bool {
        guard let s = Unicode.Scalar(v) else { return false }
        return s.properties.isAlphabetic || ScalarClass.of(v) == .number
    }

    /// Rust's `char::is_whitespace`: the White_Space property.
    static func isWhitespace(_ v: UInt32) -> Bool {
        Unicode.Scalar(v)?.properties.isWhitespace ?? false
    }

    /// The scalar that ends at byte `end` (exclusive).
    static func decode(_ b: UnsafeBufferPointer<UInt8>, endingAt end: Int) -> (scalar: UInt32, length: Int) {
        var start = end - 1
        while start > 0, b[start] & 0xC0 == 0x80 { start -= 1 }
        return decode(b, at: start)
    }
}
