/// Every failure the engine reports: what kind, a sentence that says what to do, and the context
/// (op, shapes, file, tensor) it happened in.
public struct LowRankError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        case shapeMismatch = "shape mismatch"
        case dtypeMismatch = "dtype mismatch"
        case invalidArgument = "invalid argument"
        case deviceUnavailable = "device unavailable"
        case unsupported = "unsupported"
        case shaderCompilation = "shader compilation failed"
        case outOfMemory = "out of memory"
        case vulkan = "Vulkan error"
        case fileFormat = "bad file"
        case io = "I/O error"
        case numerical = "numerical failure"
    }

    public var kind: Kind
    public var message: String
    public var context: [(String, String)]

    public init(_ kind: Kind, _ message: String, context: [(String, String)] = []) {
        self.kind = kind
        self.message = message
        self.context = context
    }

    public var description: String {
        let where_ = context.isEmpty ? "" : " (" + context.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + ")"
        return "\(kind.rawValue): \(message)\(where_)"
    }

    public func adding(_ key: String, _ value: String) -> LowRankError {
        var copy = self
        copy.context.append((key, value))
        return copy
    }
}
