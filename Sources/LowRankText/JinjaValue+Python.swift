/// How Python writes values: `str()` for printing, `repr()` inside lists and dicts.
extension JinjaValue {
    /// `str(value)`, what `{{ value }}` prints (`Undefined` prints as nothing).
    var printed: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .float(let f): return JinjaValue.pythonFloat(f)
        case .string(let s): return JinjaValue.pythonQuoted(s)
        case .list(let l): return "[" + l.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.pairs.map { JinjaValue.pythonQuoted($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let n): return "<Namespace " + JinjaValue.dict(n.attributes).repr + ">"
        case .function(let f): return "<function \(f.name)>"
        }
    }

    /// Python's `repr(float)`: the shortest round-tripping digits, positional from 1e-4 up to 1e16 and
    /// scientific outside, always with a fractional part or an exponent.
    static func pythonFloat(_ f: Double) -> String {
        if f.isNaN { return "nan" }
        if f.isInfinite { return f < 0 ? "-inf" : "inf" }
        if f == 0 { return f.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description has the same shortest digits; only the layout differs from Python's.
        let text = "\(abs(f))"
        var mantissa = Substring(text), exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = text[..<e]
            exponent = Int(text[text.index(after: e)...]) ?? 0
        }
        let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
        var digits = String(parts[0]) + (parts.count > 1 ? String(parts[1]) : "")
        var pointAt = parts[0].count + exponent
        while digits.hasPrefix("0"), digits.count > 1 { digits.removeFirst(); pointAt -= 1 }
        while digits.hasSuffix("0"), digits.count > 1 { digits.removeLast() }
        let decimalExponent = pointAt - 1
        let sign = f < 0 ? "-" : ""
        if decimalExponent < -4 || decimalExponent >= 16 {
            let head = String(digits.prefix(1)), tail = String(digits.dropFirst())
            let e = decimalExponent < 0 ? "-" + pad2(-decimalExponent) : "+" + pad2(decimalExponent)
            return sign + head + (tail.isEmpty ? "" : "." + tail) + "e" + e
        }
        if pointAt <= 0 { return sign + "0." + String(repeating: "0", count: -pointAt) + digits }
        if pointAt >= digits.count { return sign + digits + String(repeating: "0", count: pointAt - digits.count) + ".0" }
        return sign + String(digits.prefix(pointAt)) + "." + String(digits.dropFirst(pointAt))
    }

    private static func pad2(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    /// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote.
    static func pythonQuoted(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where Character(scalar) == quote: out += "\\" + String(quote)
            case _ where scalar.value < 0x20 || (0x7F...0xA0).contains(scalar.value):
                out += "\\x" + hex(scalar.value, width: 2)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out.append(quote)
        return out
    }

    static func hex(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
