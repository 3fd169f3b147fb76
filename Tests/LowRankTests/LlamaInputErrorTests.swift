import Foundation
import LowRank
import LowRankModels
import Testing

/// Bad input is a clear error naming the file and the tensor or field, raised before any training.
@Suite("Llama-family inputs: clear errors for bad files")
struct LlamaInputErrorTests {
    /// Copies the tiny Llama fixture into a temporary folder, lets `edit` break it, and expects
    /// opening it to fail with a message containing every one of `words`.
    func expectBrokenCheckpoint(_ words: [String], edit: (String) throws -> Void) throws {
        try withTemporaryFolder { folder in
            let model = folder + "/model"
            try FileManager.default.copyItem(atPath: LlamaFixtures.path("tiny-llama"), toPath: model)
            try edit(model)
            #expect { try HuggingFaceCheckpoint(folder: model) } throws: { error in
                words.allSatisfy { "\(error)".contains($0) }
            }
        }
    }

    func writeConfig(_ folder: String, _ change: (inout [String: JSON]) -> Void) throws {
        var config = try JSON.parse(FileIO.read(folder + "/config.json")).object!
        change(&config)
        try FileIO.writeAtomically(folder + "/config.json", text: JSON.object(config).serialized)
    }

    @Test func missingConfig() throws {
        try expectBrokenCheckpoint(["no config.json", "config.json"]) { try FileManager.default.removeItem(atPath: $0 + "/config.json") }
    }

    @Test func malformedConfig() throws {
        try expectBrokenCheckpoint(["malformed JSON", "config.json"]) { folder in
            try FileIO.writeAtomically(folder + "/config.json", text: "{\"model_type\": \"llama\",")
        }
        try expectBrokenCheckpoint(["hidden_size", "missing", "config.json"]) { try writeConfig($0) { $0["hidden_size"] = nil } }
        try expectBrokenCheckpoint(["model_type", "gpt2"]) { try writeConfig($0) { $0["model_type"] = .string("gpt2") } }
        try expectBrokenCheckpoint(["rope_type", "yarn"]) { try writeConfig($0) { $0["rope_parameters"] = .object(["rope_type": .string("yarn"), "factor": .number(2)]) } }
    }

    /// A config that disagrees with the weights names the tensor and its file.
    @Test func tensorsDisagreeingWithTheConfig() throws {
        try expectBrokenCheckpoint(["model.layers.0.mlp.gate_proj.weight", "[64, 32]", "[96, 32]", "model.safetensors"]) {
            try writeConfig($0) { $0["intermediate_size"] = .number(96) }
        }
        try expectBrokenCheckpoint(["model.layers.2.input_layernorm.weight"]) { try writeConfig($0) { $0["num_hidden_layers"] = .number(3) } }
        try expectBrokenCheckpoint(["truncated", "model.safetensors"]) { folder in
            let bytes = try FileIO.read(folder + "/model.safetensors")
            try Array(bytes.prefix(bytes.count - 100)).withUnsafeBytes { try FileIO.writeAtomically(folder + "/model.safetensors", $0) }
        }
    }

    /// Older configs keep `rope_theta` and `rope_scaling` apart; both generations read alike.
    @Test func olderRoPEFields() throws {
        var json = try JSON.parse(FileIO.read(LlamaFixtures.path("tiny-llama/config.json"))).object!
        let current = try LlamaConfig(json: .object(json))
        let rope = json.removeValue(forKey: "rope_parameters")!.object!
        json["rope_theta"] = rope["rope_theta"]
        json["rope_scaling"] = .object(rope.filter { $0.key != "rope_theta" })
        let older = try LlamaConfig(json: .object(json))
        #expect(older == current)
        #expect(try LlamaConfig(json: current.json) == current)
    }

    @Test func tokenIDsOutsideTheVocabulary() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/data.jsonl"
            try FileIO.writeAtomically(path, text: "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [4, 64, 5]}\n")
            #expect { try TokenDataset(contentsOf: path, vocabularySize: 64) } throws: { error in
                let text = "\(error)"
                return text.contains("64") && text.contains("row 1, position 1") && text.contains(path)
            }
            try FileIO.writeAtomically(path, text: "{\"input_ids\": [1, 2, 3]}\n{\"ids\": [4]}\n")
            #expect { try TokenDataset(contentsOf: path, vocabularySize: 64) } throws: { "\($0)".contains("line 2") }
        }
    }

    /// A caller's batch with transformers-style labels (unshifted, −100 on right padding) is the
    /// batch the dataset builds from the same rows; bad ids, labels and counts are errors naming them.
    @Test func callerBatchesWithLabels() throws {
        let rows: [[Int32]] = [[5, 6, 7, 8], [9, 10]]
        let fromRows = TokenBatch(rows)
        let ids: [Int32] = [5, 6, 7, 8, 9, 10, 0, 0]
        let labels: [Int32] = [5, 6, 7, 8, 9, 10, -100, -100]
        let fromCaller = try TokenBatch(inputIDs: ids, labels: labels, rows: 2, sequence: 4, vocabularySize: 16)
        #expect(fromCaller.inputIDs == fromRows.inputIDs && fromCaller.labels == fromRows.labels)
        #expect(fromCaller.predictedTokens == fromRows.predictedTokens)
        let unlabelled = try TokenBatch(inputIDs: ids, rows: 2, sequence: 4, vocabularySize: 16)
        #expect(unlabelled.labels == [6, 7, 8, -100, 10, 0, 0, -100] && unlabelled.predictedTokens == 6)

        #expect { try TokenBatch(inputIDs: ids, rows: 2, sequence: 4, vocabularySize: 10) } throws: {
            "\($0)".contains("token id 10 at row 1, position 1")
        }
        #expect { try TokenBatch(inputIDs: ids, labels: [Int32](repeating: -1, count: 8), rows: 2, sequence: 4, vocabularySize: 16) } throws: {
            "\($0)".contains("label -1 at row 0, position 0")
        }
        #expect { try TokenBatch(inputIDs: ids, rows: 3, sequence: 4, vocabularySize: 16) } throws: { "\($0)".contains("8 token ids") }
        #expect { try TokenBatch(inputIDs: ids, labels: [1, 2], rows: 2, sequence: 4, vocabularySize: 16) } throws: { "\($0)".contains("same shape") }
        #expect { try TokenBatch(inputIDs: ids, labels: [Int32](repeating: -100, count: 8), rows: 2, sequence: 4, vocabularySize: 16) } throws: {
            "\($0)".contains("predicts nothing")
        }
    }

    /// The Qwen2 adapter targets a down_proj of another width: the error names the tensor and file.
    @Test func adapterForAnotherArchitecture() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        #expect { try ModelAdapter(contentsOf: LlamaFixtures.path("qwen2-lora"), on: model) } throws: { error in
            let text = "\(error)"
            return text.contains("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight") && text.contains("another architecture")
                && text.contains("adapter_model.safetensors")
        }
    }

    /// An output folder that cannot be created fails when the trainer is made, before any step.
    @Test func unwritableOutputFolder() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        try withTemporaryFolder { folder in
            let blocker = folder + "/file"
            try FileIO.writeAtomically(blocker, text: "x")
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 2, alpha: 4), on: model, seed: 0)
            #expect {
                try Trainer(model: model, adapter: adapter, data: try LlamaFixtures.data(model), settings: TrainingSettings(), output: blocker + "/adapter")
            } throws: { "\($0)".contains(blocker) }
        }
    }
}
