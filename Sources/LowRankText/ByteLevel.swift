/// GPT-2's reversible map from bytes to printable characters: the printable Latin-1 bytes stand for
/// themselves, the other 68 become U+0100 onwards in byte order (so a space is "Ġ", a newline "Ċ").
enum ByteLevel {
    static let characters: [Unicode.Scalar] = {
        let printable = Set(Array(33...126) + Array(161...172) + Array(174...255))
        var next: UInt32 = 256
        return (0..<256).map { b in
            if printable.contains(b) { return Unicode.Scalar(UInt8(b)) }
            defer { next += 1 }
            return Unicode.Scalar(next)!
        }
    }()

    /// The UTF-8 encoding of each byte's character.
    static let encoded: [[UInt8]] = characters.map(UTF8Scalars.encode)

    /// Characters back to bytes.
    static let bytes: [Unicode.Scalar: UInt8] = Dictionary(uniqueKeysWithValues: characters.enumerated().map { ($1, UInt8($0)) })

    static func encode(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count * 2)
        for b in text { out += encoded[Int(b)] }
        return out
    }

    /// The bytes a token stands for, or nil if a character of it is outside the map.
    static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        for s in token.unicodeScalars {
            guard let b = bytes[s] else { return nil }
            out.append(b)
        }
        return out
    }
}
