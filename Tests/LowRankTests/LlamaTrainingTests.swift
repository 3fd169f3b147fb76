import Foundation
import LowRank
@testable import LowRankModels
import Testing

@Suite("Training, checkpoints and merging of Llama-family models")
struct LlamaTrainingTests {
    static func settings(steps: Int, saveEvery: Int? = nil) -> TrainingSettings {
        var s = TrainingSettings()
        s.learningRate = 2e-2
        s.batchSize = 2
        s.steps = steps
        s.seed = 7
        s.saveEvery = saveEvery
        s.schedule = .cosine
        s.warmupSteps = 1
        s.maxGradientNorm = 1
        return s
    }

    /// A run stopped after its checkpoint at step 2 and resumed gives the adapter of an unbroken run,
    /// bit for bit, with shuffling, a schedule, clipping and dropout on; also with the embedding and
    /// LM head and a projection trained in full (modules_to_save), their copies and moments restored.
    @Test(arguments: BackendKind.allCases, [false, true])
    func resumeContinuesBitForBit(_ kind: BackendKind, _ savingModules: Bool) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let data = try LlamaFixtures.data(model)
            let adapterSettings = try AdapterSettings(rank: 4, alpha: 8, dropout: 0.1, dora: true, targets: .names(["q_proj", "down_proj"]),
                                                      modulesToSave: savingModules ? ["embed_tokens", "lm_head", "o_proj"] : nil)
            let fresh = { try ModelAdapter(settings: adapterSettings, on: model, seed: 3) }
            let unbroken = try Trainer(model: model, adapter: try fresh(), data: data, settings: Self.settings(steps: 4), output: nil)
            try unbroken.train()
            try withTemporaryFolder { folder in
                do {  // the first run ends (and frees the folder's lock) before the second starts
                    let first = try Trainer(model: model, adapter: try fresh(), data: data, settings: Self.settings(steps: 4, saveEvery: 2), output: folder)
                    try first.trainStep()
                    try first.trainStep()
                    try first.saveCheckpoint()
                    try first.trainStep()  // lost with the "kill": the checkpoint holds step 2
                }
                let second = try Trainer(model: model, adapter: try fresh(), data: data, settings: Self.settings(steps: 4, saveEvery: 2), output: folder)
                #expect(try second.resume() == 2)
                try second.train()
                #expect(second.losses == unbroken.losses)
                for ((name, got), (_, want)) in zip(second.adapter.parameters, unbroken.adapter.parameters) {
                    #expect(try got.bytes() == want.bytes(), "\(name) differs after resuming")
                }
                // What train() leaves: the adapter in PEFT's layout, one checkpoint, and the plot.
                let saved = try ModelAdapter(contentsOf: folder, on: model)
                for ((_, got), (_, want)) in zip(saved.parameters, unbroken.adapter.parameters) { #expect(try got.bytes() == want.bytes()) }
                let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
                #expect(files == ["adapter_config.json", "adapter_model.safetensors", "checkpoint-4", "loss.svg"])
            }
        }
    }

    /// Micro-batches accumulated, weighted by their predicted tokens, step as one batch of all
    /// their rows: the same loss (the mean over every token) and, up to the order of the sums, the
    /// same adapter. AdamW's normalisation magnifies rounding where a gradient is near zero, hence
    /// the element-wise bound rather than bits.
    @Test(arguments: BackendKind.allCases)
    func accumulatedMicroBatchesStepAsOneBatch(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let rows = try LlamaFixtures.data(model).rows
            let adapterSettings = try AdapterSettings(rank: 4, alpha: 8, dora: true, targets: .allLinear)
            let trainings = try (0..<2).map { _ in
                try AdapterTraining(model: model, adapter: try ModelAdapter(settings: adapterSettings, on: model, seed: 4),
                                    settings: Self.settings(steps: 2), totalSteps: 2)
            }
            let (whole, parts) = (trainings[0], trainings[1])
            let rowsOfStep = [[rows[0], Array(rows[1].prefix(9))], [Array(rows[2].prefix(5)), rows[3]]]
            for _ in 0..<2 {
                let expected = try whole.step(on: TokenBatch(rowsOfStep.flatMap { $0 }))
                for micro in rowsOfStep { try parts.accumulate(TokenBatch(micro)) }
                #expect(parts.pendingMicroBatches == 2)
                let got = try parts.applyAccumulated()
                #expect(abs(got - expected) <= 1e-5 * expected)
            }
            #expect(throws: LowRankError.self) { try parts.applyAccumulated() }
            for ((name, got), (_, want)) in zip(parts.adapter.parameters, whole.adapter.parameters) {
                for (g, w) in zip(try got.floats(), try want.floats()) {
                    #expect(abs(g - w) <= 1e-4 * abs(w) + 1e-6, "\(name): \(g) against \(w)")
                }
            }
        }
    }

    /// A resumed run with another data order is refused, naming the setting.
    /// Batches of many shapes (dynamic padding from Python) keep only the most recently used
    /// plans, and a shape used again after its eviction is planned again and gives the same loss.
    @Test func plansOfFewShapesAreKept() throws {
        let model = try DefaultJob.model(on: CPUBackend.shared)
        var plans = PlanCache(model: model, adapter: nil, training: false, checkpointing: false)
        let batch = { (length: Int) in TokenBatch([(0..<length).map { Int32($0) }]) }
        let first = try plans.plan(for: batch(2)).run(batch(2)).loss.floats()[0]
        for length in 3...7 { _ = try plans.plan(for: batch(length)) }
        _ = try plans.plan(for: batch(5))
        #expect(plans.shapes == [[1, 4, 0], [1, 6, 0], [1, 7, 0], [1, 5, 0]])
        #expect(try plans.plan(for: batch(2)).run(batch(2)).loss.floats()[0] == first)
        #expect(plans.shapes == [[1, 6, 0], [1, 7, 0], [1, 5, 0], [1, 2, 0]])
    }

    @Test func resumeRefusesAnotherDataOrder() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let data = try LlamaFixtures.data(model)
        let adapterSettings = try AdapterSettings(rank: 2, alpha: 4)
        try withTemporaryFolder { folder in
            try Trainer(model: model, adapter: try ModelAdapter(settings: adapterSettings, on: model, seed: 1), data: data,
                        settings: Self.settings(steps: 2), output: folder).train()
            var other = Self.settings(steps: 4)
            other.batchSize = 3
            let trainer = try Trainer(model: model, adapter: try ModelAdapter(settings: adapterSettings, on: model, seed: 1), data: data,
                                      settings: other, output: folder)
            #expect { try trainer.resume() } throws: { "\($0)".contains("batch_size") }
        }
    }

    /// Dropout draws a new mask per step seed and the same mask for the same seed.
    @Test func dropoutFollowsTheRunSeed() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dropout: 0.5), on: model, seed: 1)
        for (_, b) in adapter.parameters where b.shape[1] == 4 { try b.assign(randomValues(b.shape.count, seed: 9, scale: 0.5)) }
        let plan = try CausalLMPlan(model: model, adapter: adapter, batch: 2, sequence: 16, training: true)
        let batch = try LlamaFixtures.data(model).batch(0..<2)
        let loss = { (seed: UInt32) in try plan.run(batch, seed: seed).loss.floats()[0] }
        #expect(try loss(1) == loss(1))
        #expect(try loss(1) != loss(2))
    }

    /// Gradient checkpointing recomputes each block's activations in backward: the same loss and
    /// gradients, bit for bit, from fewer planned bytes.
    @Test func gradientCheckpointingKeepsTheGradients() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path("dora"), on: model)
        let batch = try LlamaFixtures.data(model).batch(0..<6)
        let plans = try [false, true].map { try CausalLMPlan(model: model, adapter: adapter, batch: 6, sequence: 16, training: true, checkpointing: $0) }
        let results = try plans.map { plan in
            let out = try plan.run(batch)
            return try out.gradients.map { try $0.bytes() } + [try out.loss.bytes()]
        }
        #expect(results[0] == results[1])
        #expect(plans[1].plan.plannedBytes < plans[0].plan.plannedBytes, "\(plans.map(\.plan.plannedBytes))")
    }

    /// With the hidden state between blocks held in bf16, checkpointing keeps the narrow values and
    /// recomputes from them: the same loss and gradients as without it, bit for bit, on both
    /// backends, from fewer planned bytes than checkpointing an f32 residual (the deep bf16 fixture,
    /// 24 blocks).
    @Test(arguments: BackendKind.allCases)
    func checkpointingABFloat16ResidualKeepsTheGradients(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let folder = fixturePath("deep-llama")
            let model = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: folder + "/model"), on: backend)
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dora: true, targets: .allLinear), on: model, seed: 1)
            let batch = try TokenDataset(contentsOf: folder + "/data.jsonl", vocabularySize: model.config.vocabularySize).batch(0..<2)
            let plans = try [(false, DType.bf16), (true, .bf16), (true, .f32)].map {
                try CausalLMPlan(model: model, adapter: adapter, batch: 2, sequence: batch.sequence, training: true, checkpointing: $0.0, residual: $0.1)
            }
            let results = try plans.prefix(2).map { plan in
                let out = try plan.run(batch)
                return try out.gradients.map { try $0.bytes() } + [try out.loss.bytes()]
            }
            #expect(results[0] == results[1])
            #expect(plans[1].plan.plannedBytes < plans[2].plan.plannedBytes, "\(plans.map(\.plan.plannedBytes))")
        }
    }

    /// QLoRA: the projections quantized at load; LoRA and DoRA train on them on both backends, and the
    /// quantized model's loss stays near the f32 model's.
    @Test(arguments: BackendKind.allCases, [DType.nf4, .q8_0, .q4_0])
    func trainsOnQuantizedWeights(_ kind: BackendKind, _ dtype: DType) throws {
        try onBackend(kind) { backend in
            let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-llama"))
            let model = try LlamaModel(checkpoint: checkpoint, on: backend, quantize: dtype)
            let data = try LlamaFixtures.data(model)
            let base = try Evaluation(model: model, adapter: nil, data: data, batchSize: 6).loss
            #expect(abs(base - LlamaFixtures.expectedLoss("tiny-llama")) / LlamaFixtures.expectedLoss("tiny-llama") < 0.05)
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dora: dtype == .nf4, targets: .allLinear), on: model, seed: 2)
            var settings = Self.settings(steps: 6)
            settings.shuffle = false
            settings.batchSize = 6
            let trainer = try Trainer(model: model, adapter: adapter, data: data, settings: settings, output: nil)
            try trainer.train()
            #expect(trainer.losses.last! < trainer.losses.first! * 0.95, "\(trainer.losses)")
        }
    }

    /// A merged checkpoint, read back, gives the loss of the model with the adapter, in the source's
    /// layout: the same files and, for the bf16 sharded Qwen2 model, bf16 tensors again.
    @Test(arguments: [("tiny-llama", "dora"), ("tiny-llama", "rslora"), ("tiny-qwen2-bf16", "qwen2-lora")])
    func mergedCheckpointKeepsTheAdaptersLoss(_ fixture: (model: String, adapter: String)) throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path(fixture.model))
        let model = try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared)
        let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path(fixture.adapter), on: model)
        let data = try LlamaFixtures.data(model)
        try withTemporaryFolder { folder in
            try checkpoint.write(merging: adapter, of: model, to: folder + "/merged")
            let merged = try HuggingFaceCheckpoint(folder: folder + "/merged")
            #expect(merged.files.map(\.name) == checkpoint.files.map(\.name))
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder + "/merged").sorted()
                == FileManager.default.contentsOfDirectory(atPath: checkpoint.folder).sorted())
            let q = "model.layers.0.self_attn.q_proj.weight"
            #expect(try merged.file(containing: q).entry(q).dtype == checkpoint.file(containing: q).entry(q).dtype)
            let withAdapter = try Evaluation(model: model, adapter: adapter, data: data, batchSize: 6).loss
            let mergedLoss = try Evaluation(model: try LlamaModel(checkpoint: merged, on: CPUBackend.shared), adapter: nil, data: data, batchSize: 6).loss
            // f32 weights merge to within summation order; bf16 ones round each merged weight once (2^-8).
            let bound = fixture.model.hasSuffix("bf16") ? 1e-2 : 1e-5
            #expect(abs(mergedLoss - withAdapter) / withAdapter < bound, "\(mergedLoss) vs \(withAdapter)")
        }
    }

    /// The default job's model and corpus: its loss falls within a few dozen steps on each backend.
    @Test(arguments: BackendKind.allCases)
    func defaultJobLearns(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let model = try DefaultJob.model(on: backend)
            let adapter = try ModelAdapter(settings: try DefaultJob.adapterSettings, on: model, seed: 0)
            var settings = DefaultJob.trainingSettings
            settings.steps = kind == .cpu ? 40 : 12
            settings.warmupSteps = DefaultJob.warmupSteps(totalSteps: settings.steps!)
            let trainer = try Trainer(model: model, adapter: adapter, data: try DefaultJob.data(), settings: settings, output: nil)
            try trainer.train()
            let (head, tail) = (trainer.losses.prefix(3).reduce(0, +) / 3, trainer.losses.suffix(3).reduce(0, +) / 3)
            #expect(tail < head * (kind == .cpu ? 0.75 : 0.9), "\(trainer.losses)")
        }
    }
}
