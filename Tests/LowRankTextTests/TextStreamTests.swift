import Foundation
import LowRankText
import Testing

/// Streaming the text of generated ids: SmolLM2's byte-level tokenizer splits emoji and CJK
/// characters into several tokens; the stream holds a partial character back and prints each
/// character whole, and what it prints is the decoding of all the ids.
struct TextStreamTests {
    @Test func multiByteCharactersAreNeverSplit() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/tokenizers/smollm2").standardizedFileURL.path
        let tokenizer = try Tokenizer.load(path)
        let text = "Hi 🙂 — 世界! 👩‍💻<|im_end|>"
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        var stream = TextStream(tokenizer: tokenizer)
        var pieces: [String] = []
        for id in ids { pieces.append(stream.append(id)) }
        pieces.append(stream.finish())
        #expect(pieces.contains(""), "some token ends inside a character (the test needs one)")
        #expect(!pieces.joined().unicodeScalars.contains("\u{FFFD}"))
        #expect(pieces.joined() == tokenizer.decode(ids, skipSpecialTokens: true))
        #expect(pieces.joined() == "Hi 🙂 — 世界! 👩‍💻")
    }
}
