import LowRankCore
import LowRankText
import Testing

/// Constructs a `tokenizer.json` this loader does not support are refused with an error that names
/// the construct and the field, never encoded some other way.
@Suite("Tokenizer errors")
struct TokenizerErrorTests {
    /// A minimal BPE tokenizer.json with `field` set to `value` (JSON text).
    static func document(_ overrides: [String: String] = [:], model: String? = nil) -> String {
        var fields = ["normalizer": "null", "pre_tokenizer": "null", "post_processor": "null", "decoder": "null",
                      "added_tokens": "[]", "truncation": "null", "padding": "null"]
        fields.merge(overrides) { $1 }
        fields["model"] = model ?? #"{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}"#
        return "{" + fields.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
    }

    static func error(_ text: String) -> LowRankError? {
        do {
            _ = try Tokenizer(json: try JSON.parse(Array(text.utf8)))
            return nil
        } catch let e as LowRankError { return e } catch { return nil }
    }

    @Test func theMinimalDocumentLoadsAndMerges() throws {
        let tokenizer = try Tokenizer(json: try JSON.parse(Array(Self.document().utf8)))
        #expect(tokenizer.encode("abba") == [2, 1, 0])
        #expect(tokenizer.decode([2, 1, 0]) == "ab b a")
    }

    @Test(arguments: [
        (["normalizer": #"{"type":"Lowercase"}"#], "normalizer Lowercase", "normalizer.type"),
        (["pre_tokenizer": #"{"type":"Whitespace"}"#], "pre-tokenizer Whitespace", "pre_tokenizer.type"),
        (["pre_tokenizer": #"{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\w+"},"behavior":"Isolated","invert":false}]}"#],
         "split regex", "pre_tokenizer.pretokenizers[0].pattern"),
        (["decoder": ###"{"type":"WordPiece","prefix":"##","cleanup":true}"###], "decoder WordPiece", "decoder.type"),
        (["post_processor": #"{"type":"RobertaProcessing","sep":["</s>",2],"cls":["<s>",0]}"#], "post-processor RobertaProcessing", "post_processor.type"),
        (["post_processor": #"{"type":"BertProcessing","sep":["[SEP]",2],"cls":["[CLS]",0]}"#], "post-processor BertProcessing", "post_processor.type"),
        (["truncation": #"{"max_length":8}"#], "truncation", "truncation"),
        (["normalizer": #"{"type":"Replace","pattern":{"Regex":" +"},"content":" "}"#], "regex pattern", "normalizer.pattern"),
        (["pre_tokenizer": #"{"type":"Metaspace","replacement":"▁","prepend_scheme":"sometimes"}"#], "prepend_scheme", "pre_tokenizer.prepend_scheme"),
    ] as [([String: String], String, String)])
    func unsupportedConstructsAreNamed(_ overrides: [String: String], _ words: String, _ field: String) throws {
        let e = try #require(Self.error(Self.document(overrides)))
        #expect(e.description.contains(words), "\(e)")
        #expect(e.context.contains { $0.0 == "field" && $0.1 == field }, "\(e)")
    }

    @Test(arguments: [
        (#"{"type":"Unigram","vocab":[["a",0.0]]}"#, "model Unigram", "model.type"),
        (#"{"type":"WordPiece","vocab":{"a":0}}"#, "model WordPiece", "model.type"),
        (#"{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a c"]}"#, "\"c\" is not in the vocabulary", "model.merges[0]"),
        (#"{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]}"#, "\"ab\" is not in the vocabulary", "model.merges[0]"),
        (#"{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b c"]}"#, "two tokens", "model.merges[0]"),
        (#"{"type":"BPE","vocab":{"a":0,"b":2},"merges":[]}"#, "no token has id 1", "model.vocab"),
        (#"{"type":"BPE","vocab":{"a":-1},"merges":[]}"#, "token id", "model.vocab.a"),
        (#"{"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<unk>"}"#, "unk_token", "model.unk_token"),
        (#"{"type":"BPE","vocab":{"a":0},"merges":[],"dropout":0.1}"#, "dropout", "model.dropout"),
        (###"{"type":"BPE","vocab":{"a":0},"merges":[],"continuing_subword_prefix":"##"}"###, "continuing_subword_prefix", "model.continuing_subword_prefix"),
    ])
    func badModelsAreNamed(_ model: String, _ words: String, _ field: String) throws {
        let e = try #require(Self.error(Self.document(model: model)))
        #expect(e.description.contains(words), "\(e)")
        #expect(e.context.contains { $0.0 == "field" && $0.1 == field }, "\(e)")
    }

    @Test func aMissingFileIsNamed() throws {
        #expect(throws: LowRankError.self) { try Tokenizer.load("/nonexistent/tokenizer.json") }
        let e = try #require(Self.error("{\"model\": 3}"))
        #expect(e.description.contains("expected an object") || e.description.contains("vocab"), "\(e)")
    }

    /// Python's json.dumps writes characters beyond the BMP as surrogate pairs; they read as one
    /// character. A lone surrogate is malformed JSON (as serde_json, which writes tokenizer.json, says).
    @Test func surrogatePairEscapesReadAsOneCharacter() throws {
        let json = try JSON.parse(Array(#"{"text":"\ud83d\ude00 x"}"#.utf8))
        #expect(json["text"]?.string == "😀 x")
        #expect(throws: LowRankError.self) { try JSON.parse(Array(#"{"text":"\ud83d x"}"#.utf8)) }
    }
}
