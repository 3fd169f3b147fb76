import LowRankCore

/// Variables visible at one level: the context, the template's top level, a loop, a macro call.
final class JinjaScope {
    var variables: [String: JinjaValue] = [:]
    let parent: JinjaScope?

    init(parent: JinjaScope?, _ variables: [String: JinjaValue] = [:]) {
        self.parent = parent
        self.variables = variables
    }

    func lookup(_ name: String) -> JinjaValue? {
        var scope: JinjaScope? = self
        while let current = scope {
            if let value = current.variables[name] { return value }
            scope = current.parent
        }
        return nil
    }
}

/// A failure and the line of the innermost statement it happened in.
struct JinjaLocatedFailure: Error {
    var failure: JinjaFailure
    var line: Int
}

/// Executes a parsed template: statements write to an output buffer; expressions are evaluated as
/// jinja2 evaluates them in Python, within `JinjaLimits`.
final class JinjaRenderer {
    private var steps = 0
    private var macroDepth = 0

    enum Flow { case normal, breakLoop, continueLoop }

    /// Counts one unit of work against `JinjaLimits.steps`.
    func step() throws {
        steps += 1
        if steps > JinjaLimits.steps {
            throw JinjaFailure.message("the template ran more than \(JinjaLimits.steps) steps (a runaway loop?)")
        }
    }

    func execute(_ nodes: [JinjaNode], in scope: JinjaScope, into out: inout String) throws -> Flow {
        for node in nodes {
            if case .text(let text) = node {
                try append(text, to: &out)
                continue
            }
            do {
                try step()
                let flow = try execute(node, in: scope, into: &out)
                if flow != .normal { return flow }
            } catch let failure as JinjaFailure {
                throw JinjaLocatedFailure(failure: failure, line: node.line)
            }
        }
        return .normal
    }

    private func append(_ text: String, to out: inout String) throws {
        guard out.utf8.count + text.utf8.count <= JinjaLimits.characters else {
            throw JinjaFailure.message("the rendered text would exceed \(JinjaLimits.characters) bytes")
        }
        out += text
    }

    private func execute(_ node: JinjaNode, in scope: JinjaScope, into out: inout String) throws -> Flow {
        switch node {
        case .text(let text): try append(text, to: &out)
        case .output(let expression, _): try append(try evaluate(expression, in: scope).printed, to: &out)
        case .conditional(let branches, let otherwise, _):
            for (condition, body) in branches where try evaluate(condition, in: scope).isTruthy {
                return try execute(body, in: scope, into: &out)
            }
            return try execute(otherwise, in: scope, into: &out)
        case .loop(let loop): try run(loop, in: scope, into: &out)
        case .assign(let target, let expression, _): try assign(try evaluate(expression, in: scope), to: target, in: scope)
        case .assignBlock(let name, let filters, let body, _):
            var captured = ""
            _ = try execute(body, in: scope, into: &captured)
            scope.variables[name] = try applyFilters(filters, to: .string(captured), in: scope)
        case .macro(let macro): scope.variables[macro.name] = .function(makeMacro(macro, in: scope))
        case .filterBlock(let filters, let body, _):
            var captured = ""
            _ = try execute(body, in: scope, into: &captured)
            try append(try applyFilters(filters, to: .string(captured), in: scope).printed, to: &out)
        case .scoped(let assignments, let body, _):
            let inner = JinjaScope(parent: scope)
            for (name, expression) in assignments { inner.variables[name] = try evaluate(expression, in: scope) }
            return try execute(body, in: inner, into: &out)
        case .breakLoop: return .breakLoop
        case .continueLoop: return .continueLoop
        }
        return .normal
    }

    private func applyFilters(_ filters: [(String, JinjaCallArguments)], to value: JinjaValue, in scope: JinjaScope) throws -> JinjaValue {
        try filters.reduce(value) { try applyFilter($1.0, to: $0, try arguments($1.1, in: scope)) }
    }

