import Foundation
import LowRank
import LowRankModels
import Testing

/// `Tests/Fixtures/llama`, made by `tools/make_llama_fixtures.py` with transformers + PEFT + PyTorch.
enum LlamaFixtures {
    static let folder = fixturePath("llama")
    static func path(_ name: String) -> String { folder + "/" + name }

    static let expected: JSON = try! JSON.parse(FileIO.read(path("expected.json")))
    static func expectedLoss(_ name: String) -> Double { expected["loss"]![name]!.number! }
    /// The bf16 Qwen2 model's losses as PyTorch computes it in bf16 (`tools/make_bf16_compute_fixtures.py`).
    static let expectedBF16: JSON = try! JSON.parse(FileIO.read(path("expected-bf16.json")))

    static func model(_ name: String = "tiny-llama", on backend: any Backend) throws -> LlamaModel {
        try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: path(name)), on: backend)
    }

    /// The fixture's training run (`expected.json`'s "train": lr, weight decay, batch size, steps), batches in order.
    static func trainingSettings(_ train: JSON) -> TrainingSettings {
        var settings = TrainingSettings()
        settings.learningRate = train["lr"]!.number!
        settings.weightDecay = train["weight_decay"]!.number!
        settings.batchSize = train["batch_size"]!.int!
        settings.steps = train["steps"]!.int!
        settings.shuffle = false
        return settings
    }

    static func data(_ model: LlamaModel, file: String = "data.jsonl") throws -> TokenDataset {
        try TokenDataset(contentsOf: path(file), vocabularySize: model.config.vocabularySize)
    }
}

@Suite("Llama checkpoints and PEFT adapters against transformers + PEFT")
struct LlamaFixtureTests {
    /// The mean loss over the fixture data, with each adapter PEFT saved, against transformers + PEFT
    /// in float64, with exact products (`highest`). Bound 1e-4 relative (measured: about 1e-7 on the
    /// CPU backend, 1e-6 on lavapipe).
    @Test(arguments: BackendKind.allCases, [
        ("tiny-llama", nil), ("tiny-llama", "lora"), ("tiny-llama", "rslora"), ("tiny-llama", "dora"), ("tiny-llama", "lora-f16"),
        ("tiny-qwen2-bf16", nil), ("tiny-qwen2-bf16", "qwen2-lora"),
    ] as [(String, String?)])
    func evaluationMatchesTransformers(_ kind: BackendKind, _ fixture: (model: String, adapter: String?)) throws {
        try onBackend(kind, exact: true) { backend in
            let model = try LlamaFixtures.model(fixture.model, on: backend)
            let adapter = try fixture.adapter.map { try ModelAdapter(contentsOf: LlamaFixtures.path($0), on: model) }
            let result = try Evaluation(model: model, adapter: adapter, data: LlamaFixtures.data(model), batchSize: 4)
            let expected = LlamaFixtures.expectedLoss(fixture.adapter ?? fixture.model)
            print("eval \(fixture) on \(kind): \(result.loss) vs transformers \(expected), relative \(abs(result.loss - expected) / expected)")
            #expect(result.tokens == LlamaFixtures.expected["tokens"]!.int!)
            #expect(abs(result.loss - expected) / expected < 1e-4, "\(fixture): \(result.loss) vs transformers \(expected)")
        }
    }

    /// The bf16 Qwen2 model at the CPU's default, `medium`: the activations entering each bf16
    /// product are rounded to bf16, as PyTorch's bf16 model rounds them, which also rounds every op's
    /// output. So the loss is off float64 by PyTorch's own bf16 scale (4.7e-4 and 3.6e-4 here), a
    /// different sample of roundings of that size: at most twice PyTorch's distance (measured: 2.8e-6
    /// for the model, 0.006 times it; 3.9e-4 with the adapter, 1.11 times it and 4e-5 from
    /// PyTorch's bf16 loss).
    @Test(arguments: [nil, "qwen2-lora"] as [String?])
    func bf16ModelAtMediumWithinPyTorchsBF16Rounding(_ adapterName: String?) throws {
        let backend = try BackendKind.cpu.open()
        guard Engine.matmulPrecision(of: backend) == .medium, CPUBackend.hasBFloat16DotProducts else {
            try Test.cancel("the CPU backend does not compute at medium here (LOWRANK_MATMUL_PRECISION, or no AVX-512 BF16)")
        }
        let name = "tiny-qwen2-bf16"
        let model = try LlamaFixtures.model(name, on: backend)
        let adapter = try adapterName.map { try ModelAdapter(contentsOf: LlamaFixtures.path($0), on: model) }
        let loss = try Evaluation(model: model, adapter: adapter, data: LlamaFixtures.data(model), batchSize: 4).loss
        let exact = LlamaFixtures.expectedLoss(adapterName ?? name), pytorch = LlamaFixtures.expectedBF16[adapterName ?? name]!.number!
        let (error, scale) = (abs(loss - exact) / exact, abs(pytorch - exact) / exact)
        print("eval \(adapterName ?? name) at medium: \(loss) vs float64 \(exact), relative \(error); PyTorch's bf16 \(pytorch), relative \(scale)")
        #expect(error <= 2 * scale, "\(loss) vs float64 \(exact), PyTorch's bf16 \(pytorch)")
    }

