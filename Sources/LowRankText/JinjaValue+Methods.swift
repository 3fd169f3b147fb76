/// Python's methods on str, dict and list that templates call (`.strip()`, `.split()`, `.items()`,
/// `.get()`...). Methods that mutate are refused as transformers' ImmutableSandboxedEnvironment refuses them.
extension JinjaValue {
    private static let mutatingMethods: [String: Set<String>] = [
        "dict": ["setdefault", "clear", "update", "pop", "popitem"],
        "list": ["extend", "append", "sort", "clear", "insert", "reverse", "pop", "remove"],
    ]

    /// The bound method `name` of this value, or nil when it has none by that name.
    func method(_ name: String) throws -> JinjaFunction? {
        if JinjaValue.mutatingMethods[typeName]?.contains(name) == true {
            throw JinjaFailure.message("access to attribute '\(name)' of '\(typeName)' object is unsafe.")
        }
        let body: ((JinjaArguments) throws -> JinjaValue)?
        switch self {
        case .string(let s): body = JinjaValue.stringMethod(s, name)
        case .dict(let d):
            switch name {
            case "items": body = { _ in .list(d.pairs.map { .list([.string($0.0), $0.1]) }) }
            case "keys": body = { _ in .list(d.keys.map { .string($0) }) }
            case "values": body = { _ in .list(d.pairs.map(\.1)) }
            case "get":
                body = { arguments in
                    guard case .string(let key) = arguments.value(0, "key") else { return arguments.value(1, "default") ?? .none }
                    return d[key] ?? arguments.value(1, "default") ?? .none
                }
            default: body = nil
            }
        case .list(let items):
            switch name {
            case "count": body = { arguments in .int(items.filter { $0 == arguments.value(0, "value") ?? .none }.count) }
            case "index":
                body = { arguments in
                    let needle = arguments.value(0, "value") ?? .none
                    guard let i = items.firstIndex(of: needle) else { throw JinjaFailure.message("\(needle.repr) is not in list") }
                    return .int(i)
                }
            default: body = nil
            }
        default: body = nil
        }
        return body.map { JinjaFunction("\(typeName).\(name)", $0) }
    }

    private static func text(_ arguments: JinjaArguments, _ position: Int, _ name: String) throws -> String? {
        switch arguments.value(position, name) {
        case nil, .none?: return nil
        case .string(let s)?: return s
        case let other?: throw JinjaFailure.message("must be str or None, not \(other.typeName)")
        }
    }

    private static func stringMethod(_ s: String, _ name: String) -> ((JinjaArguments) throws -> JinjaValue)? {
        switch name {
        case "strip", "lstrip", "rstrip":
            return { arguments in
                let chars = try text(arguments, 0, "chars")
                return .string(stripped(s, chars, leading: name != "rstrip", trailing: name != "lstrip"))
            }
        case "upper": return { _ in .string(s.uppercased()) }
        case "lower": return { _ in .string(s.lowercased()) }
        case "title": return { _ in .string(titled(s)) }
        case "capitalize": return { _ in .string(capitalized(s)) }
        case "startswith", "endswith":
            return { arguments in
                let candidates: [JinjaValue]
                switch arguments.value(0, "prefix") {
                case .string(let p)?: candidates = [.string(p)]
                case .list(let l)?: candidates = l
                default: throw JinjaFailure.message("\(name) first arg must be str or a tuple of str")
                }
                let scalars = Array(s.unicodeScalars)
                return .bool(try candidates.contains { candidate in
                    guard case .string(let p) = candidate else { throw JinjaFailure.message("\(name) first arg must be str or a tuple of str") }
                    let affix = Array(p.unicodeScalars)
                    return name == "startswith" ? scalars.starts(with: affix) : scalars.reversed().starts(with: affix.reversed())
                })
            }
        case "split", "rsplit":
            return { arguments in
                let limit = arguments.value(1, "maxsplit")?.integer ?? -1
                let parts = try split(s, separator: try text(arguments, 0, "sep"), limit: limit, fromEnd: name == "rsplit")
                return .list(parts.map { .string($0) })
            }
        case "replace":
            return { arguments in
                guard let old = try text(arguments, 0, "old"), let new = try text(arguments, 1, "new") else {
                    throw JinjaFailure.message("replace() takes two strings")
                }
                return try replaced(s, old, new, count: arguments.value(2, "count")?.integer ?? -1)
            }
        case "find", "count":
            return { arguments in
                guard let needle = try text(arguments, 0, "sub") else { throw JinjaFailure.message("\(name)() takes a string") }
                let ranges = occurrences(of: needle, in: s)
                return .int(name == "count" ? ranges.count : ranges.first ?? -1)
            }
        case "join":
            return { arguments in
                let items = try (arguments.value(0, "iterable") ?? .list([])).iterated()
                return .string(try items.map { item -> String in
                    guard case .string(let t) = item else { throw JinjaFailure.message("sequence item: expected str instance, \(item.typeName) found") }
                    return t
                }.joined(separator: s))
            }
        case "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower":
            return { _ in .bool(classified(s, name)) }
        default: return nil
        }
    }

    static func isStripped(_ scalar: Unicode.Scalar, _ chars: String?) -> Bool {
        chars.map { $0.unicodeScalars.contains(scalar) } ?? JinjaLexer.isSpace(scalar)
    }

