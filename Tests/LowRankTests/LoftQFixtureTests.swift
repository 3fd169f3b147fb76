import Foundation
import LowRank
import LowRankModels
import Testing

@Suite("LoftQ against PEFT's init_lora_weights=\"loftq\"")
struct LoftQFixtureTests {
    /// On down_proj of the tiny Llama (r 4; see tools/make_init_fixtures.py for why only there), 1
    /// and 2 iterations: the NF4 base each module is
    /// left with and the factors (each singular pair's sign aligned, as an SVD leaves it free) as
    /// PEFT's loftq_init made them with bitsandbytes. One iteration quantizes W itself, so its base
    /// is bitsandbytes' bit for bit; the second quantizes W − B·A, which PEFT computes in f32 and
    /// this in f64, so a block's absmax may differ in its last bits (measured: 7e-7 of the largest
    /// value at most, the same codes).
    @Test(arguments: [1, 2])
    func baseAndFactorsMatchPEFT(iterations: Int) throws {
        let fixture = fixturePath("peft-init")
        let name = "loftq-iter\(iterations)"
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let settings = try AdapterSettings(contentsOf: "\(fixture)/\(name)/\(ModelAdapter.configName)")
        let peft = try SafetensorsFile(path: "\(fixture)/\(name)/\(ModelAdapter.weightsName)")
        let base = try SafetensorsFile(path: "\(fixture)/\(name)-base.safetensors")
        var (worst, modules) = (0.0, 0)
        for (path, _) in model.linearModules where settings.targets(path) {
            let weight = try model.weight(path + ".weight")
            let config = settings.lora(for: path)
            let (adapter, quantizedFrom) = try LoRAAdapter.loftq(original: try weight.floats(), outFeatures: weight.shape[0], config: config,
                                                                  iterations: iterations, on: CPUBackend.shared)
            let quantized = try Tensor(quantizedFrom, shape: weight.shape, dtype: .nf4, on: CPUBackend.shared).floats()
            let peftBase = try base.floats(path + ".weight")
            if iterations == 1 { #expect(quantized == peftBase, "\(path): the NF4 base differs from bitsandbytes'") }
            #expect(relativeError(quantized, peftBase.map(Double.init)) < 1e-6, "\(path)")
            let (a, b) = (try adapter.a.floats(), try adapter.b.floats())
            let peftA = try peft.floats("base_model.model.\(path).lora_A.weight"), peftB = try peft.floats("base_model.model.\(path).lora_B.weight")
            let (r, dIn) = (config.rank, a.count / config.rank)
            let signs = SplitInitializationFixtureTests.signs(a[...], peftA[...], rank: r, free: true)
            worst = max(worst, relativeError(a.enumerated().map { $1 * signs[$0 / dIn] }, peftA.map(Double.init)))
            worst = max(worst, relativeError(b.enumerated().map { $1 * signs[$0 % r] }, peftB.map(Double.init)))
            modules += 1
        }
        print("LoftQ with \(iterations) iterations: worst relative difference from PEFT's factors \(worst)")
        #expect(modules == 2)
        #expect(worst < 5e-5)
    }

    /// More iterations change the NF4 base: a new adapter (as `--init loftq --loftq-iter 2`) puts
    /// PEFT's base into the NF4 model (within 1e-6, as above); saved, the base lies beside the
    /// adapter (`loftq_base.safetensors`) and loading the adapter on a fresh NF4 model gives the
    /// same loss. On the f32 model (as PEFT made it, its other projections unquantized, and as
    /// `lowrank merge` loads it) the adapter with its base evaluates to PEFT's loss within 1e-4, as
    /// does PEFT's own adapter with the base PEFT left, and `lowrank merge` writes that model.
    /// Without the base the adapter is refused by name.
    @Test(arguments: BackendKind.allCases)
    func severalIterationsCarryTheirBase(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let fixture = fixturePath("peft-init")
            let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-llama"))
            let nf4 = { try LlamaModel(checkpoint: checkpoint, on: backend, quantize: .nf4) }
            let f32 = { try LlamaModel(checkpoint: checkpoint, on: backend) }
            let settings = try AdapterSettings(contentsOf: "\(fixture)/loftq-iter2/\(ModelAdapter.configName)")
            #expect(settings.loftqIterations == 2)
            let model = try nf4()
            let adapter = try ModelAdapter.starting(settings, as: .loftq(iterations: 2), on: model, seed: 0)
            let peftBase = try SafetensorsFile(path: "\(fixture)/loftq-iter2-base.safetensors")
            for name in peftBase.names {
                #expect(relativeError(try model.weight(name).floats(), try peftBase.floats(name).map(Double.init)) < 1e-6, "\(name)")
            }
            let data = try LlamaFixtures.data(model)
            let loss = { (model: LlamaModel, adapter: ModelAdapter?) in try Evaluation(model: model, adapter: adapter, data: data, batchSize: 6).loss }
            let expected = try JSON.parse(FileIO.read("\(fixture)/expected.json"))["loss"]!["loftq-iter2"]!.number!
            let ours = try loss(model, adapter)
            try withTemporaryFolder { folder in
                try adapter.save(to: folder + "/ours")
                #expect(FileIO.exists(folder + "/ours/" + ModelAdapter.loftqBaseName))
                let fresh = try nf4()
                #expect(try loss(fresh, try ModelAdapter(contentsOf: folder + "/ours", on: fresh)) == ours)
                let unquantized = try f32()
                let onF32 = try ModelAdapter(contentsOf: folder + "/ours", on: unquantized)
                let oursOnF32 = try loss(unquantized, onF32)
                print("LoftQ with 2 iterations on the f32 model on \(kind): loss \(oursOnF32) vs PEFT's \(expected)")
                #expect(abs(oursOnF32 - expected) / expected < 1e-4)
                try checkpoint.write(merging: onF32, of: unquantized, to: folder + "/merged")
                let merged = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: folder + "/merged"), on: backend)
                #expect(abs(try loss(merged, nil) - oursOnF32) / oursOnF32 < 1e-6)
                try Self.peftAdapterWithBase(in: folder + "/peft")
                let other = try f32()
                let peft = try loss(other, try ModelAdapter(contentsOf: folder + "/peft", on: other))
                print("PEFT's LoftQ adapter and base: loss \(peft) vs PEFT's \(expected)")
                #expect(abs(peft - expected) / expected < 1e-6)
                try FileIO.removeTree(folder + "/ours/" + ModelAdapter.loftqBaseName)
                #expect { try ModelAdapter(contentsOf: folder + "/ours", on: try nf4()) } throws: { "\($0)".contains("loftq_base.safetensors is missing") }
            }
        }
    }

    /// PEFT's LoftQ adapter with 2 iterations and the base PEFT left, under this file name, in `folder`.
    static func peftAdapterWithBase(in folder: String) throws {
        let fixture = fixturePath("peft-init")
        try FileIO.makeDirectories(folder)
        for (source, file) in [("loftq-iter2/" + ModelAdapter.configName, ModelAdapter.configName), ("loftq-iter2/" + ModelAdapter.weightsName, ModelAdapter.weightsName),
                               ("loftq-iter2-base.safetensors", ModelAdapter.loftqBaseName)] {
            try FileIO.read("\(fixture)/\(source)").withUnsafeBytes { try FileIO.writeAtomically(folder + "/" + file, $0) }
        }
    }

    /// Three AdamW steps from PEFT's LoftQ start with 2 iterations (its adapter with the base it
    /// left, on the f32 model as PEFT trained it) against torch.optim.AdamW: losses within 1e-4,
    /// the factors within 1e-3 of their largest value.
    @Test(arguments: BackendKind.allCases)
    func threeStepsFromItsBaseMatchPyTorch(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            try withTemporaryFolder { folder in
                try Self.peftAdapterWithBase(in: folder)
                let model = try LlamaFixtures.model(on: backend)
                let adapter = try ModelAdapter(contentsOf: folder, on: model)
                let trainer = try Trainer(model: model, adapter: adapter, data: LlamaFixtures.data(model),
                                          settings: LlamaFixtures.trainingSettings(PEFTConfigFixtures.expected["train"]!), output: nil)
                try trainer.train()
                let expected = try JSON.parse(FileIO.read(fixturePath("peft-init") + "/expected.json"))["train"]!["loftq-iter2"]!.array!.map { $0.number! }
                for (got, want) in zip(trainer.losses, expected) { #expect(abs(Double(got) - want) / want < 1e-4, "loss \(got) vs PyTorch \(want)") }
                let reference = try SafetensorsFile(path: fixturePath("peft-init") + "/train3-loftq-iter2/" + ModelAdapter.weightsName)
                let worst = try adapter.parameters.map { name, tensor in relativeError(try tensor.floats(), try reference.floats(name).map(Double.init)) }.max()!
                print("three AdamW steps from LoftQ's base on \(kind): worst relative difference from PyTorch \(worst)")
                #expect(worst < 1e-3)
            }
        }
    }
}
