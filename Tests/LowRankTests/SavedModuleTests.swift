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

    /// A module other than the embedding, the RMSNorms, the projections and the LM head (a container), a name matching nothing, and the embedding
    /// both in full and by rows are refused by name.
    @Test func refusesWhatItCannotTrain() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        for (list, message) in [(["layers"], "matches model.layers"), (["self_attn"], "matches model.layers.0.self_attn"),
                                (["wte"], "matches no module")] {
            #expect { try ModelAdapter(settings: try Self.settings(Self.names(list)), on: model, seed: 0) } throws: {
                "\($0)".contains("modules_to_save") && "\($0)".contains(message)
            }
        }
        #expect { try ModelAdapter(settings: try Self.settings(Self.names(["embed_tokens"]), ["trainable_token_indices": .array([.number(3)])]),
                                   on: model, seed: 0) } throws: { "\($0)".contains("not both") }
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

    /// With ensure_weight_tying on a tied model, the embedding or the LM head named is one copy, the
    /// embedding's, that is the head too (PEFT's `_add_modules_to_save_to_tie`), saved under both
    /// names and restored from them; on an untied model the field changes nothing, as in PEFT.
    @Test func ensureWeightTyingSharesOneCopy() throws {
        let tied = try LlamaFixtures.model("tiny-qwen2-bf16", on: CPUBackend.shared)
        let untied = try LlamaFixtures.model(on: CPUBackend.shared)
        let ensure: [String: JSON] = ["ensure_weight_tying": .bool(true)]
        for list in [["lm_head"], ["embed_tokens"], ["lm_head", "embed_tokens"]] {
            let adapter = try ModelAdapter(settings: try Self.settings(Self.names(list), ensure), on: tied, seed: 0)
            #expect(adapter.saved.map(\.path) == ["model.embed_tokens"] && adapter.saved[0].tiedHead, "\(list)")
            #expect(adapter.parameters.filter { $0.name.contains("lm_head") }.isEmpty, "one copy, one set of AdamW moments")
        }
        let apart = try ModelAdapter(settings: try Self.settings(Self.names(["lm_head", "embed_tokens"]), ensure), on: untied, seed: 0)
        #expect(apart.saved.map(\.path) == ["model.embed_tokens", "lm_head"] && !apart.saved.contains(where: \.tiedHead))
        let adapter = try ModelAdapter(settings: try Self.settings(Self.names(["lm_head"]), ensure), on: tied, seed: 0)
        try withTemporaryFolder { folder in
            try adapter.save(to: folder)
            let file = try SafetensorsFile(path: folder + "/" + ModelAdapter.weightsName)
            let embedding = try file.floats("base_model.model.model.embed_tokens.weight")
            #expect(try file.floats("base_model.model.lm_head.weight") == embedding)
            #expect(try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName).ensureWeightTying)
            try adapter.saved[0].weight.assign([Float](repeating: 0, count: embedding.count))
            try adapter.restore(from: folder)
            #expect(try adapter.saved[0].weight.floats() == embedding)
            // Two different tables under the one copy's names: PEFT would keep whichever it loaded last.
            var tensors = try file.names.map { (name: $0, tensor: try Tensor(try file.floats($0), shape: try file.entry($0).shape, on: CPUBackend.shared)) }
            let head = tensors.firstIndex { $0.name == "base_model.model.lm_head.weight" }!
            tensors[head].tensor = try Tensor(embedding.map { $0 + 1 }, shape: tensors[head].tensor.shape, on: CPUBackend.shared)
            try SafetensorsFile.write(tensors, metadata: ["format": "pt"], to: folder + "/" + ModelAdapter.weightsName)
            #expect { try ModelAdapter(contentsOf: folder, on: tied) } throws: { "\($0)".contains("lm_head.weight differs") }
        }
    }

    /// With ensure_weight_tying the merged tied model's one table is the shared copy: `lowrank merge`
    /// (in f32) of PEFT's adapter evaluates to the loss of PEFT's `merge_and_unload()`.
    @Test func mergesTheSharedCopyIntoATiedModel() throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-qwen2-bf16"))
        let model = try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared, dtype: .f32)
        let adapter = try ModelAdapter(contentsOf: PEFTConfigFixtures.path("modules-tied-shared"), on: model)
        try withTemporaryFolder { folder in
            try checkpoint.write(merging: adapter, of: model, to: folder + "/merged", dtype: .f32)
            let written = try HuggingFaceCheckpoint(folder: folder + "/merged")
            #expect(try written.tensor("model.embed_tokens.weight", as: .f32, on: CPUBackend.shared).floats() == adapter.saved[0].weight.floats())
            let merged = try LlamaModel(checkpoint: written, on: CPUBackend.shared)
            #expect(merged.config.tiedEmbeddings)
            let loss = try Evaluation(model: merged, adapter: nil, data: LlamaFixtures.data(merged), batchSize: 6).loss
            let expected = PEFTConfigFixtures.expected["loss"]!["modules-tied-shared-merged"]!.number!
            print("merged shared tied copy: \(loss) vs PEFT's merge_and_unload \(expected)")
            #expect(abs(loss - expected) / expected < 1e-4)
        }
    }

    /// A projection trains in full as PEFT's wrapper takes it: a LoRA target named too gets no
    /// adapter, a biased projection's copy holds its bias; on a quantized model, whose copy PyTorch
    /// cannot train, and with a bias setting that would train the copied bias twice, it is refused by name.
    @Test func projectionsTrainInFull() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let both = try ModelAdapter(settings: try Self.settings(Self.names(["q_proj"]), ["target_modules": Self.names(["q_proj", "v_proj"])]), on: model, seed: 0)
        #expect(both.layers.map(\.path) == ["model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.v_proj"])
        #expect(both.saved.map(\.path) == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"] && both.saved.allSatisfy { $0.bias == nil })
        let qwen2 = try LlamaFixtures.model("tiny-qwen2-bf16", on: CPUBackend.shared)
        let biased = try ModelAdapter(settings: try Self.settings(Self.names(["q_proj"]), ["target_modules": Self.names(["v_proj"])]), on: qwen2, seed: 0)
        #expect(try biased.saved[0].bias?.floats() == qwen2.weight("model.layers.0.self_attn.q_proj.bias").floats())
        #expect(biased.parameters.suffix(2).map(\.name) == ["base_model.model.model.layers.1.self_attn.q_proj.weight", "base_model.model.model.layers.1.self_attn.q_proj.bias"])
        #expect { try ModelAdapter(settings: try Self.settings(Self.names(["q_proj"]), ["target_modules": Self.names(["v_proj"]), "bias": .string("all")]), on: qwen2, seed: 0) }
            throws: { "\($0)".contains("bias \"all\"") }
        let quantized = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-llama")), on: CPUBackend.shared, quantize: .nf4)
        #expect { try ModelAdapter(settings: try Self.settings(Self.names(["down_proj"])), on: quantized, seed: 0) } throws: { "\($0)".contains("quantized to nf4") }
        #expect(try ModelAdapter(settings: try Self.settings(Self.names(["norm"])), on: quantized, seed: 0).saved.count == 5)
    }

    /// `lowrank merge` writes the trained copies (a projection's bias too) in place of the model's; on a model with tied
    /// embeddings, whose merged config ties them again, it refuses copies that trained apart.
    @Test func mergeWritesTheCopies() throws {
        for name in ["modules", "modules-proj-qwen2"] {
            try PEFTConfigFixtures.merging(name) { adapter, _, merged throws in
                for module in adapter.saved {
                    for (tensor, suffix) in [(module.weight, ".weight")] + (module.bias.map { [($0, ".bias")] } ?? []) {
                        let written = try merged.tensor(module.path + suffix, as: .f32, on: CPUBackend.shared).floats()
                        // Rounded once to the checkpoint's dtype (bf16 for the Qwen2).
                        let stored = try merged.file(containing: module.path + suffix).entry(module.path + suffix).dtype
                        let expected = try Tensor(try tensor.floats(), shape: tensor.shape, dtype: stored, on: CPUBackend.shared).floats()
                        #expect(written == expected, "\(module.path)\(suffix)")
                    }
                }
            }
        }
        #expect { try PEFTConfigFixtures.merging("modules-tied") { _, _, _ in } } throws: { "\($0)".contains("tie_word_embeddings") }
    }

    /// Generation reads the copies (and, on a tied model, the LM head the trained token rows):
    /// the KV cache's logits with PEFT's adapter equal those of the model `lowrank merge` wrote with
    /// it in f32 (its embedding and LM head the copies, or its tied table with the rows; q and v
    /// merged), within f32 rounding.
    @Test(arguments: BackendKind.allCases, [("tiny-llama", "modules"), ("tiny-qwen2-bf16", "tokens-tied"), ("tiny-qwen2-bf16", "modules-tied-shared"),
                                            ("tiny-llama", "modules-proj"), ("tiny-qwen2-bf16", "modules-proj-qwen2")])
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

    /// With ensure_weight_tying on a tied model, `--dry-run` counts the one shared copy once.
    @Test func memoryPlanCountsOneSharedCopy() throws {
        let folder = LlamaFixtures.path("tiny-qwen2-bf16")
        let config = try LlamaConfig(contentsOf: folder + "/config.json")
        func plan(_ ensureWeightTying: Bool) throws -> MemoryPlan {
            let adapter = try AdapterSettings(rank: 4, alpha: 8, baseModel: folder, modulesToSave: ["embed_tokens", "lm_head"], ensureWeightTying: ensureWeightTying)
            return try MemoryPlan(MemoryPlan.Run(config: config, weightDType: try MemoryPlan.Run.weightDType(folder: folder, dtype: nil), quantize: nil,
                                                 adapter: adapter, batch: 2, sequence: 16, checkpointing: false), on: CPUBackend.shared)
        }
        let copy = config.vocabularySize * config.hiddenSize * DType.f32.byteSize
        #expect(try plan(false).adapterAndOptimizerBytes - plan(true).adapterAndOptimizerBytes == 3 * copy)
    }
}
