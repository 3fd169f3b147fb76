import LowRank
import LowRankModels
import Testing

/// PEFT's `trainable_token_indices` beyond the fixture comparisons of `PEFTConfigFixtureTests`
/// (the "tokens" case): its config forms, what is refused, a new adapter's start and the merge.
@Suite("Trainable token rows (PEFT's trainable_token_indices)")
struct TrainableTokensTests {
    static func settings(_ indices: JSON) throws -> AdapterSettings {
        try AdapterSettings(json: .object(["peft_type": .string("LORA"), "target_modules": .array([.string("q_proj")]),
                                           "trainable_token_indices": indices]), path: "adapter_config.json")
    }

    static func ids(_ list: [Int]) -> JSON { .array(list.map { .number(Double($0)) }) }

    /// A list, and PEFT's dict form for the embedding, read alike; null is none; the list is written back.
    @Test func readsBothForms() throws {
        #expect(try Self.settings(Self.ids([5, 1, 9])).trainableTokenIndices == [5, 1, 9])
        #expect(try Self.settings(.object(["embed_tokens": Self.ids([5, 1, 9])])).trainableTokenIndices == [5, 1, 9])
        #expect(try Self.settings(.null).trainableTokenIndices == nil && Self.settings(Self.ids([])).trainableTokenIndices == nil)
        let settings = try Self.settings(Self.ids([3]))
        #expect(try AdapterSettings(json: settings.json, path: "written") == settings)
    }

    /// Each malformed value is an error naming the field.
    @Test(arguments: [
        (JSON.array([.string("a")]), "token ids"), (ids([-1]), "token ids"), (ids([4, 4]), "twice"),
        (.object(["lm_head": ids([1])]), "\"lm_head\""), (.object(["embed_tokens": .number(1)]), "list of token ids"), (.string("1"), "got the string"),
    ])
    func refusesMalformedValues(_ value: JSON, _ message: String) throws {
        #expect { try Self.settings(value) } throws: { "\($0)".contains("trainable_token_indices") && "\($0)".contains(message) }
    }

    /// An id outside the vocabulary is refused by name; so, on a model whose LM head is its
    /// embedding (which the rows then replace too), is the LM head also in modules_to_save.
    @Test func refusesWhatTheModelCannotTake() throws {
        let llama = try LlamaFixtures.model(on: CPUBackend.shared)
        #expect { try ModelAdapter(settings: try Self.settings(Self.ids([64])), on: llama, seed: 0) } throws: {
            "\($0)".contains("trainable_token_indices holds 64") && "\($0)".contains("vocabulary of 64")
        }
        let tied = try LlamaFixtures.model("tiny-qwen2-bf16", on: CPUBackend.shared)
        var both = try Self.settings(Self.ids([1]))
        both.modulesToSave = ["lm_head"]
        #expect { try ModelAdapter(settings: both, on: tied, seed: 0) } throws: {
            "\($0)".contains("trainable_token_indices") && "\($0)".contains("tie_word_embeddings") && "\($0)".contains("not both")
        }
    }

    /// A new adapter's rows are the embedding's rows of its ids (PEFT's start), so the model is unchanged.
    @Test func startsAsTheEmbeddingsRows() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let adapter = try ModelAdapter(settings: try Self.settings(Self.ids([9, 2])), on: model, seed: 0)
        let table = try model.weight("model.embed_tokens.weight").floats(), hidden = model.config.hiddenSize
        #expect(try adapter.tokens?.rows.floats() == Array(table[(9 * hidden)..<(10 * hidden)] + table[(2 * hidden)..<(3 * hidden)]))
        #expect(adapter.parameters.last?.name == "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta")
    }

    /// `lowrank merge` writes the trained rows into the embedding (PEFT's merge: index_copy) and leaves the others.
    @Test func mergeWritesTheRows() throws {
        try PEFTConfigFixtures.merging("tokens") { adapter, model, checkpoint in
            let tokens = try #require(adapter.tokens)
            let merged = try checkpoint.tensor("model.embed_tokens.weight", as: .f32, on: CPUBackend.shared).floats()
            var expected = try model.weight("model.embed_tokens.weight").floats()
            let (hidden, rows) = (model.config.hiddenSize, try tokens.rows.floats())
            for (k, id) in tokens.indices.enumerated() {
                expected.replaceSubrange((id * hidden)..<((id + 1) * hidden), with: rows[(k * hidden)..<((k + 1) * hidden)])
            }
            #expect(merged == expected)
        }
    }
}
