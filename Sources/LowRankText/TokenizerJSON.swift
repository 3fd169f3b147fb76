import LowRankCore

/// Typed reads of `tokenizer.json` fields; every error names the field by its path in the file
/// (`pre_tokenizer.pretokenizers[1].behavior`), and the loader adds the file.
struct TokenizerJSON {
    let value: JSON
    let path: String

    init(_ value: JSON, path: String) {
        self.value = value
        self.path = path
    }

    static func malformed(_ path: String, _ message: String) -> LowRankError {
        LowRankError(.fileFormat, "tokenizer.json: \(message)", context: [("field", path)])
    }

    static func unsupported(_ path: String, _ message: String) -> LowRankError {
        LowRankError(.unsupported, "tokenizer.json: \(message)", context: [("field", path)])
    }

    func child(_ key: String) -> TokenizerJSON? {
        guard let v = value[key], v != .null else { return nil }
        return TokenizerJSON(v, path: path.isEmpty ? key : "\(path).\(key)")
    }

    func required(_ key: String) throws -> TokenizerJSON {
        guard let c = child(key) else { throw Self.malformed(path.isEmpty ? key : "\(path).\(key)", "missing field") }
        return c
    }

    var type: String {
        get throws {
            guard let t = value["type"]?.string else { throw Self.malformed("\(path).type", "missing or not a string") }
            return t
        }
    }

    func string(_ key: String) throws -> String {
        let c = try required(key)
        guard let s = c.value.string else { throw Self.malformed(c.path, "expected a string") }
        return s
    }

    func optionalString(_ key: String) throws -> String? {
        guard let c = child(key) else { return nil }
        guard let s = c.value.string else { throw Self.malformed(c.path, "expected a string") }
        return s
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let c = child(key) else { return fallback }
        guard case .bool(let b) = c.value else { throw Self.malformed(c.path, "expected true or false") }
        return b
    }

    func int(_ key: String) throws -> Int {
        let c = try required(key)
        guard let n = c.value.int else { throw Self.malformed(c.path, "expected an integer") }
        return n
    }

    /// A token id: an integer in 0..<2^31.
    var id: Int32 {
        get throws {
            guard let n = value.int, n >= 0, n <= Int(Int32.max) else { throw Self.malformed(path, "expected a token id (a non-negative integer)") }
            return Int32(n)
        }
    }

    func array(_ key: String) throws -> [TokenizerJSON] {
        let c = try required(key)
        guard let a = c.value.array else { throw Self.malformed(c.path, "expected an array") }
        return a.enumerated().map { TokenizerJSON($1, path: "\(c.path)[\($0)]") }
    }

    func object(_ key: String) throws -> [(key: String, value: TokenizerJSON)] {
        let c = try required(key)
        guard let o = c.value.object else { throw Self.malformed(c.path, "expected an object") }
        return o.keys.sorted().map { ($0, TokenizerJSON(o[$0]!, path: "\(c.path).\($0)")) }
    }

    /// A field that must hold exactly one character (Metaspace's `replacement`, Strip's `content`).
    func scalar(_ key: String) throws -> Unicode.Scalar {
        let s = try string(key)
        guard s.unicodeScalars.count == 1, let c = s.unicodeScalars.first else {
            throw Self.malformed("\(path).\(key)", "expected one character, got \(s.debugDescription)")
        }
        return c
    }

    /// Replace's and Split's `pattern`: `{"String": …}` is supported; `{"Regex": …}` only where the caller knows the pattern.
    enum Pattern { case string(String), regex(String) }

    func pattern(_ key: String) throws -> Pattern {
        let c = try required(key)
        if let s = c.value["String"]?.string { return .string(s) }
        if let r = c.value["Regex"]?.string { return .regex(r) }
        throw Self.malformed(c.path, "expected {\"String\": …} or {\"Regex\": …}")
    }
}
