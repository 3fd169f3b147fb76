/// A value as a Jinja template running in Python sees it: Python's None, bool, int, float, str, list and
/// dict (insertion-ordered, as `tojson` and `.items()` expose the order), jinja2's `Undefined`, and the
/// callables and namespaces a template can hold.
public enum JinjaValue {
    /// jinja2's default `Undefined`: prints as "", is falsy and iterates as empty; the name is what was missing.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case list([JinjaValue])
    case dict(JinjaDictionary)
    /// `namespace(...)`: the one mutable object templates have, shared by reference.
    case namespace(JinjaNamespace)
    case function(JinjaFunction)
}

/// A Python dict: keys in insertion order; keys are strings, as JSON and templates use them.
public struct JinjaDictionary {
    public private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]

    public init() {}

    public init(_ pairs: [(String, JinjaValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if storage[key] == nil, newValue != nil { keys.append(key) }
            if newValue == nil, storage[key] != nil { keys.removeAll { $0 == key } }
            storage[key] = newValue
        }
    }

    public var count: Int { keys.count }
    public var pairs: [(String, JinjaValue)] { keys.map { ($0, storage[$0]!) } }
}

public final class JinjaNamespace {
    var attributes: JinjaDictionary
    init(_ attributes: JinjaDictionary) { self.attributes = attributes }
}

/// A callable: a global such as `raise_exception`, a bound method such as `"a b".split`, or a macro.
public final class JinjaFunction {
    let name: String
    let call: (JinjaArguments) throws -> JinjaValue
    init(_ name: String, _ call: @escaping (JinjaArguments) throws -> JinjaValue) {
        self.name = name
        self.call = call
    }
}

extension JinjaValue {
    /// Python's truth value (`Undefined` is falsy).
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .float(let f): return f != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return !l.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .function: return true
        }
    }

    var isUndefined: Bool { if case .undefined = self { true } else { false } }

    /// Python's type name, as its error messages give it.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .list: return "list"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    /// The number as a Double, for arithmetic that mixes ints, floats and bools as Python does.
    var numeric: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .float(let f): return f
        default: return nil
        }
    }

    /// The value as a Python int when it is an int or a bool.
    var integer: Int? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return i
        default: return nil
        }
    }
}

extension JinjaValue: Equatable {
    /// Python's `==`: numbers compare by value across int, float and bool; Undefined equals Undefined.
    public static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case (.list(let x), .list(let y)): return x == y
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && x.keys.allSatisfy { key in y[key].map { $0 == x[key]! } ?? false }
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.function(let x), .function(let y)): return x === y
        default:
            if let x = a.integer, let y = b.integer { return x == y }
            if let x = a.numeric, let y = b.numeric { return x == y }
            return false
        }
    }
}
