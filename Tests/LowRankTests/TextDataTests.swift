import Foundation
import LowRank
import LowRankModels
import LowRankText
import Testing

/// `Tests/Fixtures/text_data/smollm2.json`, made by `tools/make_text_data_fixture.py`: JSONL lines turned
/// into ids and labels by transformers' tokenizer and `apply_chat_template` under TRL's SFTTrainer rules.
enum TextDataFixture {
    static let root = GoldenCases.packageRoot.appendingPathComponent("Tests/Fixtures").path
    static let tokenizerFolder = root + "/tokenizers/smollm2"
    static let expected: JSON = try! JSON.parse(FileIO.read(root + "/text_data/smollm2.json"))
    static let vocabularySize = 49152

    /// A model folder with SmolLM2's tokenizer and, when `templated`, its chat template in
    /// tokenizer_config.json, as a model folder holds them.
    static func withModelFolder(templated: Bool, _ body: (String) throws -> Void) throws {
        guard templated else { return try body(tokenizerFolder) }
        try withTemporaryFolder { folder in
            try FileManager.default.copyItem(atPath: tokenizerFolder + "/tokenizer.json", toPath: folder + "/tokenizer.json")
            guard case .object(var config) = try JSON.read(tokenizerFolder + "/tokenizer_config.json", what: "tokenizer_config.json") else {
                Issue.record("tokenizer_config.json is not an object")
                return
            }
            config["chat_template"] = expected["chat_template"]
            try FileIO.writeAtomically(folder + "/tokenizer_config.json", text: JSON.object(config).serialized)
            try body(folder)
        }
    }

    static func parse(_ text: String, format: TextFormat?, path: String = "data.jsonl") throws -> (rows: [[Int32]], labels: [[Int32]]?) {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { try TokenDataset.parseJSONLines($0, path: path, text: { format }) }
    }
}

@Suite("Text, prompt/completion and messages data against transformers + TRL")
struct TextDataTests {
    /// Every fixture line's ids and labels equal what TRL's rules give with transformers' tokenizer and chat template.
    @Test func linesMatchTransformers() throws {
        let cases = TextDataFixture.expected["cases"]!.array!
        #expect(cases.count == 24)
        for templated in [false, true] {
            try TextDataFixture.withModelFolder(templated: templated) { folder in
                for trainOnPrompt in [false, true] {
                    let format = try #require(try TextFormat(modelDirectory: folder, trainOnPrompt: trainOnPrompt))
                    #expect((format.chatTemplate != nil) == templated)
                    for c in cases where c["chat_template"] == .bool(templated) && c["train_on_prompt"] == .bool(trainOnPrompt) {
                        let line = c["line"]!.string!
                        let (rows, labels) = try TextDataFixture.parse(line, format: format)
                        let ids = c["input_ids"]!.array!.map { Int32($0.int!) }, expectedLabels = c["labels"]!.array!.map { Int32($0.int!) }
                        #expect(rows == [ids], "\(line), template \(templated)")
                        #expect(labels == [expectedLabels], "\(line), template \(templated), train on prompt \(trainOnPrompt)")
                    }
                }
            }
        }
    }

    /// The prompt's labels reach the batch as ignored positions: only completion tokens are predicted.
    @Test func batchPredictsOnlyTrainedLabels() throws {
        let ids: [Int32] = [5, 6, 7, 8, 9], labels: [Int32] = [-100, -100, -100, 8, 9]
        let data = try TokenDataset(rows: [ids, [1, 2, 3]], labels: [labels, [1, 2, 3]], vocabularySize: 16)
        let batch = data.batch([0, 1])
        #expect(batch.labels == [-100, -100, 8, 9, -100, 2, 3, -100, -100, -100])
        #expect(batch.predictedTokens == 4 && data.predictedTokens == 4)
        // A window holding only prompt predicts nothing and is left out.
        let windows = try TokenDataset(rows: [ids], labels: [labels], vocabularySize: 16, maxLength: 2)
        #expect(windows.rows == [[7, 8]])
        #expect(windows.labels == [[-100, 8]])
    }

