import LowRankCore
import XCTest

@testable import LowRankText

/// Every rendering in Tests/Fixtures/chat_templates/chat_templates.json, made by transformers' own
/// jinja2 environment (tools/make_chat_template_fixtures.py), reproduced byte for byte.
final class ChatTemplateFixtureTests: XCTestCase {
    static let fixturePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/chat_templates/chat_templates.json").standardizedFileURL.path

    private func fixture() throws -> JinjaDictionary {
        guard case .dict(let root) = try JinjaValue(jsonFile: Self.fixturePath) else { throw XCTSkip("fixture is not an object") }
        return root
    }

    private func list(_ value: JinjaValue?) -> [JinjaValue] { if case .list(let l)? = value { l } else { [] } }
    private func dict(_ value: JinjaValue?) -> JinjaDictionary { if case .dict(let d)? = value { d } else { JinjaDictionary() } }
    private func string(_ value: JinjaValue?) -> String? { if case .string(let s)? = value { s } else { nil } }

    /// Compares a render with the fixture's expected text, or its expected error message.
    private func check(_ label: String, expected: JinjaDictionary, _ render: () throws -> String) {
        if let text = string(expected["text"]) {
            XCTAssertEqual(Result { try render() }.description, text, label)
            return
        }
        let error = dict(expected["error"])
        do {
            let text = try render()
            XCTFail("\(label): rendered \(text.debugDescription), expected \(error.pairs)")
        } catch let e as LowRankError {
            XCTAssertEqual(e.message, string(error["message"]), label)
            let raised = e.context.contains { $0 == ("raised by", "raise_exception") }
            XCTAssertEqual(raised, string(error["type"]) == "TemplateError", "\(label): raise_exception marked")
        } catch {
            XCTFail("\(label): \(error)")
        }
    }

    func testModelTemplatesMatchTransformers() throws {
        let root = try fixture()
        let extra = dict(root["extra_context"])
        var templates: [String: (ChatTemplate, String?, String?)] = [:]
        for t in list(root["templates"]) {
            let d = dict(t)
            templates[string(d["name"])!] = (try ChatTemplate(source: string(d["template"])!, name: string(d["name"])!),
                                             string(d["bos_token"]), string(d["eos_token"]))
        }
        var conversations: [String: JinjaDictionary] = [:]
        for c in list(root["conversations"]) { conversations[string(dict(c)["name"])!] = dict(c) }
        let cases = list(root["cases"])
        XCTAssertGreaterThan(cases.count, 100)
        for c in cases {
            let d = dict(c)
            let (template, bos, eos) = templates[string(d["template"])!]!
            let conversation = conversations[string(d["conversation"])!]!
            let generationPrompt = d["add_generation_prompt"]!.isTruthy
            check("\(string(d["template"])!) / \(string(d["conversation"])!) / \(generationPrompt)", expected: d) {
                try template.render(messages: list(conversation["messages"]), addGenerationPrompt: generationPrompt,
                                    bosToken: bos, eosToken: eos, tools: conversation["tools"], extra: extra)
            }
        }
    }

    /// transformers passes `tools` and `documents` as None when not given (defined, and none), which
    /// templates test with `tools is not none`; they read as undefined here before.
    func testToolsAndDocumentsAreNoneWhenNotGiven() throws {
        let template = try ChatTemplate(source: "{{ tools is none }}|{{ documents is defined }}", name: "none")
        XCTAssertEqual(try template.render(messages: []), "True|True")
    }

    func testSnippetsMatchJinja2() throws {
        let snippets = list(try fixture()["snippets"])
        XCTAssertGreaterThan(snippets.count, 25)
        for s in snippets {
            let d = dict(s)
            check(string(d["name"])!, expected: d) {
                try JinjaTemplate(source: string(d["template"])!, name: string(d["name"])!).render(dict(d["context"]))
            }
        }
    }
}

extension Result where Success == String, Failure == any Error {
    /// The text, or the error written out, so a mismatch shows in the assertion message.
    var description: String {
        switch self {
        case .success(let s): return s
        case .failure(let e): return "error: \(e)"
        }
    }
}