    /// `str.strip(chars)`: whitespace by default, else any of `chars`.
    static func stripped(_ s: String, _ chars: String?, leading: Bool = true, trailing: Bool = true) -> String {
        var scalars = Substring(s).unicodeScalars
        if leading { while let first = scalars.first, isStripped(first, chars) { scalars.removeFirst() } }
        if trailing { while let last = scalars.last, isStripped(last, chars) { scalars.removeLast() } }
        return String(scalars)
    }

    /// `str.title()`: a cased letter after an uncased character starts a word.
    static func titled(_ s: String) -> String {
        var out = "", previousCased = false
        for scalar in s.unicodeScalars {
            let cased = scalar.properties.isCased
            out += previousCased ? String(scalar).lowercased() : String(scalar.properties.titlecaseMapping)
            previousCased = cased
        }
        return out
    }

    /// `str.capitalize()`: the first character title-cased, the rest lower-cased.
    static func capitalized(_ s: String) -> String {
        guard let first = s.unicodeScalars.first else { return s }
        return first.properties.titlecaseMapping + String(s.unicodeScalars.dropFirst()).lowercased()
    }

    /// Start offsets (in code points) of the non-overlapping occurrences of `needle`.
    static func occurrences(of needle: String, in s: String) -> [Int] {
        let hay = Array(s.unicodeScalars), pin = Array(needle.unicodeScalars)
        guard !pin.isEmpty else { return Array(0...hay.count) }
        var found: [Int] = [], i = 0
        while i + pin.count <= hay.count {
            if hay[i..<i + pin.count].elementsEqual(pin) { found.append(i); i += pin.count } else { i += 1 }
        }
        return found
    }

    static func replaced(_ s: String, _ old: String, _ new: String, count: Int) throws -> JinjaValue {
        let hay = Array(s.unicodeScalars), oldLength = old.unicodeScalars.count
        var positions = occurrences(of: old, in: s)
        if count >= 0 { positions = Array(positions.prefix(count)) }
        var out = String.UnicodeScalarView(), cursor = 0
        for p in positions {
            guard out.count <= JinjaLimits.characters else { throw JinjaFailure.message("a string of more than \(JinjaLimits.characters) characters") }
            out.append(contentsOf: hay[cursor..<p])
            out.append(contentsOf: new.unicodeScalars)
            cursor = p + oldLength
        }
        out.append(contentsOf: hay[min(cursor, hay.count)...])
        return .string(String(out))
    }

    /// `str.split(sep, maxsplit)` (or `rsplit`): without `sep`, runs of whitespace separate and ends are dropped.
    static func split(_ s: String, separator: String?, limit: Int, fromEnd: Bool) throws -> [String] {
        let scalars = Array(s.unicodeScalars)
        func string(_ slice: ArraySlice<Unicode.Scalar>) -> String { String(String.UnicodeScalarView(slice)) }
        guard let separator else {
            var words: [ArraySlice<Unicode.Scalar>] = []
            var i = 0
            while i < scalars.count {
                while i < scalars.count, JinjaLexer.isSpace(scalars[i]) { i += 1 }
                guard i < scalars.count else { break }
                if limit >= 0, words.count == limit, !fromEnd {
                    var end = scalars.count
                    while end > i, JinjaLexer.isSpace(scalars[end - 1]) { end -= 1 }
                    words.append(scalars[i..<end])
                    break
                }
                let start = i
                while i < scalars.count, !JinjaLexer.isSpace(scalars[i]) { i += 1 }
                words.append(scalars[start..<i])
            }
            if fromEnd, limit >= 0, words.count > limit + 1 {
                let head = words[0].startIndex..<words[words.count - limit - 1].endIndex
                words = [scalars[head]] + words.suffix(limit)
            }
            return words.map(string)
        }
        guard !separator.isEmpty else { throw JinjaFailure.message("empty separator") }
        let width = separator.unicodeScalars.count
        var cuts = occurrences(of: separator, in: s)
        if limit >= 0, cuts.count > limit {
            if fromEnd {
                // rsplit keeps the last cuts (matches found left to right, which differs from Python only for self-overlapping separators).
                cuts = Array(cuts.suffix(limit))
            } else {
                cuts = Array(cuts.prefix(limit))
            }
        }
        var parts: [String] = [], start = 0
        for cut in cuts {
            parts.append(string(scalars[start..<cut]))
            start = cut + width
        }
        parts.append(string(scalars[start...]))
        return parts
    }

    private static func classified(_ s: String, _ name: String) -> Bool {
        let scalars = s.unicodeScalars
        guard !scalars.isEmpty else { return false }
        switch name {
        case "isdigit": return scalars.allSatisfy { $0.properties.numericType == .decimal || $0.properties.numericType == .digit }
        case "isalpha": return scalars.allSatisfy(\.properties.isAlphabetic)
        case "isalnum": return scalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil }
        case "isspace": return scalars.allSatisfy(JinjaLexer.isSpace)
        default:
            let cased = scalars.filter(\.properties.isCased)
            guard !cased.isEmpty else { return false }
            return name == "isupper" ? cased.allSatisfy { !$0.properties.isLowercase } : cased.allSatisfy { !$0.properties.isUppercase }
        }
    }
}
