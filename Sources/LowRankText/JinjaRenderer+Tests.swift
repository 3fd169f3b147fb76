/// jinja2's built-in tests (`x is defined`, `x is string`, `x is divisibleby 3`...).
extension JinjaRenderer {
    func applyTest(_ name: String, to value: JinjaValue, _ arguments: JinjaArguments) throws -> Bool {
        try step()
        let other = arguments.value(0, "other") ?? .none
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": if case .none = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .float = value { return true } else { return false }
        case "number":
            switch value {
            case .int, .float, .bool: return true
            default: return false
            }
        case "string": if case .string = value { return true } else { return false }
        case "mapping": if case .dict = value { return true } else { return false }
        case "iterable":
            switch value {
            case .string, .list, .dict, .undefined: return true
            default: return false
            }
        case "sequence":
            switch value {
            case .string, .list, .dict: return true
            default: return false
            }
        case "callable": if case .function = value { return true } else { return false }
        case "sameas":
            switch (value, other) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            default: return false
            }
        case "eq", "equalto", "==": return value == other
        case "ne", "!=": return value != other
        case "lt", "lessthan", "<": return try JinjaValue.compare(value, other, "<") < 0
        case "le", "<=": return try JinjaValue.compare(value, other, "<=") <= 0
        case "gt", "greaterthan", ">": return try JinjaValue.compare(value, other, ">") > 0
        case "ge", ">=": return try JinjaValue.compare(value, other, ">=") >= 0
        case "in": return try (arguments.value(0, "seq") ?? .none).contains(value)
        case "odd", "even":
            guard let i = value.integer else { throw JinjaFailure.message("\(name) test needs an integer, got \(value.typeName)") }
            return (i & 1 == 1) == (name == "odd")
        case "divisibleby":
            guard let i = value.integer, let n = (arguments.value(0, "num") ?? .none).integer, n != 0 else {
                throw JinjaFailure.message("divisibleby needs two integers, the divisor not zero")
            }
            return n == -1 || i % n == 0
        case "lower": return value.printed == value.printed.lowercased()
        case "upper": return value.printed == value.printed.uppercased()
        default: throw JinjaFailure.unsupported("the test '\(name)' is not supported")
        }
    }
}
