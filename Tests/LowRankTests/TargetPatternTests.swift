import Foundation
import LowRank
@testable import LowRankModels
import Testing

/// One-string `target_modules` as PEFT applies them (`re.fullmatch`), in bounded time.
@Suite("target_modules patterns")
struct TargetPatternTests {
    static let fixture = try! JSON.parse(FileIO.read(fixturePath("target_patterns.json")))

    /// Every pattern of `tools/make_target_pattern_fixture.py` (PEFT users' and Unsloth's patterns,
    /// lookarounds, classes, counted repeats) matches exactly the paths Python's `re.fullmatch` did.
    @Test func agreesWithPythonsFullMatch() throws {
        let paths = Self.fixture["paths"]!.array!.map { $0.string! }
        for c in Self.fixture["cases"]!.array! {
            let source = c["pattern"]!.string!
            let expected = Set(c["matches"]!.array!.map { $0.string! })
            let pattern = try TargetPattern(source)
            for path in paths {
                #expect(pattern.fullMatch(path) == expected.contains(path), "\(source) on \(path.debugDescription)")
            }
        }
    }

    /// Patterns that make a backtracking engine (Python's, and Swift's Regex that matched them
    /// before) take exponential time answer at once; a path of 60 characters would be 2^60 tries.
    @Test func catastrophicPatternsAnswerInBoundedTime() throws {
        let path = "model.layers.10.self_attn.q_proj.model.layers.10.self_attn.q"
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            for source in ["(.*)*X", "(a|a)*b", "(.*.*)*\\.X", "((.*)*)*(X)", "(.*a){12}X", "(?:(?:.*)+)+(?=X)"] {
                let pattern = try TargetPattern(source)
                #expect(!pattern.fullMatch(path), "\(source)")
                #expect(!pattern.fullMatch(String(repeating: "a", count: 60)), "\(source)")
            }
            #expect(try TargetPattern("(.*)*X").fullMatch(path + "X"))
        }
        #expect(elapsed < .seconds(2), "took \(elapsed)")
        // Through the settings, as adapter_config.json's target_modules reaches them.
        let settings = try AdapterSettings(targets: .pattern("(.*)*X"))
        #expect(!settings.targets(path))
    }

    /// What would need backtracking or changes the matching rules is refused, naming the field;
    /// so is what Python itself refuses, and a program too large once repeats are expanded.
    @Test func unsupportedSyntaxIsRefused() {
        let cases = [("(q)_proj\\1", "backreferences"), ("(?P<n>q)(?P=n)", "backreferences"), ("(?i)Q_PROJ", "inline flags"),
                     ("a*+", "possessive"), ("(q_proj", "missing )"), ("q_proj)", "unbalanced"), ("*q", "nothing to repeat"),
                     ("a**", "multiple repeat"), ("[a-", "unterminated character set"), ("\\q", "bad escape"),
                     ("a{5000}", "above 4096"), ("(a{1000}){1000}", "4096 instructions"), ("[z-a]", "bad character range")]
        for (source, words) in cases {
            #expect { try AdapterSettings(targets: .pattern(source)) } throws: { error in
                let text = "\(error)"
                return text.contains(words) && text.contains("target_modules")
            }
        }
    }
}
