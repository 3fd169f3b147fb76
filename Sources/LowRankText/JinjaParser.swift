/// jinja2's parser for the statements chat templates use; every other tag is refused by name and line.
struct JinjaParser {
    var tokens: [JinjaToken]
    var index = 0
    /// Blocks and expressions open at once, bounded so a hostile template cannot exhaust the stack.
    var depth = 0

    static func parse(_ source: String) throws -> [JinjaNode] {
        var parser = JinjaParser(tokens: try JinjaLexer.tokenize(source))
        let (nodes, end) = try parser.statements(until: [])
        if let end { throw parser.failure("unexpected '\(end)'") }
        return nodes
    }

    /// jinja2 tags this engine does not implement, and what they are.
    private static let unsupportedTags: [String: String] = [
        "include": "template inclusion", "import": "template import", "from": "template import",
        "extends": "template inheritance", "block": "template inheritance", "call": "call blocks",
        "autoescape": "autoescaping", "do": "the do extension",
    ]

    var current: JinjaToken { tokens[index] }

    func failure(_ message: String) -> JinjaFailure { .message("\(message) (line \(current.line))") }

    mutating func next() -> JinjaToken {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    func isOp(_ op: String) -> Bool { current.kind == .op(op) }
    func isName(_ name: String) -> Bool { current.kind == .name(name) }

    mutating func skipOp(_ op: String) -> Bool {
        guard isOp(op) else { return false }
        index += 1
        return true
    }

    mutating func skipName(_ name: String) -> Bool {
        guard isName(name) else { return false }
        index += 1
        return true
    }

    mutating func expectOp(_ op: String) throws {
        guard skipOp(op) else { throw failure("expected '\(op)'") }
    }

    mutating func expectName() throws -> String {
        guard case .name(let name) = next().kind else { index -= 1; throw failure("expected a name") }
        return name
    }

    mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else { throw failure("expected the end of the statement block") }
        index += 1
    }

    mutating func nested<T>(_ body: (inout JinjaParser) throws -> T) throws -> T {
        guard depth < JinjaLimits.nesting else { throw failure("template nested more than \(JinjaLimits.nesting) deep") }
        depth += 1
        defer { depth -= 1 }
        return try body(&self)
    }

    /// Statements up to one of the `ends` tags (returned, its `{%` and name consumed) or the template's end.
    mutating func statements(until ends: Set<String>) throws -> ([JinjaNode], String?) {
        var nodes: [JinjaNode] = []
        while true {
            let token = next()
            switch token.kind {
            case .end:
                if !ends.isEmpty { throw failure("unexpected end of template, expected " + ends.sorted().map { "'\($0)'" }.joined(separator: " or ")) }
                return (nodes, nil)
            case .text(let text): nodes.append(.text(text))
            case .variableBegin:
                nodes.append(.output(try tuple(), line: token.line))
                guard current.kind == .variableEnd else { throw failure("expected '}}'") }
                index += 1
            case .blockBegin:
                let name = try expectName()
                if ends.contains(name) { return (nodes, name) }
                nodes.append(contentsOf: try nested { try $0.statement(name, line: token.line) })
            default: throw failure("unexpected token")
            }
        }
    }

    /// The statement after `{% name`, through its closing tag.
    private mutating func statement(_ name: String, line: Int) throws -> [JinjaNode] {
        switch name {
        case "if": return [try conditional(line: line)]
        case "for": return [try loop(line: line)]
        case "set": return [try assignment(line: line)]
        case "macro": return [try macro(line: line)]
        case "break", "continue":
            try expectBlockEnd()
            return [name == "break" ? .breakLoop(line: line) : .continueLoop(line: line)]
        case "filter":
            let filters = try filterChain()
            try expectBlockEnd()
            return [.filterBlock(filters, body: try body(until: "endfilter"), line: line)]
        case "with":
            var assignments: [(String, JinjaExpression)] = []
            while current.kind != .blockEnd {
                if !assignments.isEmpty { try expectOp(",") }
                let target = try expectName()
                try expectOp("=")
                assignments.append((target, try expression()))
            }
            try expectBlockEnd()
            return [.scoped(assignments, body: try body(until: "endwith"), line: line)]
        case "generation":
            // transformers' AssistantTracker only records where the block is; it renders its body unchanged.
            try expectBlockEnd()
            return try body(until: "endgeneration")
        default:
            if let what = JinjaParser.unsupportedTags[name] {
                throw JinjaFailure.unsupported("'{% \(name) %}' (\(what)) is not supported (line \(line))")
            }
            throw failure("Encountered unknown tag '\(name)'")
        }
    }

