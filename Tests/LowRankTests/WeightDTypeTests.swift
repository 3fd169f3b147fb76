import Foundation
import LowRank
import LowRankModels
import Testing

/// 16-bit frozen weights: a checkpoint's bf16 matrices stay bf16 on the device, computing as the
/// same values held in f32 do, in half the bytes.
@Suite("16-bit frozen weights")
struct WeightDTypeTests {
    static let bf16Model = "tiny-qwen2-bf16"

    /// The bf16 Qwen2 fixture's loss with its weights held as bf16 (the default) and widened to f32,
    /// with exact products (`highest`; the CPU's default `medium` rounds only the bf16-held model's
    /// activations): the same bf16 numbers, read into f32 by every op, so the losses agree to f32
    /// rounding (measured: equal on the CPU and on lavapipe).
    @Test(arguments: BackendKind.allCases, [nil, "qwen2-lora"] as [String?])
    func bf16WeightsEvaluateAsF32Ones(_ kind: BackendKind, _ adapterName: String?) throws {
        try onBackend(kind, exact: true) { backend in
            let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path(Self.bf16Model))
            let losses = try [nil, DType.f32].map { dtype in
                let model = try LlamaModel(checkpoint: checkpoint, on: backend, dtype: dtype)
                #expect(model.projectionDType == (dtype ?? .bf16))
                #expect(try model.weight("model.embed_tokens.weight").dtype == dtype ?? .bf16)
                #expect(try model.weight("model.norm.weight").dtype == .f32)
                let adapter = try adapterName.map { try ModelAdapter(contentsOf: LlamaFixtures.path($0), on: model) }
                return try Evaluation(model: model, adapter: adapter, data: LlamaFixtures.data(model), batchSize: 4).loss
            }
            print("bf16-held vs f32-held \(adapterName ?? "base") on \(kind): \(losses[0]) vs \(losses[1]), relative \(abs(losses[0] - losses[1]) / losses[1])")
            #expect(abs(losses[0] - losses[1]) / losses[1] < 1e-6, "\(losses)")
        }
    }

    /// Training a LoRA adapter (every projection, DoRA too) on the bf16 weights held as bf16 takes
    /// the steps it takes on the same values held in f32, with exact products (`highest`): the
    /// losses and the adapter agree to f32 rounding (measured: bit for bit on the CPU and on lavapipe).
    /// The residual stream is pinned to f32, which the f32-held model takes by default: what is
    /// tested is the weights' storage (a bf16 residual is `ResidualDTypeTests`' and `LlamaFixtureTests`').
    @Test(arguments: BackendKind.allCases, [false, true])
    func bf16WeightsTrainAsF32Ones(_ kind: BackendKind, _ dora: Bool) throws {
        try onBackend(kind, exact: true) { backend in
            let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path(Self.bf16Model))
            var settings = TrainingSettings()
            (settings.learningRate, settings.batchSize, settings.steps, settings.shuffle) = (1e-2, 4, 3, false)
            settings.residualDType = .f32
            let runs = try [nil, DType.f32].map { dtype in
                let model = try LlamaModel(checkpoint: checkpoint, on: backend, dtype: dtype)
                let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dora: dora, targets: .allLinear), on: model, seed: 5)
                let trainer = try Trainer(model: model, adapter: adapter, data: LlamaFixtures.data(model), settings: settings, output: nil)
                try trainer.train()
                return (losses: trainer.losses, parameters: try adapter.parameters.map { try $0.tensor.floats() })
            }
            print("training on bf16-held vs f32-held weights (\(dora ? "DoRA" : "LoRA"), \(kind)): \(runs[0].losses) vs \(runs[1].losses)")
            for (got, want) in zip(runs[0].losses, runs[1].losses) { #expect(abs(got - want) <= 1e-6 * abs(want), "\(got) vs \(want)") }
            for (got, want) in zip(runs[0].parameters, runs[1].parameters) {
                #expect(relativeError(got, want.map(Double.init)) < 1e-6)
            }
        }
    }

    /// The allocator's counters, on a backend of the test's own (the shared ones count other
    /// tests' tensors too): loading the bf16 checkpoint as bf16 saves half the f32 bytes of its
    /// matrices, less the allocator's padding on Vulkan (256-byte multiples); the norms and biases
    /// stay f32. The weights' own bytes halve but for those vectors (1.5% here, 0.01% of an 8B model).
    @Test(arguments: BackendKind.allCases)
    func bf16WeightsHalveTheDeviceBytes(_ kind: BackendKind) throws {
        try onPrivateBackend(kind) { backend, padding in
            let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path(Self.bf16Model))
            let loaded = try [DType.f32, .bf16].map { dtype in
                let before = backend.memoryStatistics()[0].currentBytes
                let model = try LlamaModel(checkpoint: checkpoint, on: backend, dtype: dtype)
                return (used: backend.memoryStatistics()[0].currentBytes - before, model: model)
            }
            let (f32, bf16) = (loaded[0], loaded[1])
            let matrices = f32.model.tensors.filter { $0.tensor.shape.rank == 2 }
            let matrixBytes = matrices.reduce(0) { $0 + $1.tensor.byteCount }
            print("device bytes of \(Self.bf16Model) on \(kind): f32 \(f32.used), bf16 \(bf16.used); matrices \(matrixBytes) in f32")
            #expect(bf16.model.weightBytes == f32.model.weightBytes - matrixBytes / 2)
            #expect(abs((f32.used - bf16.used) - matrixBytes / 2) <= matrices.count * padding, "\(f32.used) − \(bf16.used) against \(matrixBytes / 2)")
            #expect(Double(bf16.model.weightBytes) < 0.51 * Double(f32.model.weightBytes))
        }
    }

    /// `--dtype` is f32, bf16 or f16: a quantized type is refused by name.
    @Test func quantizedDTypeIsRefused() throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path(Self.bf16Model))
        #expect { try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared, dtype: .nf4) } throws: {
            ($0 as? LowRankError)?.message.contains("--dtype takes f32, bf16 or f16") == true
        }
    }
}

/// Runs `body` on a backend of its own of `kind`, so that its allocator's counters see only this
/// test's tensors, with the most bytes that allocator pads one tensor by.
func onPrivateBackend(_ kind: BackendKind, _ body: (any Backend, Int) throws -> Void) throws {
    switch kind {
    case .cpu:
        try body(CPUBackend(threads: 1), 0)
    case .vulkan:
        let shared = try kind.open() as! VulkanBackend
        let backend = try VulkanBackend(instance: shared.instance, index: shared.info.index)
        try body(backend, 256)
        try backend.synchronize()
        let messages = try backend.drainValidationMessages()
        #expect(messages.isEmpty, "validation messages:\n\(messages.joined(separator: "\n"))")
    }
}