    func assign(_ value: JinjaValue, to target: JinjaTarget, in scope: JinjaScope) throws {
        switch target {
        case .name(let name): scope.variables[name] = value
        case .tuple(let names):
            let items = try value.iterated()
            guard items.count == names.count else {
                throw JinjaFailure.message(items.count > names.count
                    ? "too many values to unpack (expected \(names.count))"
                    : "not enough values to unpack (expected \(names.count), got \(items.count))")
            }
            for (name, item) in zip(names, items) { scope.variables[name] = item }
        case .attribute(let name, let attribute):
            guard case .namespace(let namespace) = scope.lookup(name) else {
                throw JinjaFailure.message("cannot assign attribute on non-namespace object")
            }
            namespace.attributes[attribute] = value
        }
    }

    /// A for loop: the `if` filter first, then `loop.index`, `first`, `last`, `length`... over what remains.
    private func run(_ loop: JinjaLoop, in scope: JinjaScope, into out: inout String) throws {
        let inner = JinjaScope(parent: scope)
        var items = try evaluate(loop.iterable, in: scope).iterated()
        if let filter = loop.filter {
            items = try items.filter {
                try step()
                try assign($0, to: loop.target, in: inner)
                return try evaluate(filter, in: inner).isTruthy
            }
        }
        if items.isEmpty {
            _ = try execute(loop.otherwise, in: scope, into: &out)
            return
        }
        let count = items.count
        for (i, item) in items.enumerated() {
            try step()
            try assign(item, to: loop.target, in: inner)
            inner.variables["loop"] = .dict(JinjaDictionary([
                ("index", .int(i + 1)), ("index0", .int(i)),
                ("revindex", .int(count - i)), ("revindex0", .int(count - i - 1)),
                ("first", .bool(i == 0)), ("last", .bool(i == count - 1)), ("length", .int(count)),
                ("previtem", i > 0 ? items[i - 1] : .undefined("there is no previous item")),
                ("nextitem", i < count - 1 ? items[i + 1] : .undefined("there is no next item")),
                ("depth", .int(1)), ("depth0", .int(0)),
                ("cycle", .function(JinjaFunction("loop.cycle") { arguments in
                    guard !arguments.positional.isEmpty else { throw JinjaFailure.message("no items for cycling given") }
                    return arguments.positional[i % arguments.positional.count]
                })),
            ]))
            if try execute(loop.body, in: inner, into: &out) == .breakLoop { break }
        }
    }

    /// A macro as a function: arguments by position or name, defaults evaluated per call, the body's
    /// output returned as a string.
    private func makeMacro(_ macro: JinjaMacro, in scope: JinjaScope) -> JinjaFunction {
        JinjaFunction(macro.name) { [unowned self] arguments in
            guard arguments.positional.count <= macro.parameters.count else {
                throw JinjaFailure.message("macro '\(macro.name)' takes not more than \(macro.parameters.count) argument(s)")
            }
            guard self.macroDepth < JinjaLimits.macroDepth else {
                throw JinjaFailure.message("macro '\(macro.name)' recursed more than \(JinjaLimits.macroDepth) calls deep")
            }
            self.macroDepth += 1
            defer { self.macroDepth -= 1 }
            let local = JinjaScope(parent: scope)
            for (i, (name, fallback)) in macro.parameters.enumerated() {
                if i < arguments.positional.count {
                    local.variables[name] = arguments.positional[i]
                } else if let value = arguments.keywords.first(where: { $0.0 == name })?.1 {
                    local.variables[name] = value
                } else {
                    local.variables[name] = try fallback.map { try self.evaluate($0, in: local) } ?? .undefined("'\(name)' is undefined")
                }
            }
            if let unknown = arguments.keywords.first(where: { keyword in !macro.parameters.contains { $0.0 == keyword.0 } }) {
                throw JinjaFailure.message("macro '\(macro.name)' takes no keyword argument '\(unknown.0)'")
            }
            var captured = ""
            _ = try self.execute(macro.body, in: local, into: &captured)
            return .string(captured)
        }
    }
}

extension JinjaNode {
    var line: Int {
        switch self {
        case .text: return 0
        case .output(_, let line), .conditional(_, _, let line), .assign(_, _, let line), .assignBlock(_, _, _, let line),
             .filterBlock(_, _, let line), .scoped(_, _, let line), .breakLoop(let line), .continueLoop(let line):
            return line
        case .loop(let loop): return loop.line
        case .macro(let macro): return macro.line
        }
    }
}
