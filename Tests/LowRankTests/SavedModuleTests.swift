import LowRank
@testable import LowRankModels
import Testing

/// PEFT's `modules_to_save` beyond the fixture comparisons of `PEFTConfigFixtureTests` (the
/// "modules" and "modules-tied" cases): which names it takes, what is refused, a new adapter's
/// start, saving and loading, the merge and the memory plan.
@Suite("Modules trained in full (PEFT's modules_to_save)")
struct SavedModuleTests {
    static func settings(_ names: JSON, _ more: [String: JSON] = [:]) throws -> AdapterSettings {
        try AdapterSettings(json: .object(["peft_type": .string("LORA"), "target_modules": .array([.string("q_proj")]),
                                           "modules_to_save": names].merging(more) { $1 }), path: "adapter_config.json")
    }

    static func names(_ list: [String]) -> JSON { .array(list.map { .string($0) }) }

    /// Names match as PEFT matches them, by the end of a module's path; null and [] are none; the list is written back.
    @Test func matchesByTheEndOfThePath() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        for (list, paths) in [(["lm_head"], ["lm_head"]), (["embed_tokens", "lm_head"], ["model.embed_tokens", "lm_head"]),
                              (["model.embed_tokens"], ["model.embed_tokens"]), (["head"], ["lm_head"]),
                              (["norm"], ["model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm", "model.layers.1.input_layernorm",
                                          "model.layers.1.post_attention_layernorm", "model.norm"])] {
            let adapter = try ModelAdapter(settings: try Self.settings(Self.names(list)), on: model, seed: 0)
            #expect(adapter.saved.map(\.path) == paths, "\(list)")
        }
        #expect(try Self.settings(.null).modulesToSave == nil && Self.settings(Self.names([])).modulesToSave == nil)
        let settings = try Self.settings(Self.names(["lm_head"]))
        #expect(try AdapterSettings(json: settings.json, path: "written") == settings)
    }

    /// A module other than the embedding, the RMSNorms and the LM head, a name matching nothing, the embedding
    /// both in full and by rows, and PEFT's shared tied copy are refused by name.
    @Test func refusesWhatItCannotTrain() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        for (list, message) in [(["layers"], "matches model.layers"), (["q_proj"], "matches model.layers.0.self_attn.q_proj"),
                                (["wte"], "matches no module")] {
            #expect { try ModelAdapter(settings: try Self.settings(Self.names(list)), on: model, seed: 0) } throws: {
                "\($0)".contains("modules_to_save") && "\($0)".contains(message)
            }
        }
        #expect { try ModelAdapter(settings: try Self.settings(Self.names(["embed_tokens"]), ["trainable_token_indices": .array([.number(3)])]),
                                   on: model, seed: 0) } throws: { "\($0)".contains("not both") }
        #expect { try Self.settings(Self.names(["lm_head"]), ["ensure_weight_tying": .bool(true)]) } throws: { "\($0)".contains("ensure_weight_tying") }
        #expect { try Self.settings(.string("lm_head")) } throws: { "\($0)".contains("modules_to_save") && "\($0)".contains("list of module names") }
    }

    /// A new adapter's copies are the model's weights (PEFT's start), the tied LM head's the
    /// embedding; they follow the factors in `parameters`, under PEFT's names, and save and load back.
    @Test(arguments: ["tiny-llama", "tiny-qwen2-bf16"])
    func startsAsTheModelsWeights(_ name: String) throws {
        let model = try LlamaFixtures.model(name, on: CPUBackend.shared)
        let adapter = try ModelAdapter(settings: try Self.settings(Self.names(["lm_head", "embed_tokens"])), on: model, seed: 0)
        let embedding = try model.weight("model.embed_tokens.weight").floats()
        let head = model.config.tiedEmbeddings ? embedding : try model.weight("lm_head.weight").floats()
        #expect(try adapter.saved.map { try $0.weight.floats() } == [embedding, head])
        #expect(adapter.parameters.suffix(2).map(\.name) == ["base_model.model.model.embed_tokens.weight", "base_model.model.lm_head.weight"])
        try withTemporaryFolder { folder in
            try adapter.save(to: folder)
            let loaded = try ModelAdapter(contentsOf: folder, on: model)
            #expect(try loaded.saved.map { try $0.weight.floats() } == [embedding, head])
        }
    }

    /// `lowrank merge` writes the trained copies in place of the model's; on a model with tied
    /// embeddings, whose merged config ties them again, it refuses.
    @Test func mergeWritesTheCopies() throws {
        try PEFTConfigFixtures.merging("modules") { adapter, _, merged throws in
            for module in adapter.saved {
                #expect(try merged.tensor(module.path + ".weight", as: .f32, on: CPUBackend.shared).floats() == module.weight.floats(), "\(module.path)")
            }
        }
        #expect { try PEFTConfigFixtures.merging("modules-tied") { _, _, _ in } } throws: { "\($0)".contains("tie_word_embeddings") }
    }

    /// Generation reads the copies (and, on a tied model, the LM head the trained token rows):
    /// the KV cache's logits with PEFT's adapter equal those of the model `lowrank merge` wrote with
    /// it in f32 (its embedding and LM head the copies, or its tied table with the rows; q and v
    /// merged), within f32 rounding.
    @Test(arguments: BackendKind.allCases, [("tiny-llama", "modules"), ("tiny-qwen2-bf16", "tokens-tied")])
    func generationUsesTheCopies(_ kind: BackendKind, _ fixture: (model: String, adapter: String)) throws {
        try onBackend(kind) { backend in
            let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path(fixture.model))
            let model = try LlamaModel(checkpoint: checkpoint, on: backend, dtype: .f32)
            let adapter = try ModelAdapter(contentsOf: PEFTConfigFixtures.path(fixture.adapter), on: model)
            try withTemporaryFolder { folder in
                let cpuModel = try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared, dtype: .f32)
                try checkpoint.write(merging: try ModelAdapter(contentsOf: PEFTConfigFixtures.path(fixture.adapter), on: cpuModel), of: cpuModel,
                                     to: folder + "/merged", dtype: .f32)
                let merged = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: folder + "/merged"), on: backend)
                let prompt: [Int32] = [27, 2, 11, 40, 5]
                let ours = try KVCacheDecoder(model: model, adapter: adapter, capacity: 8).logits(after: prompt)
                let reference = try KVCacheDecoder(model: merged, adapter: nil, capacity: 8).logits(after: prompt)
                let plain = try KVCacheDecoder(model: model, adapter: nil, capacity: 8).logits(after: prompt)
                #expect(relativeError(ours, reference.map(Double.init)) <= 1e-5)
                #expect(relativeError(plain, reference.map(Double.init)) > 1e-2, "the adapter changed nothing")
            }
        }
    }

    /// `--dry-run`'s plan counts each copy with its two AdamW moments, all f32.
    @Test func memoryPlanCountsTheCopies() throws {
        let folder = LlamaFixtures.path("tiny-llama")
        let config = try LlamaConfig(contentsOf: folder + "/config.json")
        func plan(_ modules: [String]?) throws -> MemoryPlan {
            var adapter = try AdapterSettings(rank: 4, alpha: 8, baseModel: folder)
            adapter.modulesToSave = modules
            return try MemoryPlan(MemoryPlan.Run(config: config, weightDType: try MemoryPlan.Run.weightDType(folder: folder, dtype: nil), quantize: nil,
                                                 adapter: adapter, batch: 2, sequence: 16, checkpointing: false), on: CPUBackend.shared)
        }
        let copy = config.vocabularySize * config.hiddenSize * DType.f32.byteSize
        #expect(try plan(["embed_tokens", "lm_head"]).adapterAndOptimizerBytes - plan(nil).adapterAndOptimizerBytes == 2 * 3 * copy)
    }
}
