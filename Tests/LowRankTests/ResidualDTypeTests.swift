import Foundation
import LowRank
import LowRankModels
import Testing

/// The default dtype of the hidden state between decoder blocks (`LlamaModel.residualDType(_:)`):
/// the frozen weights' compute dtype, as PyTorch holds a 16-bit model's hidden states, and f32
/// where the weights are f32 or stored block-quantized (llama.cpp's f32 hidden states).
@Suite("The residual stream's default dtype")
struct ResidualDTypeTests {
    /// Each kind of weights, loaded: a bf16 checkpoint as it is, as f16 or f32 (`--dtype`), or with
    /// its projections quantized to NF4 (with double quantization too); an f32 checkpoint; GGUF files
    /// stored block-quantized (also with a bf16 embedding) and in f16. A chosen dtype always wins.
    @Test func followsTheFrozenWeights() throws {
        let cpu = CPUBackend.shared
        let bf16 = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-qwen2-bf16"))
        let f32 = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-llama"))
        let cases: [(String, LlamaModel, DType)] = [
            ("bf16", try LlamaModel(checkpoint: bf16, on: cpu), .bf16),
            ("bf16 as f16", try LlamaModel(checkpoint: bf16, on: cpu, dtype: .f16), .f16),
            ("bf16 as f32", try LlamaModel(checkpoint: bf16, on: cpu, dtype: .f32), .f32),
            ("bf16 quantized to nf4", try LlamaModel(checkpoint: bf16, on: cpu, quantize: .nf4), .bf16),
            ("bf16 quantized to nf4_dq", try LlamaModel(checkpoint: bf16, on: cpu, quantize: .nf4DoubleQuant), .bf16),
            ("f32", try LlamaModel(checkpoint: f32, on: cpu), .f32),
            ("f32 as bf16", try LlamaModel(checkpoint: f32, on: cpu, dtype: .bf16), .bf16),
            ("GGUF q4_0", try LlamaModel(checkpoint: try GGUFCheckpoint(path: GGUFFixtures.model("q4_0")), on: cpu), .f32),
            ("GGUF q4_0, bf16 embedding", try LlamaModel(checkpoint: try GGUFCheckpoint(path: GGUFFixtures.model("q4_0")), on: cpu, dtype: .bf16), .f32),
            ("GGUF f16", try LlamaModel(checkpoint: try GGUFCheckpoint(path: GGUFFixtures.model("f16")), on: cpu), .f16),
        ]
        for (name, model, expected) in cases {
            #expect(model.residualDType(nil) == expected, "\(name)")
            for chosen in [DType.f32, .bf16, .f16] { #expect(model.residualDType(chosen) == chosen, "\(name), chose \(chosen)") }
        }
    }

    /// `lowrank train --dry-run` on a bf16 config with gradient checkpointing plans the bf16 residual
    /// by default (what it keeps of each block is half an f32 one's), and `--residual-dtype f32`
    /// plans the f32 one; `MemoryPlan` with no residual chosen plans the same.
    @Test func dryRunPlansTheDefault() throws {
        try withTemporaryFolder { folder in
            var json = try JSON.read(MemoryPlanTests.model + "/config.json", what: "config").object!
            json["dtype"] = .string("bfloat16")
            try FileIO.writeAtomically(folder + "/config.json", text: JSON.object(json).serialized)
            func planned(_ residual: [String]) throws -> JSON {
                let (status, output) = try CommandLineArgumentTests().lowrank(["train", "--model", folder, "--dry-run", "--json", "--seq-len", "16",
                                                                               "--batch-size", "2", "--targets", "all-linear", "--grad-checkpointing"] + residual)
                #expect(status == 0, "\(output)")
                return try JSON.parse(Array((output.split(separator: "\n").last.map(String.init) ?? "").utf8))
            }
            let byDefault = try planned([]), bf16 = try planned(["--residual-dtype", "bf16"]), f32 = try planned(["--residual-dtype", "f32"])
            #expect(byDefault == bf16)
            #expect(f32["activations_bytes"]!.number! > bf16["activations_bytes"]!.number!)
            let run = try MemoryPlanTests.run(checkpointing: true, folder: folder).with { $0.residual = nil }
            #expect(try MemoryPlan(run, on: CPUBackend.shared).json == byDefault)
        }
    }

    /// Training a bf16 model with no residual chosen takes the same steps as choosing bf16, bit for
    /// bit, and other steps than an f32 residual; an f32 model's default is f32.
    @Test(arguments: BackendKind.allCases)
    func trainingTakesTheDefault(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            func losses(_ folder: String, _ residual: DType?) throws -> [Float] {
                let model = try LlamaFixtures.model(folder, on: backend)
                let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, targets: .allLinear), on: model, seed: 1)
                var settings = TrainingSettings()
                (settings.learningRate, settings.batchSize, settings.steps, settings.shuffle) = (1e-2, 2, 3, false)
                settings.residualDType = residual
                let trainer = try Trainer(model: model, adapter: adapter, data: LlamaFixtures.data(model), settings: settings, output: nil)
                try trainer.train()
                return trainer.losses
            }
            let bf16 = try losses("tiny-qwen2-bf16", nil)
            #expect(bf16 == (try losses("tiny-qwen2-bf16", .bf16)))
            #expect(bf16 != (try losses("tiny-qwen2-bf16", .f32)))
            #expect(try losses("tiny-llama", nil) == (try losses("tiny-llama", .f32)))
        }
    }
}
