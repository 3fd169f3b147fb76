import LowRankCore

/// JSON in and out as Python's `json` module does it: objects keep their key order (a template's
/// `tojson` and `.items()` show it), integers stay ints, and `tojson` writes what `json.dumps` writes.
extension JinjaValue {
    /// Parses JSON text into the values `json.loads` would give.
    public init(json text: String) throws {
        var reader = OrderedJSONReader(scalars: Array(text.unicodeScalars))
        reader.skipWhitespace()
        self = try reader.value(depth: 0)
        reader.skipWhitespace()
        guard reader.index == reader.scalars.count else { throw reader.error("trailing characters") }
    }

    /// Reads the JSON file at `path`; an unreadable or malformed file is an error naming it.
    public init(jsonFile path: String) throws {
        do {
            try self.init(json: String(decoding: try FileIO.read(path), as: UTF8.self))
        } catch let error as LowRankError {
            throw error.adding("file", path)
        }
    }

    /// `json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sortKeys)`,
    /// which transformers installs as the `tojson` filter.
    func json(indent: String?, separators: (item: String, key: String)?, sortKeys: Bool, depth: Int = 0) throws -> String {
        guard depth < JinjaLimits.nesting else { throw JinjaFailure.message("tojson: value nested too deeply") }
        let item = separators?.item ?? (indent == nil ? ", " : ","), key = separators?.key ?? ": "
        func layout(_ parts: [String], _ open: String, _ close: String) -> String {
            if parts.isEmpty { return open + close }
            guard let indent else { return open + parts.joined(separator: item) + close }
            let inner = "\n" + String(repeating: indent, count: depth + 1)
            return open + inner + parts.joined(separator: item + inner) + "\n" + String(repeating: indent, count: depth) + close
        }
        switch self {
        case .none: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .float(let f):
            if f.isNaN { return "NaN" }
            if f.isInfinite { return f < 0 ? "-Infinity" : "Infinity" }
            return JinjaValue.pythonFloat(f)
        case .string(let s): return JSON.quote(s)
        case .list(let l):
            return layout(try l.map { try $0.json(indent: indent, separators: separators, sortKeys: sortKeys, depth: depth + 1) }, "[", "]")
        case .dict(let d):
            let keys = sortKeys ? d.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) } : d.keys
            return layout(try keys.map {
                JSON.quote($0) + key + (try d[$0]!.json(indent: indent, separators: separators, sortKeys: sortKeys, depth: depth + 1))
            }, "{", "}")
        case .undefined, .namespace, .function:
            throw JinjaFailure.message("Object of type \(typeName) is not JSON serializable")
        }
    }
}

/// A JSON reader over Unicode scalars that keeps object keys in order and tells ints from floats.
private struct OrderedJSONReader {
    let scalars: [Unicode.Scalar]
    var index = 0

    func error(_ message: String) -> LowRankError {
        LowRankError(.fileFormat, "malformed JSON: \(message) at character \(index)")
    }

    mutating func skipWhitespace() {
        while index < scalars.count, [" ", "\n", "\r", "\t"].contains(scalars[index]) { index += 1 }
    }

    mutating func expect(_ literal: String) throws {
        for scalar in literal.unicodeScalars {
            guard index < scalars.count, scalars[index] == scalar else { throw error("expected \(literal)") }
            index += 1
        }
    }

    mutating func value(depth: Int) throws -> JinjaValue {
        guard depth < JinjaLimits.nesting else { throw error("nested too deeply") }
        guard index < scalars.count else { throw error("unexpected end") }
        switch scalars[index] {
        case "{":
            index += 1
            var object = JinjaDictionary()
            try elements(closing: "}") {
                let key = try $0.string()
                $0.skipWhitespace()
                try $0.expect(":")
                $0.skipWhitespace()
                object[key] = try $0.value(depth: depth + 1)
            }
            return .dict(object)
        case "[":
            index += 1
            var array: [JinjaValue] = []
            try elements(closing: "]") { array.append(try $0.value(depth: depth + 1)) }
            return .list(array)
        case "\"": return .string(try string())
        case "t": try expect("true"); return .bool(true)
        case "f": try expect("false"); return .bool(false)
        case "n": try expect("null"); return .none
        default: return try number()
        }
    }

    /// The comma-separated elements up to `closing`, each read by `element`.
    mutating func elements(closing: Unicode.Scalar, _ element: (inout OrderedJSONReader) throws -> Void) throws {
        skipWhitespace()
        if index < scalars.count, scalars[index] == closing { index += 1; return }
        while true {
            skipWhitespace()
            try element(&self)
            skipWhitespace()
            guard index < scalars.count else { throw error("unterminated \(closing == "}" ? "object" : "array")") }
            if scalars[index] == "," { index += 1; continue }
            try expect(String(closing))
            return
        }
    }

    mutating func number() throws -> JinjaValue {
        let start = index
        while index < scalars.count, "+-0123456789.eE".unicodeScalars.contains(scalars[index]) { index += 1 }
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars[start..<index])
        if !text.contains(where: { ".eE".contains($0) }), let i = Int(text) { return .int(i) }
        guard let d = Double(text), !text.isEmpty else { throw error("bad number") }
        return .float(d)
    }

    mutating func string() throws -> String {
        try expect("\"")
        var out = String.UnicodeScalarView()
        while true {
            guard index < scalars.count else { throw error("unterminated string") }
            let scalar = scalars[index]
            index += 1
            if scalar == "\"" { return String(out) }
            guard scalar == "\\" else { out.append(scalar); continue }
            guard index < scalars.count else { throw error("unterminated escape") }
            let escape = scalars[index]
            index += 1
            switch escape {
            case "\"", "\\", "/": out.append(escape)
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "u":
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), index + 1 < scalars.count, scalars[index] == "\\", scalars[index + 1] == "u" {
                    index += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let decoded = Unicode.Scalar(code) else { throw error("unpaired surrogate") }
                out.append(decoded)
            default: throw error("bad escape \\\(escape)")
            }
        }
    }

    mutating func hex4() throws -> UInt32 {
        guard index + 4 <= scalars.count else { throw error("short \\u escape") }
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars[index..<index + 4])
        guard let code = UInt32(text, radix: 16) else { throw error("bad \\u escape") }
        index += 4
        return code
    }
}
