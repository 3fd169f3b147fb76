import LowRankCore

/// A Jinja template parsed once and rendered many times, as transformers' jinja2 environment renders
/// chat templates (`trim_blocks`, `lstrip_blocks`, the loop controls, the sandbox's immutability).
/// Errors are `LowRankError`s naming the template and the line; constructs outside the subset are
/// refused by name (kind `.unsupported`).
public struct JinjaTemplate {
    public let name: String
    let nodes: [JinjaNode]

    public init(source: String, name: String = "template") throws {
        self.name = name
        do {
            nodes = try JinjaParser.parse(source)
        } catch let failure as JinjaFailure {
            switch failure {
            case .unsupported(let m): throw LowRankError(.unsupported, m, context: [("template", name)])
            case .message(let m), .raised(let m): throw LowRankError(.fileFormat, "template syntax error: \(m)", context: [("template", name)])
            }
        }
    }

    /// Renders with `context` as the template's variables.
    public func render(_ context: JinjaDictionary) throws -> String {
        let renderer = JinjaRenderer()
        var variables: [String: JinjaValue] = [:]
        for (key, value) in context.pairs { variables[key] = value }
        let top = JinjaScope(parent: JinjaScope(parent: nil, variables))
        var out = ""
        do {
            _ = try renderer.execute(nodes, in: top, into: &out)
        } catch let located as JinjaLocatedFailure {
            throw LowRankError.jinja(located.failure, template: name, line: located.line)
        }
        return out
    }
}
