/// Expressions, with jinja2's precedence: conditional < or < and < not < comparisons < `+ -` < `~` <
/// `* / // %` < `**` < unary minus < filters and `is` tests < subscripts, attributes and calls.
extension JinjaParser {
    /// An expression, or several separated by commas (a tuple, evaluated as a list).
    mutating func tuple(conditional: Bool = true) throws -> JinjaExpression {
        let first = conditional ? try expression() : try or()
        guard isOp(",") else { return first }
        var items = [first]
        while skipOp(",") {
            if current.kind == .blockEnd || current.kind == .variableEnd || isOp(")") { break }
            items.append(conditional ? try expression() : try or())
        }
        return .list(items)
    }

    mutating func expression() throws -> JinjaExpression {
        try nested { parser in
            var value = try parser.or()
            while parser.skipName("if") {
                let condition = try parser.or()
                value = .conditional(value, condition: condition, otherwise: parser.skipName("else") ? try parser.expression() : nil)
            }
            return value
        }
    }

    private mutating func or() throws -> JinjaExpression {
        var left = try and()
        while skipName("or") { left = .or(left, try and()) }
        return left
    }

    private mutating func and() throws -> JinjaExpression {
        var left = try not()
        while skipName("and") { left = .and(left, try not()) }
        return left
    }

    private mutating func not() throws -> JinjaExpression {
        if skipName("not") { return .not(try nested { try $0.not() }) }
        return try comparison()
    }

    private mutating func comparison() throws -> JinjaExpression {
        var left = try sum()
        while true {
            if case .op(let op) = current.kind, ["==", "!=", "<", "<=", ">", ">="].contains(op) {
                index += 1
                left = .binary(op, left, try sum())
            } else if skipName("in") {
                left = .binary("in", left, try sum())
            } else if isName("not"), tokens[index + 1].kind == .name("in") {
                index += 2
                left = .not(.binary("in", left, try sum()))
            } else {
                return left
            }
        }
    }

    private mutating func sum() throws -> JinjaExpression {
        var left = try concatenation()
        while case .op(let op) = current.kind, op == "+" || op == "-" {
            index += 1
            left = .binary(op, left, try concatenation())
        }
        return left
    }

    private mutating func concatenation() throws -> JinjaExpression {
        var left = try product()
        while skipOp("~") { left = .binary("~", left, try product()) }
        return left
    }

    private mutating func product() throws -> JinjaExpression {
        var left = try power()
        while case .op(let op) = current.kind, ["*", "/", "//", "%"].contains(op) {
            index += 1
            left = .binary(op, left, try power())
        }
        return left
    }

    private mutating func power() throws -> JinjaExpression {
        var left = try unary(filtered: true)
        while skipOp("**") { left = .binary("**", left, try unary(filtered: true)) }
        return left
    }

    private mutating func unary(filtered: Bool) throws -> JinjaExpression {
        var value: JinjaExpression
        if skipOp("-") {
            value = .negate(try nested { try $0.unary(filtered: false) })
        } else if skipOp("+") {
            value = .plus(try nested { try $0.unary(filtered: false) })
        } else {
            value = try primary()
        }
        value = try postfix(value)
        return filtered ? try filtersAndTests(value) : value
    }

    private mutating func primary() throws -> JinjaExpression {
        let token = next()
        switch token.kind {
        case .name(let name):
            switch name {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(name)
            }
        case .string(var text):
            // Adjacent string literals concatenate, as in Python.
            while case .string(let more) = current.kind { text += more; index += 1 }
            return .literal(.string(text))
        case .integer(let i): return .literal(.int(i))
        case .float(let f): return .literal(.float(f))
        case .op("("):
            return try nested { parser in
                if parser.skipOp(")") { return .list([]) }
                let value = try parser.tuple()
                try parser.expectOp(")")
                return value
            }
        case .op("["):
            return try nested { parser in
                var items: [JinjaExpression] = []
                while !parser.skipOp("]") {
                    if !items.isEmpty { try parser.expectOp(",") }
                    if parser.skipOp("]") { break }
                    items.append(try parser.expression())
                }
                return .list(items)
            }
        case .op("{"):
            return try nested { parser in
                var pairs: [(JinjaExpression, JinjaExpression)] = []
                while !parser.skipOp("}") {
                    if !pairs.isEmpty { try parser.expectOp(",") }
                    if parser.skipOp("}") { break }
                    let key = try parser.expression()
                    try parser.expectOp(":")
                    pairs.append((key, try parser.expression()))
                }
                return .dict(pairs)
            }
        default:
            index -= 1
            throw failure("unexpected \(describe(token.kind))")
        }
    }

