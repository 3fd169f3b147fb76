import Foundation
import LowRank
import LowRankModels
import Testing

/// `MemoryPlan` and `lowrank train --dry-run`: a run's device bytes from config.json alone, equal
/// to what the real run allocates.
@Suite("Memory planned before loading")
struct MemoryPlanTests {
    static let model = LlamaFixtures.path("tiny-llama")

    static func run(dtype: DType? = nil, checkpointing: Bool = false, residual: DType = .f32, folder: String = model) throws -> MemoryPlan.Run {
        let config = try LlamaConfig(contentsOf: folder + "/config.json")
        let adapter = try AdapterSettings(rank: 8, alpha: 16, targets: try AdapterSettings.targets(parsing: "all-linear"), baseModel: folder)
        return MemoryPlan.Run(config: config, weightDType: try MemoryPlan.Run.weightDType(folder: folder, dtype: dtype), quantize: nil,
                              adapter: adapter, batch: 2, sequence: 16, checkpointing: checkpointing, residual: residual)
    }

    /// Each part of the plan is what the real run allocates, counted by the allocator of a backend
    /// of the test's own: its weights, its adapter and optimizer, its step plan's buffers; and the
    /// whole is within 10% of a training step's peak (on Vulkan the encoders' scratch the plan's
    /// runs keep is planned too, `ExecutionPlan.repeatScratchBytes`). Also with
    /// the hidden state between blocks held in bf16.
    @Test(arguments: BackendKind.allCases, [(false, DType.f32), (true, .f32), (true, .bf16)])
    func planIsWhatTheRunAllocates(_ kind: BackendKind, _ blocks: (checkpointing: Bool, residual: DType)) throws {
        let (checkpointing, residual) = blocks
        try onPrivateBackend(kind) { backend, _ in
            let run = try Self.run(checkpointing: checkpointing, residual: residual)
            let planned = try MemoryPlan(run, on: backend)
            let before = backend.memoryStatistics()[0].currentBytes
            let model = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: Self.model), on: backend)
            let afterModel = backend.memoryStatistics()[0].currentBytes
            var settings = TrainingSettings()
            settings.batchSize = run.batch
            settings.gradientCheckpointing = checkpointing
            settings.residualDType = residual
            let adapter = try ModelAdapter(settings: run.adapter, on: model, seed: 0)
            let training = try AdapterTraining(model: model, adapter: adapter, settings: settings, totalSteps: 1)
            let afterOptimizer = backend.memoryStatistics()[0].currentBytes
            try training.step(on: TokenBatch((0..<run.batch).map { r in (0..<run.sequence).map { Int32(($0 * 7 + r) % 64) } }))
            try backend.synchronize()
            let peak = backend.memoryStatistics()[0].peakBytes - before
            let plan = try CausalLMPlan(model: model, adapter: adapter, batch: run.batch, sequence: run.sequence, training: true,
                                        checkpointing: checkpointing, residual: residual)
            print("planned \(planned.json.serialized) on \(kind) (checkpointing: \(checkpointing), residual: \(residual)); the step's peak \(peak)")
            #expect(planned.weightsBytes == afterModel - before)
            #expect(planned.adapterAndOptimizerBytes == afterOptimizer - afterModel)
            #expect(planned.activationsBytes == plan.plan.plannedBytes)
            #expect(Double(peak) <= Double(planned.plannedBytes) * 1.1, "the step's peak \(peak) against the plan's \(planned.plannedBytes)")
        }
    }

    /// Without weight files, config.json's dtype decides: bf16 matrices take half the bytes of f32
    /// ones, and `--dtype` overrides it.
    @Test func configAloneGivesTheWeightsDType() throws {
        try withTemporaryFolder { folder in
            var json = try JSON.read(Self.model + "/config.json", what: "config").object!
            json["dtype"] = .string("bfloat16")
            try FileIO.writeAtomically(folder + "/config.json", text: JSON.object(json).serialized)
            let bf16 = try MemoryPlan(try Self.run(folder: folder))
            let f32 = try MemoryPlan(try Self.run(dtype: .f32, folder: folder))
            let loaded = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: Self.model), on: CPUBackend.shared)
            let inverseFrequencies = loaded.config.headDim / 2 * 4
            #expect(f32.weightsBytes == loaded.weightBytes + inverseFrequencies)
            let matrices = loaded.tensors.filter { $0.tensor.shape.rank == 2 }.reduce(0) { $0 + $1.tensor.byteCount }
            #expect(bf16.weightsBytes == f32.weightsBytes - matrices / 2)
            #expect(bf16.activationsBytes == f32.activationsBytes)

            json["dtype"] = .string("int8")
            try FileIO.writeAtomically(folder + "/config.json", text: JSON.object(json).serialized)
            #expect { try MemoryPlan.Run.weightDType(folder: folder, dtype: nil) } throws: {
                ($0 as? LowRankError)?.message.contains("\"int8\" is not float32, bfloat16 or float16; give --dtype") == true
            }
        }
    }

    /// Llama-3.1-8B's config.json, as the README's dry-run figures take it.
    static var llama31Config: JSON {
        get throws {
            try JSON.parse(Array("""
                {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
                 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                 "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "max_position_embeddings": 131072, "torch_dtype": "bfloat16"}
                """.utf8))
        }
    }

    /// Issue #21's QLoRA target: Llama-3.1-8B with NF4 projections (from its bf16 checkpoint), LoRA
    /// r=16 on all linear layers, one row of 2048 tokens and gradient checkpointing plans at most
    /// 7.5 GiB with the default residual stream (bf16, the weights'), planned for the CPU or for
    /// Vulkan (whose plan keeps its encoders' scratch).
    @Test(arguments: BackendKind.allCases)
    func llama31WithNF4MeetsItsTarget(_ kind: BackendKind) throws {
        let config = try LlamaConfig(json: try Self.llama31Config)
        let adapter = try AdapterSettings(rank: 16, alpha: 32, targets: .allLinear)
        let run = MemoryPlan.Run(config: config, weightDType: { _ in .bf16 }, quantize: .nf4, adapter: adapter, batch: 1, sequence: 2048,
                                 checkpointing: true)
        try onBackend(kind) { backend in
            let planned = try MemoryPlan(run, on: backend)
            #expect(planned.plannedBytes <= 15 << 29, "\(planned.description)")
        }
    }

    /// A run beyond the device stops before loading, naming the changes that would fit.
    @Test func aRunThatDoesNotFitSaysWhatWould() throws {
        let run = try Self.run()
        // Planned for the CPU, whose step holds the LM head's logits (`CausalLMPlan.holdsLogits`).
        let cpu = CPUBackend.shared
        let planned = try MemoryPlan(run, on: cpu), shorter = try MemoryPlan(run.with { $0.sequence = 8 }, on: cpu)
        #expect(try MemoryPlan.checkFits(run, on: CPUBackend.shared, capacity: planned.plannedBytes).plannedBytes == planned.plannedBytes)
        #expect { try MemoryPlan.checkFits(run, on: CPUBackend.shared, capacity: shorter.plannedBytes) } throws: {
            guard let error = $0 as? LowRankError else { return false }
            return error.kind == .outOfMemory && error.message.contains("--seq-len 8") && !error.message.contains("--seq-len 4")
        }
        #expect { try MemoryPlan.checkFits(run, on: CPUBackend.shared, capacity: 1) } throws: {
            ($0 as? LowRankError)?.message.contains("none of --grad-checkpointing, --quantize nf4 or a shorter --seq-len alone fits") == true
        }
    }

    /// `lowrank train --dry-run --json` on a folder holding only config.json.
    @Test func dryRunNeedsOnlyTheConfig() throws {
        try withTemporaryFolder { folder in
            try FileManager.default.copyItem(atPath: Self.model + "/config.json", toPath: folder + "/config.json")
            let (status, output) = try CommandLineArgumentTests().lowrank(["train", "--model", folder, "--dry-run", "--json", "--seq-len", "16",
                                                                           "--batch-size", "2", "--targets", "all-linear"])
            #expect(status == 0, "\(output)")
            let json = try JSON.parse(Array((output.split(separator: "\n").last.map(String.init) ?? "").utf8))
            let expected = try MemoryPlan(try Self.run(), on: CPUBackend.shared).json
            #expect(json == expected, "\(output)")
            let refused = try CommandLineArgumentTests().lowrank(["train", "--model", folder, "--dry-run"])
            #expect(refused.status == 64 && refused.output.contains("at --seq-len tokens a row"), "\(refused.output)")
        }
    }

    /// A real run prints the plan of its largest batch before loading.
    @Test func aRunPrintsItsPlan() throws {
        try withTemporaryFolder { folder in
            let (status, output) = try CommandLineArgumentTests().lowrank(["train", "--model", Self.model, "--data", LlamaFixtures.path("data.jsonl"),
                                                                           "--steps", "1", "--batch-size", "2", "--targets", "all-linear",
                                                                           "--adapter-out", folder + "/adapter"])
            let longest = try LlamaFixtures.data(try LlamaFixtures.model(on: CPUBackend.shared)).rows.map(\.count).max()!
            let expected = try MemoryPlan(try Self.run().with { $0.sequence = longest }, on: CPUBackend.shared)
            #expect(status == 0 && output.contains("lowrank train: \(expected.description) of "), "\(output)")
        }
    }
}
