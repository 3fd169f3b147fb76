/// An expression of a parsed template.
indirect enum JinjaExpression {
    case literal(JinjaValue)
    case name(String)
    case list([JinjaExpression])
    case dict([(JinjaExpression, JinjaExpression)])
    case attribute(JinjaExpression, String)
    case `subscript`(JinjaExpression, JinjaExpression)
    case slice(JinjaExpression, start: JinjaExpression?, stop: JinjaExpression?, step: JinjaExpression?)
    case call(JinjaExpression, JinjaCallArguments)
    case filter(JinjaExpression, name: String, JinjaCallArguments)
    case test(JinjaExpression, name: String, JinjaCallArguments, negated: Bool)
    case not(JinjaExpression)
    case negate(JinjaExpression)
    case plus(JinjaExpression)
    case binary(String, JinjaExpression, JinjaExpression)
    case and(JinjaExpression, JinjaExpression)
    case or(JinjaExpression, JinjaExpression)
    /// `a if condition else b`; without `else` the false branch is Undefined.
    case conditional(JinjaExpression, condition: JinjaExpression, otherwise: JinjaExpression?)
}

struct JinjaCallArguments {
    var positional: [JinjaExpression] = []
    var keywords: [(String, JinjaExpression)] = []
}

/// What `set` and `for` assign to.
enum JinjaTarget {
    case name(String)
    case tuple([String])
    /// `set ns.attribute = ...` on a namespace.
    case attribute(String, String)
}

/// A statement of a parsed template; `line` is where it starts, for error messages.
indirect enum JinjaNode {
    case text(String)
    case output(JinjaExpression, line: Int)
    case conditional([(JinjaExpression, [JinjaNode])], otherwise: [JinjaNode], line: Int)
    case loop(JinjaLoop)
    case assign(JinjaTarget, JinjaExpression, line: Int)
    /// `{% set name %}…{% endset %}`, optionally through filters.
    case assignBlock(String, filters: [(String, JinjaCallArguments)], body: [JinjaNode], line: Int)
    case macro(JinjaMacro)
    case filterBlock([(String, JinjaCallArguments)], body: [JinjaNode], line: Int)
    /// `{% with a = 1 %}…{% endwith %}`: assignments visible only inside.
    case scoped([(String, JinjaExpression)], body: [JinjaNode], line: Int)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
}

struct JinjaLoop {
    var target: JinjaTarget
    var iterable: JinjaExpression
    var filter: JinjaExpression?
    var body: [JinjaNode]
    var otherwise: [JinjaNode]
    var line: Int
}

struct JinjaMacro {
    var name: String
    var parameters: [(String, JinjaExpression?)]
    var body: [JinjaNode]
    var line: Int
}