    private func describe(_ kind: JinjaToken.Kind) -> String {
        switch kind {
        case .op(let op): return "'\(op)'"
        case .blockEnd: return "end of statement block"
        case .variableEnd: return "end of print statement"
        case .end: return "end of template"
        default: return "token"
        }
    }

    private mutating func postfix(_ base: JinjaExpression) throws -> JinjaExpression {
        var value = base
        while true {
            if skipOp(".") {
                switch next().kind {
                case .name(let name): value = .attribute(value, name)
                case .integer(let i): value = .subscript(value, .literal(.int(i)))
                default: index -= 1; throw failure("expected an attribute name after '.'")
                }
            } else if isOp("[") {
                index += 1
                value = try nested { try $0.subscriptOrSlice(of: value) }
            } else if isOp("(") {
                value = .call(value, try callArguments())
            } else {
                return value
            }
        }
    }

    private mutating func subscriptOrSlice(of value: JinjaExpression) throws -> JinjaExpression {
        func part(_ parser: inout JinjaParser) throws -> JinjaExpression? {
            parser.isOp(":") || parser.isOp("]") ? nil : try parser.expression()
        }
        let start = try part(&self)
        if skipOp("]") {
            guard let start else { throw failure("expected a subscript") }
            return .subscript(value, start)
        }
        try expectOp(":")
        let stop = try part(&self)
        let step = skipOp(":") ? try part(&self) : nil
        try expectOp("]")
        return .slice(value, start: start, stop: stop, step: step)
    }

    mutating func callArguments() throws -> JinjaCallArguments {
        try expectOp("(")
        return try nested { parser in
            var arguments = JinjaCallArguments()
            while !parser.skipOp(")") {
                if !(arguments.positional.isEmpty && arguments.keywords.isEmpty) { try parser.expectOp(",") }
                if parser.skipOp(")") { break }
                if parser.isOp("*") || parser.isOp("**") {
                    throw JinjaFailure.unsupported("'*' and '**' argument unpacking is not supported (line \(parser.current.line))")
                }
                if case .name(let name) = parser.current.kind, parser.tokens[parser.index + 1].kind == .op("=") {
                    parser.index += 2
                    arguments.keywords.append((name, try parser.expression()))
                } else {
                    guard arguments.keywords.isEmpty else { throw parser.failure("positional argument after keyword argument") }
                    arguments.positional.append(try parser.expression())
                }
            }
            return arguments
        }
    }

    private mutating func filtersAndTests(_ base: JinjaExpression) throws -> JinjaExpression {
        var value = base
        while true {
            if skipOp("|") {
                let (name, arguments) = try filterCall()
                value = try postfix(.filter(value, name: name, arguments))
            } else if skipName("is") {
                let negated = skipName("not")
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                var arguments = JinjaCallArguments()
                if isOp("(") {
                    arguments = try callArguments()
                } else if startsTestArgument {
                    arguments.positional = [try nested { try $0.unary(filtered: false) }]
                }
                value = .test(value, name: name, arguments, negated: negated)
            } else {
                return value
            }
        }
    }

    /// jinja2 lets a test take one argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
    private var startsTestArgument: Bool {
        switch current.kind {
        case .name(let name): return !["else", "or", "and", "if", "in", "not", "is"].contains(name)
        case .string, .integer, .float: return true
        case .op(let op): return op == "(" || op == "[" || op == "{"
        default: return false
        }
    }
}
