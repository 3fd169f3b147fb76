import LowRankCore
import XCTest

@testable import LowRankText

/// Bad and hostile templates: a `LowRankError` naming the construct and its line, never a trap or a hang.
final class ChatTemplateErrorTests: XCTestCase {
    private func renderError(_ source: String, _ context: JinjaDictionary = JinjaDictionary()) -> LowRankError? {
        do {
            _ = try JinjaTemplate(source: source, name: "t").render(context)
            return nil
        } catch {
            return error as? LowRankError
        }
    }

    func testUnsupportedConstructsAreNamedWithTheirLine() throws {
        let include = try XCTUnwrap(renderError("a\n{% include 'other.jinja' %}"))
        XCTAssertEqual(include.kind, .unsupported)
        XCTAssertTrue(include.message.contains("include") && include.message.contains("line 2"), include.description)
        let filter = try XCTUnwrap(renderError("x\n\n{{ 'a' | wordwrap(3) }}"))
        XCTAssertEqual(filter.kind, .unsupported)
        XCTAssertTrue(filter.message.contains("wordwrap"), filter.description)
        XCTAssertTrue(filter.context.contains { $0 == ("line", "3") }, filter.description)
        let recursive = try XCTUnwrap(renderError("{% for x in y recursive %}{% endfor %}"))
        XCTAssertTrue(recursive.message.contains("recursive"), recursive.description)
        let percent = try XCTUnwrap(renderError("{{ '%s' % 1 }}"))
        XCTAssertEqual(percent.kind, .unsupported)
    }

    func testSyntaxErrorsAreErrors() {
        for source in ["{{ x", "{% if x %}", "{% endif %}", "{{ (1 }}", "{# open", "{% frobnicate %}", "{{ 'unterminated }}", "{% for %}"] {
            XCTAssertNotNil(renderError(source), source)
        }
    }

    func testHostileTemplatesStopWithinBounds() {
        let cases = [
            "{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}",
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
            "{{ " + String(repeating: "(", count: 10_000) + "1" + String(repeating: ")", count: 10_000) + " }}",
            "{{ " + String(repeating: "[", count: 10_000) + " }}",
            String(repeating: "{% if true %}", count: 5_000),
            "{{ " + String(repeating: "not ", count: 10_000) + "x }}",
            "{{ " + String(repeating: "-", count: 10_000) + "1 }}",
            "{{ 'a' * 100000000000 }}",
            "{{ range(100000000000) }}",
            "{{ 2 ** 100 }}",
            "{{ 9223372036854775807 + 1 }}",
            "{{ 99999999999999999999 }}",
            "{{ 1 // 0 }}",
            "{% set s = 'aaaaaaaaaaaaaaaa' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}",
        ]
        for source in cases {
            let started = ContinuousClock.now
            XCTAssertNotNil(renderError(source), String(source.prefix(60)))
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(60), String(source.prefix(60)))
        }
    }

    func testUndefinedAttributeOfUndefinedIsAnError() throws {
        let error = try XCTUnwrap(renderError("{{ message.content }}"))
        XCTAssertEqual(error.message, "'message' is undefined")
        XCTAssertEqual(try JinjaTemplate(source: "[{{ m.missing }}]").render(JinjaDictionary([("m", .dict(JinjaDictionary()))])), "[]")
    }

    func testModelFolderTemplates() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("chat-template-\(getpid())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let config = """
            {"chat_template": [{"name": "default", "template": "{{ bos_token }}D{{ messages | length }}"},
                               {"name": "tool_use", "template": "T{{ eos_token }}"}],
             "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>"}
            """
        try config.write(toFile: folder + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        let loaded = try ModelChatTemplate(modelDirectory: folder)
        XCTAssertEqual(loaded.bosToken, "<s>")
        XCTAssertEqual(loaded.eosToken, "</s>")
        XCTAssertEqual(try loaded.template.render(messages: [.dict(JinjaDictionary())], bosToken: loaded.bosToken), "<s>D1")
        let tools = try ModelChatTemplate(modelDirectory: folder, templateName: "tool_use")
        XCTAssertEqual(try tools.template.render(messages: [], eosToken: tools.eosToken), "T</s>")
        XCTAssertThrowsError(try ModelChatTemplate(modelDirectory: folder, templateName: "nope"))
        try "J{{ messages[0].role }}\n".write(toFile: folder + "/chat_template.jinja", atomically: true, encoding: .utf8)
        let jinja = try ModelChatTemplate(modelDirectory: folder)
        XCTAssertEqual(try jinja.template.render(messages: [.dict(JinjaDictionary([("role", .string("user"))]))]), "Juser")
        try "{\"chat_template\": 5".write(toFile: folder + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelChatTemplate(modelDirectory: folder, templateName: "default")) { error in
            XCTAssertTrue((error as? LowRankError)?.context.contains { $0.0 == "file" } == true, "\(error)")
        }
    }
}
