import Foundation
import LowRankCore
import LowRankText
import Testing

/// Where `tools/make_tokenizer_fixtures.py` writes its references.
enum TokenizerFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/tokenizers").standardizedFileURL.path

    static func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    static func cases(_ name: String) throws -> JSON { try JSON.read(path("\(name).cases.json"), what: "fixture") }

    static func ids(_ json: JSON?) -> [Int32] { json?.array?.compactMap { $0.int.map(Int32.init) } ?? [] }

    /// The tokenizer files next to their cases: a single file, or SmolLM2's model folder.
    static let names = ["smollm2", "llama3_style", "qwen2_style", "gpt2_digits", "sp_legacy",
                        "sp_metaspace_first", "sp_metaspace_always", "sp_metaspace_never"]

    static func load(_ name: String) throws -> Tokenizer {
        try Tokenizer.load(path(name == "smollm2" ? name : "\(name).json"))
    }
}

/// Every string of the fixtures (hostile and random) encodes to the `tokenizers` library's ids, with
/// and without special tokens, and decodes to its text, skipping special tokens or not.
@Suite("Tokenizers against the tokenizers library")
struct TokenizerFixtureTests {
    @Test(arguments: TokenizerFixtures.names)
    func encodesAndDecodesAsTheLibrary(_ name: String) throws {
        let tokenizer = try TokenizerFixtures.load(name)
        let fixture = try TokenizerFixtures.cases(name)
        let cases = try #require(fixture["cases"]?.array)
        #expect(cases.count > 150)
        for c in cases {
            let text = try #require(c["text"]?.string)
            let ids = TokenizerFixtures.ids(c["ids"]), withSpecial = TokenizerFixtures.ids(c["ids_special"])
            #expect(tokenizer.encode(text, addSpecialTokens: false) == ids, "\(name): \(text.debugDescription)")
            #expect(tokenizer.encode(text, addSpecialTokens: true) == withSpecial, "\(name) with special tokens: \(text.debugDescription)")
            #expect(tokenizer.decode(withSpecial) == c["decoded"]?.string, "\(name) decode: \(text.debugDescription)")
            #expect(tokenizer.decode(withSpecial, skipSpecialTokens: true) == c["decoded_skip"]?.string, "\(name) decode skipping: \(text.debugDescription)")
        }
        for c in try #require(fixture["decode_cases"]?.array) {
            let ids = TokenizerFixtures.ids(c["ids"])
            #expect(tokenizer.decode(ids) == c["decoded"]?.string, "\(name) decode \(ids)")
            #expect(tokenizer.decode(ids, skipSpecialTokens: true) == c["decoded_skip"]?.string, "\(name) decode skipping \(ids)")
        }
    }

    /// A model folder's `tokenizer_config.json` gives the BOS/EOS ids; its `add_eos_token` leaves the
    /// file's template as it is, as transformers does when there is a `tokenizer.json`.
    @Test func configNamesBOSAndEOSAsTransformers() throws {
        let tokenizer = try Tokenizer.load(TokenizerFixtures.path("sp_config_bos_eos"))
        let fixture = try TokenizerFixtures.cases("sp_config_bos_eos")
        #expect(tokenizer.bosTokenID == fixture["bos"]?.int.map(Int32.init))
        #expect(tokenizer.eosTokenID == fixture["eos"]?.int.map(Int32.init))
        for c in try #require(fixture["cases"]?.array) {
            let text = try #require(c["text"]?.string)
            #expect(tokenizer.encode(text) == TokenizerFixtures.ids(c["ids_special"]), "\(text.debugDescription)")
        }
    }

    @Test func smolLM2FolderReadsItsSpecialTokens() throws {
        let tokenizer = try TokenizerFixtures.load("smollm2")
        #expect(tokenizer.eosTokenID == tokenizer.id(forToken: "<|im_end|>"))
        #expect(tokenizer.bosTokenID == tokenizer.id(forToken: "<|im_start|>"))
        #expect(tokenizer.token(forID: 2) == "<|im_end|>")
        #expect(tokenizer.specialTokenIDs.contains(0))
        #expect(tokenizer.vocabularySize == 49152)
    }
}
