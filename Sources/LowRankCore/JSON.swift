/// A parsed JSON value: enough of RFC 8259 for safetensors headers and model configs, with errors
/// instead of traps on malformed input.
public enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    /// Parses RFC 8259 JSON strictly, as serde_json does: an object with a key given twice is an
    /// error (no silent last-wins), as are invalid UTF-8, raw control characters in strings, lone
    /// surrogates and numbers outside JSON's grammar or Double's range.
    public static func parse(_ bytes: some Collection<UInt8>) throws -> JSON {
        try Array(bytes).withUnsafeBytes { try parse(raw: $0) }
    }

    public static func parse(raw bytes: UnsafeRawBufferPointer) throws -> JSON {
        var parser = Parser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == parser.bytes.count else { throw parser.error("trailing characters") }
        return value
    }

    /// Parses the file at `path`; an unreadable or malformed file is an error naming it and `what` it is.
    public static func read(_ path: String, what: String) throws -> JSON {
        do { return try MappedBytes(contentsOf: path).withBytes { try parse(raw: $0) } } catch let e as LowRankError {
            throw LowRankError(e.kind, "cannot read \(what): \(e.message)", context: [("file", path)])
        }
    }

    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var number: Double? { if case .number(let n) = self { n } else { nil } }
    public var array: [JSON]? { if case .array(let a) = self { a } else { nil } }
    public var object: [String: JSON]? { if case .object(let o) = self { o } else { nil } }
    /// The number as an Int when it is integral and in range.
    public var int: Int? {
        guard let n = number, n.rounded() == n, abs(n) < 0x1p62 else { return nil }
        return Int(n)
    }

    /// Compact serialization with sorted keys. JSON has no NaN or infinity: a non-finite number is
    /// written as `null` (unknown), so the text always parses; commands refuse such results first.
    public var serialized: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n) where !n.isFinite: return "null"
        case .number(let n): return n.rounded() == n && abs(n) < 0x1p53 ? String(Int64(n)) : "\(n)"
        case .string(let s): return JSON.quote(s)
        case .array(let a): return "[" + a.map(\.serialized).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { JSON.quote($0) + ":" + o[$0]!.serialized }.joined(separator: ",") + "}"
        }
    }

    /// `s` as a JSON string, escaped as Python's `json.dumps(..., ensure_ascii=False)` and serde_json
    /// write it (chat templates' `tojson` must match the former byte for byte).
    public static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        func error(_ message: String) -> LowRankError {
            LowRankError(.fileFormat, "malformed JSON: \(message) at byte \(index)")
        }

        var next: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let b = next, b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { index += 1 }
        }

        mutating func expect(_ literal: String) throws {
            for byte in literal.utf8 {
                guard next == byte else { throw error("expected \(literal)") }
                index += 1
            }
        }

        mutating func value(depth: Int) throws -> JSON {
            guard depth < 256 else { throw error("nested too deeply") }
            guard let first = next else { throw error("unexpected end") }
            switch first {
            case UInt8(ascii: "{"):
                index += 1
                var object: [String: JSON] = [:]
                skipWhitespace()
                if next == UInt8(ascii: "}") { index += 1; return .object(object) }
                while true {
                    skipWhitespace()
                    let keyStart = index
                    let key = try string()
                    skipWhitespace()
                    try expect(":")
                    skipWhitespace()
                    guard object.updateValue(try value(depth: depth + 1), forKey: key) == nil else {
                        index = keyStart
                        throw error("the key \(JSON.quote(key)) appears twice in one object")
                    }
                    skipWhitespace()
                    guard next != nil else { throw error("unterminated object") }
                    if next == UInt8(ascii: ",") { index += 1; continue }
                    try expect("}")
                    return .object(object)
                }
            case UInt8(ascii: "["):
                index += 1
                var array: [JSON] = []
                skipWhitespace()
                if next == UInt8(ascii: "]") { index += 1; return .array(array) }
                while true {
                    skipWhitespace()
                    array.append(try value(depth: depth + 1))
                    skipWhitespace()
                    guard next != nil else { throw error("unterminated array") }
                    if next == UInt8(ascii: ",") { index += 1; continue }
                    try expect("]")
                    return .array(array)
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "n"): try expect("null"); return .null
            default: return .number(try number())
            }
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, finite.
        mutating func number() throws -> Double {
            let start = index
            func digits() -> Int {
                let first = index
                while let b = next, (0x30...0x39).contains(b) { index += 1 }
                return index - first
            }
            if next == UInt8(ascii: "-") { index += 1 }
            let integerStart = index
            let integerDigits = digits()
            guard integerDigits > 0 else { throw error("expected a value") }
            guard integerDigits == 1 || bytes[integerStart] != UInt8(ascii: "0") else { throw error("a number has a leading zero") }
            if next == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw error("a number has no digits after its point") }
            }
            if next == UInt8(ascii: "e") || next == UInt8(ascii: "E") {
                index += 1
                if next == UInt8(ascii: "+") || next == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw error("a number has no digits in its exponent") }
            }
            guard let n = Double(String(decoding: bytes[start..<index], as: UTF8.self)), n.isFinite else {
                throw error("a number is out of range")
            }
            return n
        }

        mutating func hexQuad() throws -> UInt32 {
            guard index + 4 <= bytes.count, bytes[index..<index + 4].allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
                  let v = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16) else {
                throw error("bad \\u escape")
            }
            index += 4
            return v
        }

        mutating func string() throws -> String {
            try expect("\"")
            var text = ""
            var runStart = index
            func flushRun() throws {
                guard let run = String(validating: bytes[runStart..<index], as: UTF8.self) else { throw error("a string is not valid UTF-8") }
                text += run
            }
            while true {
                guard let b = next else { throw error("unterminated string") }
                if b == UInt8(ascii: "\"") { try flushRun(); index += 1; break }
                guard b >= 0x20 else { throw error("a string holds a raw control character") }
                guard b == UInt8(ascii: "\\") else { index += 1; continue }
                try flushRun()
                index += 1
                guard let e = next else { throw error("unterminated escape") }
                index += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): text.unicodeScalars.append(Unicode.Scalar(e))
                case UInt8(ascii: "n"): text += "\n"
                case UInt8(ascii: "t"): text += "\t"
                case UInt8(ascii: "r"): text += "\r"
                case UInt8(ascii: "b"): text += "\u{08}"
                case UInt8(ascii: "f"): text += "\u{0C}"
                case UInt8(ascii: "u"):
                    var v = try hexQuad()
                    if (0xD800..<0xDC00).contains(v) {
                        // A high surrogate must be followed by a low one; together they are one scalar.
                        try expect("\\u")
                        let low = try hexQuad()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("a lone surrogate in a \\u escape") }
                        v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(v) else { throw error("a lone surrogate in a \\u escape") }
                    text.unicodeScalars.append(scalar)
                default: throw error("unknown escape \\\(Unicode.Scalar(e))")
                }
                runStart = index
            }
            return text
        }
    }
}
