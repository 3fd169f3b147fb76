import LowRank

/// The fields of one JSON object of a config file (`config.json`, `adapter_config.json`), read
/// strictly: a field of the wrong JSON type is an error naming the file, the field and the type
/// found, never a silent default. `null` reads as absent, as Python's `None` does in transformers
/// and PEFT.
struct ConfigFields {
    let object: [String: JSON]
    let path: String
    /// How nested objects' fields are named in errors (`rope_parameters.factor`).
    let prefix: String

    init(_ json: JSON, path: String, what: String, prefix: String = "") throws {
        guard let object = json.object else {
            if prefix.isEmpty { throw LowRankError(.fileFormat, "\(what) is not a JSON object, it is \(json.kind)", context: [("file", path)]) }
            let field = String(prefix.dropLast())
            throw LowRankError(.fileFormat, "\(field): must be an object, got \(json.kind)", context: [("file", path), ("field", field)])
        }
        (self.object, self.path, self.prefix) = (object, path, prefix)
    }

    func fail(_ field: String, _ message: String, kind: LowRankError.Kind = .fileFormat) -> LowRankError {
        LowRankError(kind, "\(prefix)\(field): \(message)", context: [("file", path), ("field", prefix + field)])
    }

    /// The field's value; nil when it is missing or null.
    subscript(field: String) -> JSON? {
        guard let v = object[field], v != .null else { return nil }
        return v
    }

    private func required<T>(_ field: String, _ fallback: T?) throws -> T {
        guard let fallback else { throw fail(field, "missing") }
        return fallback
    }

    /// An integer in `range`; a number with a fraction, a string or a value outside is refused.
    func int(_ field: String, default fallback: Int? = nil, in range: ClosedRange<Int> = 1...Int.max) throws -> Int {
        guard let v = self[field] else { return try required(field, fallback) }
        guard case .number = v else { throw fail(field, "must be an integer, got \(v.kind)") }
        guard let i = v.int, range.contains(i) else {
            throw fail(field, "must be an integer in \(range.lowerBound)...\(range.upperBound), got \(v.serialized)")
        }
        return i
    }

    /// A finite number that `isValid` accepts (`requirement` says what that is, for the error).
    func number(_ field: String, default fallback: Double? = nil, _ requirement: String = "finite",
                where isValid: (Double) -> Bool = { _ in true }) throws -> Double {
        guard let v = self[field] else { return try required(field, fallback) }
        guard let n = v.number else { throw fail(field, "must be a number, got \(v.kind)") }
        guard n.isFinite, isValid(n) else { throw fail(field, "must be \(requirement), got \(v.serialized)") }
        return n
    }

    func bool(_ field: String, default fallback: Bool) throws -> Bool {
        guard let v = self[field] else { return fallback }
        guard case .bool(let b) = v else { throw fail(field, "must be true or false, got \(v.kind)") }
        return b
    }

    func string(_ field: String, default fallback: String? = nil) throws -> String {
        guard let v = self[field] else { return try required(field, fallback) }
        guard let s = v.string else { throw fail(field, "must be a string, got \(v.kind)") }
        return s
    }

    func optionalString(_ field: String) throws -> String? {
        self[field] == nil ? nil : try string(field)
    }

    /// A nested object, read with the same strictness; nil when missing or null.
    func object(_ field: String) throws -> ConfigFields? {
        guard let v = self[field] else { return nil }
        return try ConfigFields(v, path: path, what: field, prefix: prefix + field + ".")
    }
}

extension JSON {
    /// What the value is, for errors: its JSON type and, for scalars, the value itself.
    var kind: String {
        switch self {
        case .null: "null"
        case .bool(let b): "the boolean \(b)"
        case .number: "the number \(serialized)"
        case .string: "the string \(serialized)"
        case .array(let a): "a list of \(a.count)"
        case .object: "an object"
        }
    }
}
