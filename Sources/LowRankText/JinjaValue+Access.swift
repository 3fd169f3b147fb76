/// `a.b`, `a[b]`, `a[i:j:k]` and iteration, as jinja2's sandboxed environment resolves them: an
/// attribute is looked up as a method first and then as a key, a subscript the other way round, and
/// what is missing is an `Undefined` carrying jinja2's message.
extension JinjaValue {
    /// jinja2's `object_type_repr`, as its Undefined messages name the object.
    private var objectName: String { if case .none = self { "None" } else { "\(typeName) object" } }

    private func missingAttribute(_ name: String) -> JinjaValue { .undefined("'\(objectName)' has no attribute '\(name)'") }
    private func missingElement(_ key: JinjaValue) -> JinjaValue { .undefined("\(objectName) has no element \(key.repr)") }

    func attribute(_ name: String) throws -> JinjaValue {
        if case .undefined(let message) = self { throw JinjaFailure.message(message) }
        if let method = try method(name) { return .function(method) }
        switch self {
        case .dict(let d): return d[name] ?? missingAttribute(name)
        case .namespace(let n): return n.attributes[name] ?? missingAttribute(name)
        default: return missingAttribute(name)
        }
    }

    func item(_ key: JinjaValue) throws -> JinjaValue {
        if case .undefined(let message) = self { throw JinjaFailure.message(message) }
        if case .undefined(let message) = key { throw JinjaFailure.message(message) }
        switch (self, key) {
        case (.dict(let d), .string(let name)):
            if let value = d[name] { return value }
        case (.list(let items), _) where key.integer != nil:
            return JinjaValue.index(key.integer!, count: items.count).map { items[$0] } ?? missingElement(key)
        case (.string(let s), _) where key.integer != nil:
            let scalars = Array(s.unicodeScalars)
            return JinjaValue.index(key.integer!, count: scalars.count).map { .string(String(scalars[$0])) } ?? missingElement(key)
        default: break
        }
        guard case .string(let name) = key else { return missingElement(key) }
        return try attribute(name)
    }

    /// Python's index with negatives counting from the end; nil when out of range.
    private static func index(_ i: Int, count: Int) -> Int? {
        let j = i < 0 ? i + count : i
        return j >= 0 && j < count ? j : nil
    }

    /// `value[start:stop:step]` with Python's `slice.indices` clamping.
    func slice(_ start: JinjaValue, _ stop: JinjaValue, _ step: JinjaValue) throws -> JinjaValue {
        if case .undefined(let message) = self { throw JinjaFailure.message(message) }
        func bound(_ v: JinjaValue) throws -> Int? {
            if case .none = v { return nil }
            guard let i = v.integer else { throw JinjaFailure.message("slice indices must be integers or None or have an __index__ method") }
            return i
        }
        let stride = try bound(step) ?? 1
        guard stride != 0 else { throw JinjaFailure.message("slice step cannot be zero") }
        func positions(_ count: Int) throws -> [Int] {
            func clamp(_ i: Int?, _ fallback: Int) -> Int {
                guard let i else { return fallback }
                let j = i < 0 ? max(i + count, stride < 0 ? -1 : 0) : i
                return stride < 0 ? min(j, count - 1) : min(j, count)
            }
            let first = clamp(try bound(start), stride < 0 ? count - 1 : 0)
            let last = clamp(try bound(stop), stride < 0 ? -1 : count)
            return Array(Swift.stride(from: first, to: last, by: stride))
        }
        switch self {
        case .list(let items): return .list(try positions(items.count).map { items[$0] })
        case .string(let s):
            let scalars = Array(s.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in try positions(scalars.count) { out.append(scalars[i]) }
            return .string(String(out))
        default: throw JinjaFailure.message("'\(typeName)' object is not subscriptable")
        }
    }

    /// What `for x in value` visits: a list's items, a dict's keys, a string's characters; Undefined is empty.
    func iterated() throws -> [JinjaValue] {
        switch self {
        case .list(let items): return items
        case .dict(let d): return d.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        default: throw JinjaFailure.message("'\(typeName)' object is not iterable")
        }
    }
}
