/// jinja2's built-in filters that chat templates use, with transformers' `tojson`.
extension JinjaRenderer {
    func applyFilter(_ name: String, to value: JinjaValue, _ arguments: JinjaArguments) throws -> JinjaValue {
        try step()
        switch name {
        case "trim": return .string(JinjaValue.stripped(value.printed, try optionalText(arguments, 0, "chars")))
        case "upper": return .string(value.printed.uppercased())
        case "lower": return .string(value.printed.lowercased())
        case "capitalize": return .string(JinjaValue.capitalized(value.printed))
        case "title": return .string(JinjaValue.titled(value.printed))
        case "string": return .string(value.printed)
        case "length", "count":
            switch value {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .list(let l): return .int(l.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw JinjaFailure.message("object of type '\(value.typeName)' has no len()")
            }
        case "default", "d":
            let fallback = arguments.value(0, "default_value") ?? .string("")
            let boolean = arguments.value(1, "boolean")?.isTruthy ?? false
            return value.isUndefined || (boolean && !value.isTruthy) ? fallback : value
        case "tojson":
            let indent: String?
            switch arguments.value(1, "indent") ?? .none {
            case .none: indent = nil
            case .int(let n): indent = String(repeating: " ", count: max(0, min(n, 64)))
            case .string(let s): indent = s
            case let other: throw JinjaFailure.message("tojson: indent must be an int or a string, not \(other.typeName)")
            }
            var separators: (String, String)?
            if case .list(let pair) = arguments.value(2, "separators") ?? .none, pair.count == 2,
               case .string(let item) = pair[0], case .string(let key) = pair[1] {
                separators = (item, key)
            }
            if let ascii = arguments.value(0, "ensure_ascii"), ascii.isTruthy {
                throw JinjaFailure.unsupported("tojson(ensure_ascii=true) is not supported")
            }
            return .string(try value.json(indent: indent, separators: separators, sortKeys: arguments.value(3, "sort_keys")?.isTruthy ?? false))
        case "join":
            let separator = arguments.value(0, "d")?.printed ?? ""
            var items = try value.iterated()
            if let attribute = arguments.value(1, "attribute") { items = try items.map { try $0.item(attribute) } }
            return .string(items.map(\.printed).joined(separator: separator))
        case "first", "last":
            let items = try value.iterated()
            return (name == "first" ? items.first : items.last) ?? .undefined("No \(name) item, sequence was empty.")
        case "list": return .list(try value.iterated())
        case "reverse":
            if case .string(let s) = value { return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed()))) }
            return .list(try value.iterated().reversed())
        case "int": return integer(value, fallback: arguments.value(0, "default") ?? .int(0))
        case "float":
            switch value {
            case .string(let s): return Double(JinjaValue.stripped(s, nil)).map { .float($0) } ?? (arguments.value(0, "default") ?? .float(0))
            default: return value.numeric.map { .float($0) } ?? (arguments.value(0, "default") ?? .float(0))
            }
        case "abs":
            if let i = value.integer, i != Int.min { return .int(abs(i)) }
            if let f = value.numeric { return .float(abs(f)) }
            throw JinjaFailure.message("bad operand type for abs(): '\(value.typeName)'")
        case "replace":
            guard let old = arguments.value(0, "old"), let new = arguments.value(1, "new") else {
                throw JinjaFailure.message("replace filter takes two arguments")
            }
            return try JinjaValue.replaced(value.printed, old.printed, new.printed, count: arguments.value(2, "count")?.integer ?? -1)
        case "items":
            guard case .dict(let d) = value else {
                if value.isUndefined { return .list([]) }
                throw JinjaFailure.message("Can only get item pairs from a mapping.")
            }
            return .list(d.pairs.map { .list([.string($0.0), $0.1]) })
        case "selectattr", "rejectattr", "select", "reject":
            return .list(try selected(value, arguments, byAttribute: name.hasSuffix("attr"), keep: name.hasPrefix("select")))
        case "map":
            let items = try value.iterated()
            if let attribute = arguments.value(-1, "attribute") {
                let fallback = arguments.value(-1, "default")
                return .list(try items.map { item in
                    let found = try item.item(attribute)
                    return found.isUndefined ? (fallback ?? found) : found
                })
            }
            guard case .string(let filter)? = arguments.positional.first else { throw JinjaFailure.message("map requires a filter name or attribute=") }
            let rest = JinjaArguments(positional: Array(arguments.positional.dropFirst()), keywords: arguments.keywords)
            return .list(try items.map { try applyFilter(filter, to: $0, rest) })
        case "indent":
            let width = arguments.value(0, "width")
            let pad = width.map { if case .string(let s) = $0 { s } else { String(repeating: " ", count: max(0, min($0.integer ?? 4, 256))) } } ?? "    "
            return .string(indented(value.printed, pad, first: arguments.value(1, "first")?.isTruthy ?? false,
                                    blank: arguments.value(2, "blank")?.isTruthy ?? false))
        case "safe": return .string(value.printed)
        case "escape", "e": return .string(escaped(value.printed))
        case "unique":
            var seen: [JinjaValue] = []
            for item in try value.iterated() where !seen.contains(item) { seen.append(item) }
            return .list(seen)
        default:
            throw JinjaFailure.unsupported("the filter '\(name)' is not supported")
        }
    }

    private func optionalText(_ arguments: JinjaArguments, _ position: Int, _ name: String) throws -> String? {
        guard let value = arguments.value(position, name), !value.isUndefined else { return nil }
        if case .none = value { return nil }
        return value.printed
    }

    /// jinja2's `int` filter: strings parse as ints, then as floats truncated; anything else gives the default.
    private func integer(_ value: JinjaValue, fallback: JinjaValue) -> JinjaValue {
        switch value {
        case .int, .bool: return .int(value.integer!)
        case .float(let f): return f.isFinite && abs(f) < 0x1p63 ? .int(Int(f)) : fallback
        case .string(let s):
            let trimmed = String(JinjaValue.stripped(s, nil).filter { $0 != "_" })
            if let i = Int(trimmed) { return .int(i) }
            if let f = Double(trimmed), f.isFinite, abs(f) < 0x1p63 { return .int(Int(f)) }
            return fallback
        default: return fallback
        }
    }

    /// `select`/`reject` by a test, or `selectattr`/`rejectattr` by an attribute and an optional test.
    private func selected(_ value: JinjaValue, _ arguments: JinjaArguments, byAttribute: Bool, keep: Bool) throws -> [JinjaValue] {
        var rest = arguments.positional
        var attribute: JinjaValue?
        if byAttribute {
            guard !rest.isEmpty else { throw JinjaFailure.message("selectattr/rejectattr need an attribute") }
            attribute = rest.removeFirst()
        }
        let test = rest.isEmpty ? nil : rest.removeFirst().printed
        return try value.iterated().filter { item in
            try step()
            let subject = try attribute.map { try item.item($0) } ?? item
            let passes = try test.map { try applyTest($0, to: subject, JinjaArguments(positional: rest)) } ?? subject.isTruthy
            return passes == keep
        }
    }

    private func indented(_ s: String, _ pad: String, first: Bool, blank: Bool) -> String {
        var lines = s.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for i in lines.indices where (i > 0 || first) && (blank || !lines[i].allSatisfy { $0.isWhitespace }) {
            lines[i] = pad + lines[i]
        }
        return lines.joined(separator: "\n")
    }

    private func escaped(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
