import LowRank
import LowRankModels
import Testing

extension CommandLineArgumentTests {
    /// `--trainable-token-indices` takes token ids, plans (`--dry-run`) and trains with the rows,
    /// and saves them as PEFT does; a malformed list or an id beyond the vocabulary is refused by name.
    @Test func trainableTokenIndicesTrainAndAreChecked() throws {
        try expectRefused("--trainable-token-indices", ["train", "--model", model, "--data", data, "--trainable-token-indices", "1,x"])
        let planned = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--dry-run", "--seq-len", "8", "--trainable-token-indices", "3,5"])
        #expect(planned.status == 0, "\(planned.output)")
        let outside = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "1", "--trainable-token-indices", "64"])
        #expect(outside.status != 0 && outside.output.contains("trainable_token_indices holds 64"), "\(outside.output)")
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "2",
                                                "--trainable-token-indices", "27, 2", "--adapter-out", folder])
            #expect(status == 0, "\(output)")
            #expect(try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName).trainableTokenIndices == [27, 2])
            let saved = try SafetensorsFile(path: folder + "/" + ModelAdapter.weightsName)
            #expect(try saved.entry(TrainableTokens.key).shape == [2, 32])
        }
    }
}

extension CommandLineArgumentTests {
    /// `--modules-to-save` plans (`--dry-run`, the copies and their AdamW moments counted), trains
    /// the embedding and LM head, or projections (a LoRA target among them, then without its adapter), in full and saves them under PEFT's names; a module it cannot
    /// train in full (a container) is refused by name.
    @Test func modulesToSaveTrainAndAreChecked() throws {
        let options = ["--model", model, "--data", data, "--device", "cpu", "--seq-len", "8"]
        let plain = try lowrank(["train"] + options + ["--dry-run", "--json"])
        let planned = try lowrank(["train"] + options + ["--dry-run", "--json", "--modules-to-save", "embed_tokens,lm_head"])
        #expect(plain.status == 0 && planned.status == 0, "\(planned.output)")
        func bytes(_ output: String) throws -> Int {
            let line = output.split(separator: "\n").last.map(String.init) ?? ""
            return try JSON.parse(Array(line.utf8))["adapter_and_optimizer_bytes"]?.int ?? 0
        }
        let added = try bytes(planned.output) - bytes(plain.output)
        #expect(added == 2 * 3 * 64 * 32 * 4, "\(planned.output)")
        let container = try lowrank(["train"] + options + ["--steps", "1", "--modules-to-save", "mlp"])
        #expect(container.status != 0 && container.output.contains("modules_to_save \"mlp\" matches"), "\(container.output)")
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train"] + options + ["--steps", "2", "--modules-to-save", "lm_head, embed_tokens", "--adapter-out", folder])
            #expect(status == 0, "\(output)")
            #expect(try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName).modulesToSave == ["embed_tokens", "lm_head"])
            let saved = try SafetensorsFile(path: folder + "/" + ModelAdapter.weightsName)
            let head = try saved.floats("base_model.model.lm_head.weight")
            #expect(try saved.entry("base_model.model.model.embed_tokens.weight").shape == [64, 32] && head.count == 64 * 32)
            let frozen = try HuggingFaceCheckpoint(folder: model).tensor("lm_head.weight", as: .f32, on: CPUBackend.shared).floats()
            #expect(head != frozen, "the LM head's copy did not train")
        }
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train"] + options + ["--steps", "2", "--targets", "q_proj,v_proj", "--modules-to-save", "q_proj,down_proj", "--adapter-out", folder])
            #expect(status == 0, "\(output)")
            let saved = try SafetensorsFile(path: folder + "/" + ModelAdapter.weightsName)
            let layer0 = ["mlp.down_proj.weight", "self_attn.q_proj.weight", "self_attn.v_proj.lora_A.weight", "self_attn.v_proj.lora_B.weight"]
            #expect(saved.names.filter { $0.contains("layers.0.") }.sorted() == layer0.map { "base_model.model.model.layers.0." + $0 })
            let frozen = try HuggingFaceCheckpoint(folder: model).tensor("model.layers.0.mlp.down_proj.weight", as: .f32, on: CPUBackend.shared).floats()
            #expect(try saved.floats("base_model.model.model.layers.0.mlp.down_proj.weight") != frozen, "the projection's copy did not train")
        }
    }

    /// `--ensure-weight-tying` on a tied model trains one copy for the embedding and LM head,
    /// saved under both names as PEFT saves it, which `lowrank merge` writes into the tied model.
    @Test func ensureWeightTyingTrainsOneCopyAndMerges() throws {
        let tied = LlamaFixtures.path("tiny-qwen2-bf16")
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train", "--model", tied, "--data", data, "--device", "cpu", "--seq-len", "8", "--steps", "2",
                                                "--modules-to-save", "lm_head", "--ensure-weight-tying", "--adapter-out", folder + "/adapter"])
            #expect(status == 0, "\(output)")
            #expect(try AdapterSettings(contentsOf: folder + "/adapter/" + ModelAdapter.configName).ensureWeightTying)
            let saved = try SafetensorsFile(path: folder + "/adapter/" + ModelAdapter.weightsName)
            let copy = try saved.floats("base_model.model.model.embed_tokens.weight")
            #expect(try saved.floats("base_model.model.lm_head.weight") == copy)
            let merge = try lowrank(["merge", "--model", tied, "--adapter", folder + "/adapter", "--out", folder + "/merged", "--dtype", "f32", "--device", "cpu"])
            #expect(merge.status == 0, "\(merge.output)")
            #expect(try HuggingFaceCheckpoint(folder: folder + "/merged").tensor("model.embed_tokens.weight", as: .f32, on: CPUBackend.shared).floats() == copy)
        }
    }
}