    private mutating func body(until end: String) throws -> [JinjaNode] {
        let (nodes, _) = try statements(until: [end])
        try expectBlockEnd()
        return nodes
    }

    private mutating func conditional(line: Int) throws -> JinjaNode {
        var branches: [(JinjaExpression, [JinjaNode])] = []
        var condition = try expression()
        while true {
            try expectBlockEnd()
            let (nodes, end) = try statements(until: ["elif", "else", "endif"])
            branches.append((condition, nodes))
            switch end {
            case "elif": condition = try expression()
            case "else":
                try expectBlockEnd()
                return .conditional(branches, otherwise: try body(until: "endif"), line: line)
            default:
                try expectBlockEnd()
                return .conditional(branches, otherwise: [], line: line)
            }
        }
    }

    private mutating func loop(line: Int) throws -> JinjaNode {
        let target = try assignTarget(allowAttribute: false)
        guard skipName("in") else { throw failure("expected 'in'") }
        let iterable = try tuple(conditional: false)
        let filter = skipName("if") ? try expression() : nil
        if isName("recursive") { throw JinjaFailure.unsupported("recursive for loops are not supported (line \(line))") }
        try expectBlockEnd()
        let (nodes, end) = try statements(until: ["else", "endfor"])
        var otherwise: [JinjaNode] = []
        try expectBlockEnd()
        if end == "else" { otherwise = try body(until: "endfor") }
        return .loop(JinjaLoop(target: target, iterable: iterable, filter: filter, body: nodes, otherwise: otherwise, line: line))
    }

    private mutating func assignment(line: Int) throws -> JinjaNode {
        let target = try assignTarget(allowAttribute: true)
        if skipOp("=") {
            let value = try tuple()
            try expectBlockEnd()
            return .assign(target, value, line: line)
        }
        guard case .name(let name) = target else { throw failure("expected '='") }
        let filters = try filterChain()
        try expectBlockEnd()
        return .assignBlock(name, filters: filters, body: try body(until: "endset"), line: line)
    }

    private mutating func macro(line: Int) throws -> JinjaNode {
        let name = try expectName()
        try expectOp("(")
        var parameters: [(String, JinjaExpression?)] = []
        while !skipOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            if skipOp(")") { break }
            let parameter = try expectName()
            parameters.append((parameter, skipOp("=") ? try expression() : nil))
        }
        try expectBlockEnd()
        return .macro(JinjaMacro(name: name, parameters: parameters, body: try body(until: "endmacro"), line: line))
    }

    /// `name`, `a, b` or `(a, b)`, or with `allowAttribute` `namespace.attribute`.
    private mutating func assignTarget(allowAttribute: Bool) throws -> JinjaTarget {
        let parenthesized = skipOp("(")
        var names = [try expectName()]
        if allowAttribute, !parenthesized, skipOp(".") { return .attribute(names[0], try expectName()) }
        while skipOp(",") {
            if case .name = current.kind { names.append(try expectName()) } else { break }
        }
        if parenthesized { try expectOp(")") }
        return names.count == 1 && !parenthesized ? .name(names[0]) : .tuple(names)
    }

    /// `| name(args) | name ...` as in `{% filter %}` and `{% set x | filter %}`.
    private mutating func filterChain() throws -> [(String, JinjaCallArguments)] {
        var filters: [(String, JinjaCallArguments)] = []
        if case .name = current.kind, !isOp("|") { filters.append(try filterCall()) }
        while skipOp("|") { filters.append(try filterCall()) }
        return filters
    }

    mutating func filterCall() throws -> (String, JinjaCallArguments) {
        var name = try expectName()
        while skipOp(".") { name += "." + (try expectName()) }
        return (name, isOp("(") ? try callArguments() : JinjaCallArguments())
    }
}
