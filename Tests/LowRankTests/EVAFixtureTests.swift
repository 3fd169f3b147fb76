import Foundation
import LowRank
import LowRankModels
import Testing

/// `Tests/Fixtures/peft-eva`, made by `tools/make_eva_fixture.py` with PEFT's
/// `initialize_lora_eva_weights` on the tiny Llama: q, k, v, o, gate and up, r 8, alpha 16, batches
/// of 2 rows in order (sized so that PEFT's randomized SVD is the exact one).
enum EVAFixtures {
    static let folder = fixturePath("peft-eva")
    static func path(_ name: String) -> String { folder + "/" + name }
    static let expected: JSON = try! JSON.parse(FileIO.read(path("expected.json")))
    static let settings = try! AdapterSettings(rank: 8, alpha: 16, targets: .names(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"]))

    /// The fixture case's EvaConfig and data: `eva` PEFT's defaults on the rows as they are;
    /// `eva-masked` whitened, scaling factors kept, and each row's first positions labelled -100.
    static func start(_ name: String, on model: LlamaModel) throws -> ModelAdapter {
        let data = try LlamaFixtures.data(model)
        guard name == "eva-masked" else { return try ModelAdapter(eva: settings, EVASettings(), on: model, data: data, batchSize: 2) }
        let masked = expected["masked_positions"]!.int!
        let labels = data.rows.map { row in row.enumerated().map { $0 < masked ? Int32(-100) : $1 } }
        return try ModelAdapter(eva: settings, EVASettings(whiten: true, adjustScalingFactors: false), on: model,
                                data: try TokenDataset(rows: data.rows, labels: labels, vocabularySize: model.config.vocabularySize), batchSize: 2)
    }
}

@Suite("EVA against PEFT's initialize_lora_eva_weights")
struct EVAFixtureTests {
    /// The layers' inputs forwarded on each backend and their incremental PCA on the CPU give PEFT's
    /// redistributed ranks and alphas (its rank_pattern, alpha_pattern and target_modules) and its
    /// A, each direction's sign fixed by PCA's svd_flip in both (largest entry positive), within
    /// 1e-4 of the largest value; B = 0.
    @Test(arguments: BackendKind.allCases, ["eva", "eva-masked"])
    func startsAsPEFT(_ kind: BackendKind, _ name: String) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let adapter = try EVAFixtures.start(name, on: model)
            let peft = try AdapterSettings(contentsOf: EVAFixtures.path(name + "/" + ModelAdapter.configName))
            #expect(adapter.settings.rankPattern == peft.rankPattern)
            #expect(adapter.settings.alphaPattern == peft.alphaPattern)
            guard case .names(let ours) = adapter.settings.targets, case .names(let theirs) = peft.targets else {
                Issue.record("EVA's target_modules are the modules it kept, by path")
                return
            }
            #expect(Set(ours) == Set(theirs))
            let reference = try SafetensorsFile(path: EVAFixtures.path(name + "/" + ModelAdapter.weightsName))
            #expect(Set(reference.names) == Set(adapter.parameters.map(\.name)))
            var worst = 0.0
            for (key, tensor) in adapter.parameters where key.hasSuffix("lora_A.weight") {
                worst = max(worst, relativeError(try tensor.floats(), try reference.floats(key).map(Double.init)))
            }
            for (key, tensor) in adapter.parameters where key.hasSuffix("lora_B.weight") { #expect(try tensor.floats().allSatisfy { $0 == 0 }) }
            print("EVA \(name) on \(kind): A's worst relative difference from PEFT \(worst)")
            #expect(worst < 1e-4)
        }
    }

    /// Three AdamW steps from EVA's start against PEFT's: losses within 1e-4, every tensor within
    /// 1e-3 of its largest value; the adapter saved with EVA's patterns loads back as PEFT's loads.
    @Test(arguments: BackendKind.allCases)
    func threeStepsMatchPyTorch(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let adapter = try EVAFixtures.start("eva", on: model)
            let trainer = try Trainer(model: model, adapter: adapter, data: LlamaFixtures.data(model),
                                      settings: LlamaFixtures.trainingSettings(PEFTConfigFixtures.expected["train"]!), output: nil)
            try trainer.train()
            let expected = EVAFixtures.expected["train"]!["eva"]!.array!.map { $0.number! }
            for (got, want) in zip(trainer.losses, expected) { #expect(abs(Double(got) - want) / want < 1e-4, "loss \(got) vs PyTorch \(want)") }
            let reference = try SafetensorsFile(path: EVAFixtures.path("train3-eva/" + ModelAdapter.weightsName))
            let worst = try adapter.parameters.map { relativeError(try $1.floats(), try reference.floats($0).map(Double.init)) }.max()!
            print("EVA, three AdamW steps on \(kind): worst relative difference from PyTorch \(worst)")
            #expect(worst < 1e-3)
            try withTemporaryFolder { folder in
                try adapter.save(to: folder)
                let loaded = try ModelAdapter(contentsOf: folder, on: model)
                #expect(loaded.layers.map { $0.adapter.lora.config } == adapter.layers.map { $0.adapter.lora.config })
                let peft = try ModelAdapter(contentsOf: EVAFixtures.path("train3-eva"), on: model)
                #expect(loaded.layers.map { $0.adapter.lora.config } == peft.layers.map { $0.adapter.lora.config })
            }
        }
    }

    @Test func refusesWhatPEFTRefuses() throws {
        #expect(throws: LowRankError.self) { try EVASettings(rho: 0.5).validate() }
        #expect(throws: LowRankError.self) { try EVASettings(tau: 1.5).validate() }
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let data = try LlamaFixtures.data(model)
        // round(8·5) = 40 directions of q's 32 inputs.
        #expect(throws: LowRankError.self) { try ModelAdapter(eva: EVAFixtures.settings, EVASettings(rho: 5), on: model, data: data, batchSize: 2) }
        #expect(throws: LowRankError.self) { try ModelAdapter.starting(EVAFixtures.settings, as: .eva(EVASettings()), on: model, seed: 0) }
    }
}