    /// JSONL and `.npy` (int64) hold the same rows, and any batch size gives the same token-weighted mean.
    @Test func dataFormatsAndBatchSizesAgree() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let jsonl = try LlamaFixtures.data(model), npy = try LlamaFixtures.data(model, file: "data.npy")
        #expect(jsonl.rows == npy.rows)
        let losses = try [1, 4, 6].map { try Evaluation(model: model, adapter: nil, data: jsonl, batchSize: $0).loss }
        for loss in losses { #expect(abs(loss - losses[0]) / losses[0] < 1e-6) }
    }

    /// Five AdamW steps from PEFT's adapter, batches in order, against torch.optim.AdamW on the PEFT
    /// model: every adapter tensor within 1e-3 relative to its largest value (measured: see the
    /// closing note), and the five losses within 1e-4.
    @Test(arguments: BackendKind.allCases, ["lora", "dora"])
    func fiveStepsMatchPyTorch(_ kind: BackendKind, _ variant: String) throws {
        try Self.fiveSteps(kind, variant, residual: .f32, expected: LlamaFixtures.expected["train"]![variant]!, reference: "train5-\(variant)")
    }

    /// The same with the hidden state between blocks held in bf16 (`residualDType`), against PyTorch
    /// rounding each block's output and its gradient to bfloat16 (tools/make_residual_fixtures.py),
    /// within the same bounds; the rounding moves PyTorch's own losses by up to 6e-3 (1e-3 relative).
    @Test(arguments: BackendKind.allCases, ["lora", "dora"])
    func fiveStepsWithABFloat16ResidualMatchPyTorch(_ kind: BackendKind, _ variant: String) throws {
        let folder = LlamaFixtures.path("residual-bf16")
        let expected = try JSON.read(folder + "/expected.json", what: "expected.json")
        try Self.fiveSteps(kind, variant, residual: .bf16, expected: expected[variant]!, reference: "residual-bf16/train5-\(variant)")
    }

    static func fiveSteps(_ kind: BackendKind, _ variant: String, residual: DType, expected: JSON, reference: String) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path(variant), on: model)
            var settings = LlamaFixtures.trainingSettings(LlamaFixtures.expected["train"]!)
            settings.residualDType = residual
            let trainer = try Trainer(model: model, adapter: adapter, data: LlamaFixtures.data(model), settings: settings, output: nil)
            try trainer.train()
            let expectedLosses = expected.array!.map { $0.number! }
            for (got, want) in zip(trainer.losses, expectedLosses) {
                #expect(abs(Double(got) - want) / want < 1e-4, "loss \(got) vs PyTorch \(want)")
            }
            let trained = try SafetensorsFile(path: LlamaFixtures.path(reference + "/adapter_model.safetensors"))
            var worst = 0.0
            for (name, tensor) in adapter.parameters {
                worst = max(worst, relativeError(try tensor.floats(), try trained.floats(name).map(Double.init)))
            }
            print("five AdamW steps, \(variant) with a \(residual) residual on \(kind): worst relative difference from PyTorch \(worst)")
            #expect(worst < 1e-3)
        }
    }
}

@Suite("PEFT adapter settings")
struct AdapterSettingsTests {
    /// Names match a module path or its end after a dot; `all-linear` takes every projection; a
    /// one-string pattern must match the whole path (PEFT's `re.fullmatch`).
    @Test func targetsMatchAsPEFTDoes() throws {
        let q = "model.layers.1.self_attn.q_proj", down = "model.layers.0.mlp.down_proj"
        let names = try AdapterSettings(targets: AdapterSettings.targets(parsing: "q_proj, mlp.down_proj"))
        #expect(names.targets(q) && names.targets(down) && !names.targets("model.layers.0.self_attn.k_proj"))
        #expect(try AdapterSettings(targets: .allLinear).targets(down))
        let pattern = try AdapterSettings(targets: .pattern(#".*\.1\.self_attn\.(q|v)_proj"#))
        #expect(pattern.targets(q) && !pattern.targets("model.layers.0.self_attn.q_proj") && !pattern.targets(q + "x"))
    }

    /// What we write, PEFT's reader (ours) reads back unchanged.
    @Test func configRoundTrips() throws {
        let settings = try AdapterSettings(rank: 16, alpha: 32, dropout: 0.25, rsLoRA: true, dora: true, targets: .names(["k_proj", "q_proj"]), baseModel: "m")
        try withTemporaryFolder { folder in
            try FileIO.writeAtomically(folder + "/adapter_config.json", text: settings.json.serialized)
            #expect(try AdapterSettings(contentsOf: folder + "/adapter_config.json") == settings)
        }
    }
}