    /// The tiny Llama's loss with a prompt of each row masked (−100) equals transformers' in float64
    /// (`tools/make_masked_loss_fixture.py`), within the bound of `LlamaFixtureTests`' unmasked losses (1e-4 relative).
    @Test(arguments: BackendKind.allCases)
    func maskedLossMatchesTransformers(_ kind: BackendKind) throws {
        let expected: JSON = try JSON.parse(FileIO.read(TextDataFixture.root + "/text_data/masked_loss.json"))
        let labels = expected["labels"]!.array!.map { $0.array!.map { Int32($0.int!) } }
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let data = try TokenDataset(rows: try LlamaFixtures.data(model).rows, labels: labels, vocabularySize: model.config.vocabularySize)
            let result = try Evaluation(model: model, adapter: nil, data: data, batchSize: 4)
            let want = expected["loss"]!.number!
            print("masked loss on \(kind): \(result.loss) vs transformers \(want), relative \(abs(result.loss - want) / want)")
            #expect(result.tokens == expected["tokens"]!.int!)
            #expect(abs(result.loss - want) / want < 1e-4)
        }
    }

    /// `{"input_ids", "labels"}` lines keep their labels; lines without labels train on every token.
    @Test func inputIDsWithLabels() throws {
        let (rows, labels) = try TextDataFixture.parse("{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [4, 5], \"labels\": [-100, 5]}\n", format: nil)
        #expect(rows == [[1, 2, 3], [4, 5]])
        #expect(labels == [[1, 2, 3], [-100, 5]])
        #expect(try TextDataFixture.parse("{\"input_ids\": [1, 2, 3]}", format: nil).labels == nil)
        // Token data never loads the tokenizer, so a model folder's unreadable tokenizer.json does not stop it.
        let bytes = Array("{\"input_ids\": [1, 2]}".utf8)
        let parsed = try bytes.withUnsafeBytes { try TokenDataset.parseJSONLines($0, path: "ids.jsonl", text: { throw LowRankError(.fileFormat, "unreadable") }) }
        #expect(parsed.rows == [[1, 2]])
    }

    /// Each bad line is an error naming the file and line.
    @Test func badLinesAreNamed() throws {
        let plain = try #require(try TextFormat(modelDirectory: TextDataFixture.tokenizerFolder))
        let cases: [(String, TextFormat?, String)] = [
            ("{\"input_ids\": [1]}\n\n{\"question\": \"?\"}", plain, "none of"),
            ("{\"text\": \"hi\"}", nil, "needs a tokenizer"),
            ("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}", plain, "chat template"),
            ("{\"prompt\": \"hi\"}", plain, "needs a \"completion\""),
            ("{\"text\": 3}", plain, "must be a string"),
            ("{\"input_ids\": [1, 2], \"labels\": [1]}", nil, "must match"),
            ("{\"input_ids\": [1, 2.5]}", nil, "is not a token id"),
        ]
        for (text, format, message) in cases {
            let error = try #require(throws: LowRankError.self) { try TextDataFixture.parse(text, format: format, path: "bad.jsonl") }
            let line = text.split(separator: "\n", omittingEmptySubsequences: false).count
            #expect(error.message.contains(message), "\(error)")
            #expect(error.context.contains { $0 == ("line", "\(line)") } && error.context.contains { $0 == ("file", "bad.jsonl") }, "\(error)")
        }
        try TextDataFixture.withModelFolder(templated: true) { folder in
            let chat = try #require(try TextFormat(modelDirectory: folder))
            for (messages, message) in [("[{\"role\": \"assistant\", \"content\": \"yo\"}]", "no user turn"),
                                        ("[{\"role\": \"user\", \"content\": \"hi\"}]", "ends with a user turn"), ("3", "list of")] {
                let error = try #require(throws: LowRankError.self) { try TextDataFixture.parse("{\"messages\": \(messages)}", format: chat) }
                #expect(error.message.contains(message), "\(error)")
            }
        }
        let mismatched = try #require(throws: LowRankError.self) { try TokenDataset(rows: [[1, 2], [3, 4]], labels: [[1, 2], [3]], vocabularySize: 16) }
        #expect(mismatched.context.contains { $0 == ("row", "1") })
        #expect(throws: LowRankError.self) { try TokenDataset(rows: [[1, 2]], labels: [], vocabularySize: 16) }
        let outside = try #require(throws: LowRankError.self) {
            try TokenDataset(rows: [[1, 2]], labels: [[1, 99]], vocabularySize: 16)
        }
        #expect(outside.message.contains("label 99"))
    }
}
