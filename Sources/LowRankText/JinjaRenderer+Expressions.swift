/// The arguments of a call, a filter or a test, after evaluation.
struct JinjaArguments {
    var positional: [JinjaValue] = []
    var keywords: [(String, JinjaValue)] = []

    /// The argument at `position` (-1 for keyword-only), or passed by `name`.
    func value(_ position: Int, _ name: String) -> JinjaValue? {
        (0..<positional.count).contains(position) ? positional[position] : keywords.first { $0.0 == name }?.1
    }
}

extension JinjaRenderer {
    func arguments(_ call: JinjaCallArguments, in scope: JinjaScope) throws -> JinjaArguments {
        JinjaArguments(positional: try call.positional.map { try evaluate($0, in: scope) },
                       keywords: try call.keywords.map { ($0.0, try evaluate($0.1, in: scope)) })
    }

    func evaluate(_ expression: JinjaExpression, in scope: JinjaScope) throws -> JinjaValue {
        try step()
        switch expression {
        case .literal(let value): return value
        case .name(let name): return scope.lookup(name) ?? JinjaGlobals.value(named: name) ?? .undefined("'\(name)' is undefined")
        case .list(let items): return .list(try items.map { try evaluate($0, in: scope) })
        case .dict(let pairs):
            var dict = JinjaDictionary()
            for (key, value) in pairs {
                guard case .string(let k) = try evaluate(key, in: scope) else {
                    throw JinjaFailure.unsupported("dict literals with keys other than strings are not supported")
                }
                dict[k] = try evaluate(value, in: scope)
            }
            return .dict(dict)
        case .attribute(let base, let name): return try evaluate(base, in: scope).attribute(name)
        case .subscript(let base, let key): return try evaluate(base, in: scope).item(try evaluate(key, in: scope))
        case .slice(let base, let start, let stop, let step):
            let bound = { (e: JinjaExpression?) in try e.map { try self.evaluate($0, in: scope) } ?? .none }
            return try evaluate(base, in: scope).slice(try bound(start), try bound(stop), try bound(step))
        case .call(let callee, let call):
            let function = try evaluate(callee, in: scope)
            guard case .function(let f) = function else {
                if case .undefined(let message) = function { throw JinjaFailure.message(message) }
                throw JinjaFailure.message("'\(function.typeName)' object is not callable")
            }
            return try f.call(try arguments(call, in: scope))
        case .filter(let base, let name, let call):
            return try applyFilter(name, to: try evaluate(base, in: scope), try arguments(call, in: scope))
        case .test(let base, let name, let call, let negated):
            let result = try applyTest(name, to: try evaluate(base, in: scope), try arguments(call, in: scope))
            return .bool(result != negated)
        case .not(let operand): return .bool(!(try evaluate(operand, in: scope).isTruthy))
        case .negate(let operand):
            let value = try evaluate(operand, in: scope)
            if case .float(let f) = value { return .float(-f) }
            return try JinjaValue.int(0).minus(value)
        case .plus(let operand):
            let value = try evaluate(operand, in: scope)
            guard value.numeric != nil else { throw JinjaFailure.message("bad operand type for unary +: '\(value.typeName)'") }
            return value
        case .binary(let op, let left, let right):
            return try JinjaValue.binary(op, try evaluate(left, in: scope), try evaluate(right, in: scope))
        case .and(let left, let right):
            let l = try evaluate(left, in: scope)
            return l.isTruthy ? try evaluate(right, in: scope) : l
        case .or(let left, let right):
            let l = try evaluate(left, in: scope)
            return l.isTruthy ? l : try evaluate(right, in: scope)
        case .conditional(let value, let condition, let otherwise):
            if try evaluate(condition, in: scope).isTruthy { return try evaluate(value, in: scope) }
            return try otherwise.map { try evaluate($0, in: scope) } ?? .undefined("the inline if-expression evaluated to false and no else section was defined")
        }
    }
}
