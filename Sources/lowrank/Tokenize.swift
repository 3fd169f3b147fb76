import ArgumentParser
import Foundation
import LowRank
import LowRankText

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text with a Hugging Face tokenizer.json, exactly as the tokenizers library does.",
        discussion: """
        Reads {"text": …} lines and prints one {"ids": […], "decoded": …} line each. With --throughput, --input is \
        plain text: every line is encoded on one thread, a few times, and the speed is printed.
        """)

    @Option(help: "A tokenizer.json file, a model folder holding one (and tokenizer_config.json), or a .gguf file.") var tokenizer: String
    @Option(help: "A .jsonl file of {\"text\": …} lines (plain text with --throughput).") var input: String
    @Flag(help: "Add the post-processor's special tokens (BOS/EOS).") var addSpecialTokens = false
    @Flag(help: "Leave special tokens out of \"decoded\".") var skipSpecialTokens = false
    @Flag(help: "Measure encoding speed on --input's lines instead (tokens and bytes per second, one thread).")
    var throughput = false

    func run() throws {
        let tokenizer = try Tokenizer.load(self.tokenizer)
        let data = try FileIO.read(input)
        // Split on the byte: a String splits by grapheme, and "\r\n" is one.
        let lines = data.split(separator: 0x0A, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if throughput { return measure(tokenizer, lines: lines, bytes: data.count) }
        for (number, line) in lines.enumerated() where !line.allSatisfy(\.isWhitespace) {
            let text: String
            do {
                guard let t = try JSON.parse(Array(line.utf8))["text"]?.string else {
                    throw LowRankError(.fileFormat, "expected an object with a string field \"text\"")
                }
                text = t
            } catch let e as LowRankError {
                throw LowRankError(e.kind, e.message, context: e.context + [("file", input), ("line", "\(number + 1)")])
            }
            let ids = tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
            let decoded = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
            print("{\"ids\":" + JSON.array(ids.map { .number(Double($0)) }).serialized + ",\"decoded\":" + JSON.string(decoded).serialized + "}")
        }
    }

    /// Best of five passes over all lines, the word cache warm after the first (as in the library).
    private func measure(_ tokenizer: Tokenizer, lines: [String], bytes: Int) {
        let clock = ContinuousClock()
        var best: Duration? = nil, tokens = 0
        for _ in 0..<5 {
            var count = 0
            let elapsed = clock.measure {
                for line in lines { count += tokenizer.encode(line, addSpecialTokens: false).count }
            }
            best = min(best ?? elapsed, elapsed)
            tokens = count
        }
        let seconds = best?.inSeconds ?? 0
        print(String(format: "%d tokens from %d bytes in %.3f s: %.0f tokens/s, %.2f MB/s (one thread)",
                     tokens, bytes, seconds, Double(tokens) / seconds, Double(bytes) / seconds / 1e6))
    }
}
