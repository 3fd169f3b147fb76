import Foundation
import LowRankCore
import LowRankText
import Testing

/// Tokenizers built from GGUF metadata against transformers' GGUF loader
/// (`tools/make_gguf_fixtures.py`: byte-level BPE with merges and Llama 3's split, SentencePiece BPE
/// with scores and no merges), and SmolLM2's real file when LOWRANK_SMOLLM2_GGUF names it.
@Suite("GGUF tokenizers against transformers' GGUF loader")
struct GGUFTokenizerTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/gguf").standardizedFileURL.path

    @Test(arguments: ["tokenizer.gpt2.gguf", "tokenizer.llama.gguf"])
    func idsMatchTransformers(_ name: String) throws {
        let expected = try JSON.read(Self.folder + "/expected.json", what: "fixture")["tokenizers"]![name]!
        let gguf = try #require(try GGUFTokenizer(try GGUFFile(path: Self.folder + "/" + name)))
        #expect(gguf.bosToken == expected["bos_token"]?.string && gguf.eosToken == expected["eos_token"]?.string)
        let strings = expected["strings"]!.array!.map { $0.string! }
        for (key, special) in [("ids", false), ("ids_with_special_tokens", true)] {
            let all = expected[key]!.array!
            var mismatches = 0
            for (text, ids) in zip(strings, all) {
                let want = TokenizerFixtures.ids(ids)
                let got = gguf.tokenizer.encode(text, addSpecialTokens: special)
                if got != want, mismatches < 5 { Issue.record("\(name) \(key) \(text.debugDescription): \(got) vs transformers \(want)") }
                if got != want { mismatches += 1 }
            }
            #expect(mismatches == 0, "\(name) \(key): \(mismatches) of \(strings.count) strings differ")
        }
    }

    /// SmolLM2-135M-Instruct's tokenizer from its GGUF metadata encodes every string of
    /// `smollm2.cases.json` (which transformers' GGUF loader made from the same file) to the same ids.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["LOWRANK_SMOLLM2_GGUF"] != nil, "LOWRANK_SMOLLM2_GGUF names no file"))
    func smolLM2MatchesItsFixture() throws {
        let path = ProcessInfo.processInfo.environment["LOWRANK_SMOLLM2_GGUF"]!
        let gguf = try #require(try GGUFTokenizer(try GGUFFile(path: path)))
        #expect(gguf.bosToken == "<|im_start|>" && gguf.eosToken == "<|im_end|>")
        for c in try TokenizerFixtures.cases("smollm2")["cases"]!.array! {
            let text = c["text"]!.string!
            #expect(gguf.tokenizer.encode(text, addSpecialTokens: false) == TokenizerFixtures.ids(c["ids"]), "\(text.debugDescription)")
            #expect(gguf.tokenizer.encode(text, addSpecialTokens: true) == TokenizerFixtures.ids(c["ids_special"]), "\(text.debugDescription)")
        }
    }
}
