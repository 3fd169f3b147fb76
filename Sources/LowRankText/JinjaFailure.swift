import LowRankCore

/// Why rendering stopped inside the engine, before the template's name and line are attached.
enum JinjaFailure: Error {
    /// A Python-side exception (TypeError, UndefinedError, TemplateSyntaxError...), with its message.
    case message(String)
    /// The template called `raise_exception(message)`.
    case raised(String)
    /// The template uses a Jinja construct this engine does not implement.
    case unsupported(String)
}

/// Bounds that keep a hostile template from hanging the process or exhausting its stack or memory.
enum JinjaLimits {
    /// Nesting of blocks, of expressions and of JSON values.
    static let nesting = 64
    /// Macro calls in progress at once (recursion).
    static let macroDepth = 32
    /// Statements, expressions and loop iterations evaluated by one render.
    static let steps = 1_000_000
    /// Characters in one string the template builds, and in the output.
    static let characters = 64 << 20
    /// Elements `range()` may produce.
    static let rangeLength = 1_000_000
}

extension LowRankError {
    /// The error a failed render reports, with the template and the line the construct started on.
    static func jinja(_ failure: JinjaFailure, template: String, line: Int) -> LowRankError {
        let context = [("template", template), ("line", String(line))]
        switch failure {
        case .message(let m): return LowRankError(.invalidArgument, m, context: context)
        case .raised(let m): return LowRankError(.invalidArgument, m, context: context + [("raised by", "raise_exception")])
        case .unsupported(let m): return LowRankError(.unsupported, m, context: context)
        }
    }
}
