#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Binary operators with Python's semantics: int arithmetic stays int (an overflow is an error, as
/// there are no big integers here), `/` is true division, `//` and `%` floor, `~` concatenates `str()`s.
extension JinjaValue {
    static func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        switch op {
        case "==": return .bool(a == b)
        case "!=": return .bool(a != b)
        case "~": return try repeated(a.printed + b.printed, count: 1)
        case "in": return .bool(try b.contains(a))
        default: break
        }
        if case .undefined(let message) = a { throw JinjaFailure.message(message) }
        if case .undefined(let message) = b { throw JinjaFailure.message(message) }
        switch op {
        case "+": return try a.plus(b)
        case "-": return try a.minus(b)
        case "*": return try a.times(b)
        case "/":
            guard let x = a.numeric, let y = b.numeric else { throw unsupported(op, a, b) }
            guard y != 0 else { throw JinjaFailure.message("division by zero") }
            return .float(x / y)
        case "//", "%": return try a.floorDivision(b, remainder: op == "%")
        case "**": return try a.power(b)
        case "<", "<=", ">", ">=":
            let order = try compare(a, b, op)
            switch op {
            case "<": return .bool(order < 0)
            case "<=": return .bool(order <= 0)
            case ">": return .bool(order > 0)
            default: return .bool(order >= 0)
            }
        default: throw JinjaFailure.unsupported("operator '\(op)' is not supported")
        }
    }

    private static func unsupported(_ op: String, _ a: JinjaValue, _ b: JinjaValue) -> JinjaFailure {
        .message("unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'")
    }

    private static func overflow(_ op: String) -> JinjaFailure {
        .unsupported("integer overflow in '\(op)' (Python's unbounded integers are not supported)")
    }

    /// A string built by the template, within `JinjaLimits.characters`.
    static func repeated(_ s: String, count: Int) throws -> JinjaValue {
        guard count > 0, !s.isEmpty else { return .string("") }
        guard s.utf8.count <= JinjaLimits.characters / count else {
            throw JinjaFailure.message("a string of more than \(JinjaLimits.characters) bytes")
        }
        return .string(String(repeating: s, count: count))
    }

    func plus(_ other: JinjaValue) throws -> JinjaValue {
        switch (self, other) {
        case (.string(let x), .string(let y)): return try JinjaValue.repeated(x + y, count: 1)
        case (.list(let x), .list(let y)): return .list(x + y)
        default:
            if let x = integer, let y = other.integer {
                let (sum, overflow) = x.addingReportingOverflow(y)
                if overflow { throw JinjaValue.overflow("+") }
                return .int(sum)
            }
            if let x = numeric, let y = other.numeric { return .float(x + y) }
            if case .string = self { throw JinjaFailure.message("can only concatenate str (not \"\(other.typeName)\") to str") }
            throw JinjaValue.unsupported("+", self, other)
        }
    }

    func minus(_ other: JinjaValue) throws -> JinjaValue {
        if case .undefined(let message) = other { throw JinjaFailure.message(message) }
        if let x = integer, let y = other.integer {
            let (difference, overflow) = x.subtractingReportingOverflow(y)
            if overflow { throw JinjaValue.overflow("-") }
            return .int(difference)
        }
        if let x = numeric, let y = other.numeric { return .float(x - y) }
        if case .int(0) = self { throw JinjaFailure.message("bad operand type for unary -: '\(other.typeName)'") }
        throw JinjaValue.unsupported("-", self, other)
    }

    func times(_ other: JinjaValue) throws -> JinjaValue {
        switch (self, other) {
        case (.string(let s), _) where other.integer != nil: return try JinjaValue.repeated(s, count: other.integer!)
        case (_, .string(let s)) where integer != nil: return try JinjaValue.repeated(s, count: integer!)
        case (.list(let l), _) where other.integer != nil: return try JinjaValue.repeatedList(l, count: other.integer!)
        case (_, .list(let l)) where integer != nil: return try JinjaValue.repeatedList(l, count: integer!)
        default:
            if let x = integer, let y = other.integer {
                let (product, overflow) = x.multipliedReportingOverflow(by: y)
                if overflow { throw JinjaValue.overflow("*") }
                return .int(product)
            }
            if let x = numeric, let y = other.numeric { return .float(x * y) }
            throw JinjaValue.unsupported("*", self, other)
        }
    }

    private static func repeatedList(_ l: [JinjaValue], count: Int) throws -> JinjaValue {
        guard count > 0, !l.isEmpty else { return .list([]) }
        guard l.count <= JinjaLimits.rangeLength / count else { throw JinjaFailure.message("a list of more than \(JinjaLimits.rangeLength) elements") }
        return .list(Array([[JinjaValue]](repeating: l, count: count).joined()))
    }

    func floorDivision(_ other: JinjaValue, remainder: Bool) throws -> JinjaValue {
        let op = remainder ? "%" : "//"
        if case .string = self, remainder {
            throw JinjaFailure.unsupported("printf-style string formatting ('...' % values) is not supported")
        }
        if let x = integer, let y = other.integer {
            guard y != 0 else { throw JinjaFailure.message(remainder ? "integer modulo by zero" : "integer division or modulo by zero") }
            guard !(x == Int.min && y == -1) else { throw JinjaValue.overflow(op) }
            var quotient = x / y, rest = x % y
            if rest != 0, (rest < 0) != (y < 0) { quotient -= 1; rest += y }
            return .int(remainder ? rest : quotient)
        }
        guard let x = numeric, let y = other.numeric else { throw JinjaValue.unsupported(op, self, other) }
        guard y != 0 else { throw JinjaFailure.message(remainder ? "float modulo" : "float floor division by zero") }
        if remainder {
            let rest = x.truncatingRemainder(dividingBy: y)
            return .float(rest != 0 && (rest < 0) != (y < 0) ? rest + y : rest)
        }
        return .float((x / y).rounded(.down))
    }

    func power(_ other: JinjaValue) throws -> JinjaValue {
        if let x = integer, let y = other.integer, y >= 0 {
            var result = 1, base = x, exponent = y
            while exponent > 0 {
                if exponent & 1 == 1 {
                    let (r, o) = result.multipliedReportingOverflow(by: base)
                    if o { throw JinjaValue.overflow("**") }
                    result = r
                }
                exponent >>= 1
                if exponent > 0 {
                    let (b, o) = base.multipliedReportingOverflow(by: base)
                    if o { throw JinjaValue.overflow("**") }
                    base = b
                }
            }
            return .int(result)
        }
        guard let x = numeric, let y = other.numeric else { throw JinjaValue.unsupported("**", self, other) }
        return .float(pow(x, y))
    }

    /// Python's ordering: numbers by value, strings by code point, lists element by element.
    static func compare(_ a: JinjaValue, _ b: JinjaValue, _ op: String) throws -> Int {
        switch (a, b) {
        case (.string(let x), .string(let y)):
            if x.unicodeScalars.elementsEqual(y.unicodeScalars) { return 0 }
            return x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars, by: { $0.value < $1.value }) ? -1 : 1
        case (.list(let x), .list(let y)):
            for (p, q) in zip(x, y) where p != q { return try compare(p, q, op) }
            return x.count == y.count ? 0 : x.count < y.count ? -1 : 1
        default:
            guard let x = a.numeric, let y = b.numeric else {
                throw JinjaFailure.message("'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
            }
            return x == y ? 0 : x < y ? -1 : 1
        }
    }

    /// Python's `needle in self`.
    func contains(_ needle: JinjaValue) throws -> Bool {
        switch self {
        case .string(let haystack):
            guard case .string(let s) = needle else {
                throw JinjaFailure.message("'in <string>' requires string as left operand, not \(needle.typeName)")
            }
            return s.isEmpty || haystack.unicodeScalars.firstRange(of: s.unicodeScalars) != nil
        case .list(let items): return items.contains(needle)
        case .dict(let d):
            guard case .string(let key) = needle else { return false }
            return d[key] != nil
        case .namespace(let n):
            guard case .string(let key) = needle else { return false }
            return n.attributes[key] != nil
        case .undefined: return false
        default: throw JinjaFailure.message("argument of type '\(typeName)' is not iterable")
        }
    }
}
