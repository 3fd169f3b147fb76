import Foundation
import LowRank
import LowRankModels
import Testing

/// `Tests/Fixtures/peft`, made by `tools/make_peft_config_fixtures.py` with PEFT + PyTorch on the tiny Llama.
enum PEFTConfigFixtures {
    static let folder = fixturePath("peft")
    static func path(_ name: String) -> String { folder + "/" + name }
    static let expected: JSON = try! JSON.parse(FileIO.read(path("expected.json")))

    /// The fixture model each adapter was made on: the tiny Qwen2 (q/k/v biases, tied embeddings)
    /// for the bias ones, the `-tied` ones and the `-qwen2` ones.
    static func modelName(_ adapter: String) -> String {
        adapter.hasPrefix("bias-") || adapter.contains("-tied") || adapter.hasSuffix("-qwen2") ? "tiny-qwen2-bf16" : "tiny-llama"
    }

    /// The tensors `adapter` is saved as: its parameters, and a tied copy's second name (PEFT's `ensure_weight_tying`).
    static func savedNames(_ adapter: ModelAdapter) -> Set<String> {
        Set(adapter.parameters.map(\.name) + adapter.saved.filter(\.tiedHead).map { _ in "base_model.model.lm_head.weight" })
    }

    /// Three AdamW steps from the PEFT adapter `start` (batches in order), `loraPlusRatio` as
    /// `create_loraplus_optimizer`'s; returns the losses and the adapter. The residual stream is
    /// f32, as torch's steps compute the bf16 Qwen2 in f32 (the tiny Llama is f32, its default).
    static func train(_ start: String, on backend: any Backend, loraPlusRatio: Double? = nil) throws -> (losses: [Float], adapter: ModelAdapter) {
        let model = try LlamaFixtures.model(modelName(start), on: backend)
        let adapter = try ModelAdapter(contentsOf: path(start), on: model)
        var settings = LlamaFixtures.trainingSettings(expected["train"]!)
        settings.loraPlusRatio = loraPlusRatio
        settings.residualDType = .f32
        let trainer = try Trainer(model: model, adapter: adapter, data: LlamaFixtures.data(model), settings: settings, output: nil)
        try trainer.train()
        return (trainer.losses, adapter)
    }

    /// `lowrank merge` of PEFT's adapter `name` into its fixture model (on the CPU, in the
    /// checkpoint's dtype), in a temporary folder: `body` gets the adapter, the model and the merged checkpoint.
    static func merging(_ name: String, _ body: (ModelAdapter, LlamaModel, HuggingFaceCheckpoint) throws -> Void) throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path(modelName(name)))
        let model = try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared)
        let adapter = try ModelAdapter(contentsOf: path(name), on: model)
        try withTemporaryFolder { folder in
            try checkpoint.write(merging: adapter, of: model, to: folder + "/merged")
            try body(adapter, model, try HuggingFaceCheckpoint(folder: folder + "/merged"))
        }
    }

    /// max over tensors of the relative difference from the adapter PEFT saved in `folder`, which must hold the same tensors.
    static func worstDifference(_ adapter: ModelAdapter, _ folder: String) throws -> Double {
        let reference = try SafetensorsFile(path: path(folder + "/" + ModelAdapter.weightsName))
        #expect(Set(reference.names) == savedNames(adapter))
        return try adapter.parameters.map { name, tensor in relativeError(try tensor.floats(), try reference.floats(name).map(Double.init)) }.max()!
    }
}

@Suite("PEFT's LoRA configuration fields against PEFT")
struct PEFTConfigFixtureTests {
    /// rank_pattern, alpha_pattern, exclude_modules, layers_to_transform (a list with
    /// layers_pattern, and an integer without) select and shape the modules PEFT adapted, and
    /// bias "lora_only" / "all" (on the tiny Qwen2) adds the trained biases PEFT saved, and
    /// trainable_token_indices the embedding rows PEFT saved (in place of the model's; on the tied
    /// Qwen2 in its LM head's too), and modules_to_save the embedding and LM head PEFT trained in
    /// full (apart on the tied Qwen2, or as one shared copy with ensure_weight_tying), and the RMSNorms and projections
    /// (a LoRA target among them, the copy replacing the adapter; Qwen2's q_proj with its bias) it trained in full: the adapter loads with exactly PEFT's tensors and evaluates to PEFT's loss within 1e-4 relative.
    /// With exact products (`highest`), as PEFT's reference computes the bf16 Qwen2 in f32: what is
    /// tested is PEFT's configuration, not bf16 rounding (the CPU's default `medium` is 1.8e-4 to 5.4e-4
    /// off it on the Qwen2 adapters, PyTorch's bf16 scale; `LlamaFixtureTests` holds `medium` to it).
    @Test(arguments: BackendKind.allCases, ["patterns", "layers", "layer0", "bias-lora-only", "bias-all", "tokens", "tokens-tied", "modules", "modules-tied", "modules-tied-shared", "modules-norms", "modules-proj", "modules-proj-qwen2"])
    func loadsAndEvaluatesAsPEFT(_ kind: BackendKind, _ name: String) throws {
        try onBackend(kind, exact: true) { backend in
            let model = try LlamaFixtures.model(PEFTConfigFixtures.modelName(name), on: backend)
            let adapter = try ModelAdapter(contentsOf: PEFTConfigFixtures.path(name), on: model)
            let file = try SafetensorsFile(path: PEFTConfigFixtures.path(name + "/" + ModelAdapter.weightsName))
            #expect(Set(file.names) == PEFTConfigFixtures.savedNames(adapter))
            let result = try Evaluation(model: model, adapter: adapter, data: LlamaFixtures.data(model), batchSize: 6)
            let expected = PEFTConfigFixtures.expected["loss"]![name]!.number!
            print("eval \(name) on \(kind): \(result.loss) vs PEFT \(expected), relative \(abs(result.loss - expected) / expected)")
            #expect(abs(result.loss - expected) / expected < 1e-4)
        }
    }

    /// A new adapter from the same settings has PEFT's modules and shapes (the config read back
    /// from what we write, so both directions agree).
    @Test(arguments: ["patterns", "layers", "layer0", "bias-lora-only", "bias-all", "tokens", "tokens-tied", "modules", "modules-tied", "modules-tied-shared", "modules-norms", "modules-proj", "modules-proj-qwen2"])
    func newAdapterHasPEFTsModules(_ name: String) throws {
        let model = try LlamaFixtures.model(PEFTConfigFixtures.modelName(name), on: CPUBackend.shared)
        let settings = try AdapterSettings(contentsOf: PEFTConfigFixtures.path(name + "/" + ModelAdapter.configName))
        try withTemporaryFolder { folder in
            try ModelAdapter(settings: settings, on: model, seed: 1).save(to: folder)
            let ours = try SafetensorsFile(path: folder + "/" + ModelAdapter.weightsName)
            let peft = try SafetensorsFile(path: PEFTConfigFixtures.path(name + "/" + ModelAdapter.weightsName))
            #expect(ours.entries.mapValues(\.shape) == peft.entries.mapValues(\.shape))
            var written = settings
            written.architecture = nil  // PEFT's auto_mapping, which we do not write
            #expect(try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName) == written)
        }
    }

    /// Three AdamW steps from PEFT's adapter against torch.optim.AdamW: losses within 1e-4, every
    /// adapter tensor (the trained biases, token rows and modules' copies too) within 1e-3 of its largest value.
    /// With exact products (`highest`), as torch's steps compute the bf16 Qwen2 in f32: under the CPU's
    /// default `medium` three steps at lr 1e-2 carry its rounding into AdamW's nearly sign-sized
    /// updates of small gradients (losses 2e-4 to 4e-3 off, tensors 3% to 18%), which tests bf16
    /// rounding rather than PEFT's configuration.
    @Test(arguments: BackendKind.allCases, ["patterns", "layers", "bias-lora-only", "bias-all", "tokens", "tokens-tied", "modules", "modules-tied", "modules-tied-shared", "modules-norms", "modules-proj", "modules-proj-qwen2"])
    func threeStepsMatchPyTorch(_ kind: BackendKind, _ name: String) throws {
        try onBackend(kind, exact: true) { backend in
            let (losses, adapter) = try PEFTConfigFixtures.train(name, on: backend)
            let expected = PEFTConfigFixtures.expected["train"]![name]!.array!.map { $0.number! }
            for (got, want) in zip(losses, expected) { #expect(abs(Double(got) - want) / want < 1e-4, "loss \(got) vs PyTorch \(want)") }
            let worst = try PEFTConfigFixtures.worstDifference(adapter, "train3-" + name)
            print("three AdamW steps, \(name) on \(kind): worst relative difference from PyTorch \(worst)")
            #expect(worst < 1e-3)
        }
    }

    /// `lowrank merge` writes the trained biases (PEFT's merge_and_unload keeps the trained
    /// bias tensors in the model), in the checkpoint's dtype, adapted modules' and others'.
    @Test func mergeWritesTheTrainedBiases() throws {
        try PEFTConfigFixtures.merging("bias-all") { adapter, _, merged in
            #expect(adapter.biases.map(\.path).contains("model.layers.0.self_attn.q_proj"))
            for (path, bias) in adapter.biases {
                let written = try merged.tensor(path + ".bias", as: .f32, on: CPUBackend.shared).floats()
                #expect(written == (try bias.floats()).map { rounded($0, to: .bf16) }, "\(path).bias")
            }
        }
    }

    /// Matching as PEFT's check_target_module_exists and get_pattern_key: a whole path in
    /// target_modules ignores layers_to_transform; exclusion wins over targeting; a rank key
    /// matches the end of the path after a dot, the first in sorted order winning.
    @Test func matchingRules() throws {
        let q0 = "model.layers.0.self_attn.q_proj", q1 = "model.layers.1.self_attn.q_proj"
        let layer1 = try AdapterSettings(targets: .names([q0, "q_proj"]), layersToTransform: [1])
        #expect(layer1.targets(q0) && layer1.targets(q1) && !layer1.targets("model.layers.0.self_attn.k_proj"))
        let excluded = try AdapterSettings(targets: .allLinear, excludeModules: .pattern(#".*\.0\..*"#))
        #expect(!excluded.targets(q0) && excluded.targets(q1))
        let ranks = try AdapterSettings(rank: 8, rankPattern: ["q_proj": 2, "self_attn.q_proj": 3, "layers.1.self_attn.q_proj": 4, "proj": 5])
        #expect(ranks.lora(for: q0).rank == 2 && ranks.lora(for: "model.layers.0.mlp.up_proj").rank == 8)
        #expect(ranks.lora(for: "model.layers.0.self_attn.xq_proj").rank == 8)
        #expect { try AdapterSettings(targets: .pattern(".*q_proj"), layersToTransform: [0]) } throws: { "\($0)".contains("layers_to_transform") }
        #expect { try AdapterSettings(targets: .allLinear, layersToTransform: [0]) } throws: { "\($0)".contains("all-linear") }
        #expect { try AdapterSettings(layersPattern: ["layers"]) } throws: { "\($0)".contains("layers_pattern needs layers_to_transform") }
        #expect { try AdapterSettings(rankPattern: ["q_proj": 0]) } throws: { "\($0)".contains("rank_pattern[\"q_proj\"]") }
        #expect { try AdapterSettings(alphaPattern: ["(q": 2]) } throws: { "\($0)".contains("alpha_pattern[\"(q\"]") }
    }
}

@Suite("LoRA+ against PEFT's create_loraplus_optimizer")
struct LoRAPlusTests {
    /// Three steps with B's learning rate 16 × A's: losses within 1e-4 and the adapter within 1e-3 of PyTorch's.
    @Test(arguments: BackendKind.allCases)
    func threeStepsMatchPEFT(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let train = PEFTConfigFixtures.expected["train"]!
            let (losses, adapter) = try PEFTConfigFixtures.train("patterns", on: backend, loraPlusRatio: train["loraplus_lr_ratio"]!.number!)
            let expected = train["loraplus"]!.array!.map { $0.number! }
            for (got, want) in zip(losses, expected) { #expect(abs(Double(got) - want) / want < 1e-4, "loss \(got) vs PyTorch \(want)") }
            let worst = try PEFTConfigFixtures.worstDifference(adapter, "train3-loraplus")
            print("three LoRA+ steps on \(kind): worst relative difference from PyTorch \(worst)")
            #expect(worst < 1e-3)
        }
    }

    @Test func refusesARatioThatIsNotPositive() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let adapter = try ModelAdapter(contentsOf: PEFTConfigFixtures.path("patterns"), on: model)
        for ratio in [0, -1, .nan] {
            var settings = TrainingSettings()
            settings.loraPlusRatio = ratio
            #expect { try AdapterTraining(model: model, adapter: adapter, settings: settings, totalSteps: nil) } throws: { "\($0)".contains("LoRA+") }
        }
    }
}

/// A weight-splitting initialisation's fixture: PiSSA's in Tests/Fixtures/peft, the others' in
/// Tests/Fixtures/peft-init (tools/make_init_fixtures.py).
struct SplitFixture: CustomTestStringConvertible, Sendable {
    let initialization: SplitInitialization
    let folder: String
    /// The fixture's folder and key: the initialisation's PEFT name unless told.
    var named: String? = nil
    var name: String { named ?? initialization.peftName }
    var testDescription: String { name }
    func path(_ file: String) -> String { folder + "/" + file }
    var expected: JSON { try! JSON.parse(FileIO.read(path("expected.json"))) }
    /// An SVD leaves each singular pair's sign free (PEFT's runs in f32, ours in f64); a QR
    /// decomposition by Householder reflections does not.
    var signsAreFree: Bool { initialization != .olora }

    static let pissa = SplitFixture(initialization: .pissa(iterations: nil), folder: PEFTConfigFixtures.folder)
    static let olora = SplitFixture(initialization: .olora, folder: fixturePath("peft-init"))
    /// CorDA's in Tests/Fixtures/peft-corda (tools/make_corda_fixture.py), ipm and kpm.
    static let corda = SplitFixture(initialization: .corda(.ipm), folder: fixturePath("peft-corda"))
    static let cordaKPM = SplitFixture(initialization: .corda(.kpm), folder: fixturePath("peft-corda"), named: "corda-kpm")
    static let exact = [pissa, olora, corda]
}

@Suite("PiSSA, OLoRA and CorDA against PEFT's init_lora_weights")
struct SplitInitializationFixtureTests {
    /// Each pair's sign of `got` aligned with `reference` (r pairs, A's rows `[r, d_in]`), where the
    /// decomposition leaves it free.
    static func signs(_ a: ArraySlice<Float>, _ reference: ArraySlice<Float>, rank r: Int, free: Bool) -> [Float] {
        let dIn = a.count / r
        return (0..<r).map { k in
            let (row, referenceRow) = (a.startIndex + k * dIn, reference.startIndex + k * dIn)
            let dot = zip(a[row..<(row + dIn)], reference[referenceRow..<(referenceRow + dIn)]).reduce(0) { $0 + $1.0 * $1.1 }
            return free && dot < 0 ? -1 : 1
        }
    }

    /// On q, v and down of the tiny Llama (r 4, alpha 8): A and B as PEFT initialised them and the
    /// residual W it leaves, within 5e-5 of the largest value (PEFT's decompositions run in f32, ours
    /// in f64; measured 9.8e-6 for PiSSA on both backends); CorDA's covariances from the fixture
    /// rows forwarded on each backend.
    @Test(arguments: BackendKind.allCases, SplitFixture.exact + [SplitFixture.cordaKPM])
    func factorsAndResidualMatchPEFT(_ kind: BackendKind, _ fixture: SplitFixture) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let settings = try AdapterSettings(contentsOf: fixture.path(fixture.name + "/" + ModelAdapter.configName))
            let peft = try SafetensorsFile(path: fixture.path(fixture.name + "/" + ModelAdapter.weightsName))
            let residual = try SafetensorsFile(path: fixture.path(fixture.name + "-residual.safetensors"))
            let split = try ModelAdapter(splitting: settings, by: fixture.initialization, on: model, data: LlamaFixtures.data(model))
            var worst = 0.0
            for (path, layer) in split.layers {
                let (weight, adapter) = (try model.weight(path + ".weight"), layer.lora)
                let config = adapter.config
                let (a, b) = (try adapter.a.floats(), try adapter.b.floats())
                let peftA = try peft.floats("base_model.model.\(path).lora_A.weight"), peftB = try peft.floats("base_model.model.\(path).lora_B.weight")
                let (r, dIn) = (config.rank, a.count / config.rank)
                let signs = Self.signs(a[...], peftA[...], rank: r, free: fixture.signsAreFree)
                worst = max(worst, relativeError(a.enumerated().map { $1 * signs[$0 / dIn] }, peftA.map(Double.init)))
                worst = max(worst, relativeError(b.enumerated().map { $1 * signs[$0 % r] }, peftB.map(Double.init)))
                worst = max(worst, relativeError(try weight.floats(), try residual.floats(path + ".weight").map(Double.init)))
            }
            print("\(fixture.name) on \(kind): worst relative difference from PEFT \(worst)")
            #expect(worst < 5e-5)
        }
    }

    /// `--init pissa|olora`, 3 AdamW steps and `save` against PEFT's, saved with
    /// path_initial_model_for_weight_conversion: losses within 1e-4, the converted rank-2r tensors
    /// within 1e-3 (each pair's sign aligned where the decomposition leaves it free), the config PEFT
    /// writes (r 8, alpha 16), and the saved adapter on the original model evaluating to the loss
    /// of PEFT's trained model within 1e-4; a checkpoint in that form restores the trained factors.
    @Test(arguments: BackendKind.allCases, SplitFixture.exact)
    func trainedAdapterIsSavedForTheOriginalModel(_ kind: BackendKind, _ fixture: SplitFixture) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let settings = try AdapterSettings(contentsOf: fixture.path(fixture.name + "/" + ModelAdapter.configName))
            let adapter = try ModelAdapter(splitting: settings, by: fixture.initialization, on: model, data: LlamaFixtures.data(model))
            let trainer = try Trainer(model: model, adapter: adapter, data: LlamaFixtures.data(model),
                                      settings: LlamaFixtures.trainingSettings(PEFTConfigFixtures.expected["train"]!), output: nil)
            try trainer.train()
            let expected = fixture.expected["train"]![fixture.name]!.array!.map { $0.number! }
            for (got, want) in zip(trainer.losses, expected) { #expect(abs(Double(got) - want) / want < 1e-4, "loss \(got) vs PyTorch \(want)") }
            try withTemporaryFolder { folder in
                try adapter.save(to: folder)
                let ours = try SafetensorsFile(path: folder + "/" + ModelAdapter.weightsName)
                let peft = try SafetensorsFile(path: fixture.path("train3-\(fixture.name)/" + ModelAdapter.weightsName))
                #expect(Set(ours.names) == Set(peft.names))
                var worst = 0.0
                for nameA in ours.names where nameA.hasSuffix("lora_A.weight") {
                    let nameB = nameA.replacingOccurrences(of: "lora_A", with: "lora_B")
                    let (a, b, peftA, peftB) = (try ours.floats(nameA), try ours.floats(nameB), try peft.floats(nameA), try peft.floats(nameB))
                    let (twoR, dIn) = (try ours.entry(nameA).shape[0], try ours.entry(nameA).shape[1]), r = twoR / 2
                    // Pair k's sign, from its starting row r + k of A' (which training leaves as the split made it).
                    let signs = Self.signs(a[(r * dIn)...], peftA[(r * dIn)...], rank: r, free: fixture.signsAreFree)
                    worst = max(worst, relativeError(a.enumerated().map { $1 * signs[($0 / dIn) % r] }, peftA.map(Double.init)))
                    worst = max(worst, relativeError(b.enumerated().map { $1 * signs[($0 % twoR) % r] }, peftB.map(Double.init)))
                }
                print("\(fixture.name) trained 3 steps on \(kind), converted: worst relative difference from PEFT \(worst)")
                #expect(worst < 1e-3)
                let saved = try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName)
                let peftSettings = try AdapterSettings(contentsOf: fixture.path("train3-\(fixture.name)/" + ModelAdapter.configName))
                #expect(saved.rank == peftSettings.rank && saved.alpha == peftSettings.alpha && saved.rank == 2 * settings.rank)

                let original = try LlamaFixtures.model(on: backend)
                let loaded = try ModelAdapter(contentsOf: folder, on: original)
                let loss = try Evaluation(model: original, adapter: loaded, data: LlamaFixtures.data(original), batchSize: 6).loss
                let want = fixture.expected["loss"]![fixture.name + "-trained"]!.number!
                print("\(fixture.name) adapter on the original model on \(kind): \(loss) vs PEFT \(want)")
                #expect(abs(loss - want) / want < 1e-4)

                let trained = try adapter.parameters.map { try $0.tensor.floats() }
                for (_, tensor) in adapter.parameters { try tensor.assign([Float](repeating: 0, count: tensor.shape.count)) }
                try adapter.restore(from: folder)
                #expect(try adapter.parameters.map { try $0.tensor.floats() } == trained)
            }
        }
    }
}

@Suite("PiSSA with a randomized SVD (pissa_niter_N)")
struct RandomizedPiSSATests {
    /// On a matrix whose singular values fall tenfold one after another, 4 subspace iterations find
    /// the top 3 triplets (the error falls as (σ₄/σ₃)^(2·4+1) = 1e-9), either side the wider (the
    /// algorithm transposes a wide one).
    @Test(arguments: [(40, 24), (24, 40)])
    func findsTheTopTripletsOfADecayingSpectrum(_ shape: (Int, Int)) throws {
        let (m, n, q) = (shape.0, shape.1, 3)
        let k = min(m, n)
        let left = try QRDecomposition(randomValues(m * k, seed: 1).map(Double.init), rows: m, columns: k).q
        let right = try QRDecomposition(randomValues(n * k, seed: 2).map(Double.init), rows: n, columns: k).q
        let spectrum = (0..<k).map { pow(0.1, Double($0)) }
        let matrix = (0..<m * n).map { i in (0..<k).reduce(0.0) { $0 + left[(i / n) * k + $1] * spectrum[$1] * right[(i % n) * k + $1] } }
        let svd = try SingularValueDecomposition(randomized: matrix, rows: m, columns: n, rank: q, iterations: 4, seed: 7)
        for j in 0..<q { #expect(abs(svd.s[j] - spectrum[j]) < 1e-8 * spectrum[0], "σ\(j) = \(svd.s[j]), want \(spectrum[j])") }
        let truncated = (0..<m * n).map { i in (0..<q).reduce(0.0) { $0 + left[(i / n) * k + $1] * spectrum[$1] * right[(i % n) * k + $1] } }
        let got = (0..<m * n).map { i in (0..<q).reduce(0.0) { $0 + svd.u[(i / n) * q + $1] * svd.s[$1] * svd.vt[$1 * n + i % n] } }
        #expect(relativeError(got.map(Float.init), truncated) < 1e-6)
        #expect(throws: LowRankError.self) { try SingularValueDecomposition(randomized: matrix, rows: m, columns: n, rank: k + 1, iterations: 1, seed: 0) }
    }

    /// `pissa_niter_4` on the tiny Llama: the model with the adapter is the model (the loss PEFT
    /// gives both), and its rank-r approximation is as good as PEFT's on the same weights — a
    /// randomized SVD's test matrix differs between generators, so the factors cannot be compared;
    /// their distance from the exact truncation can (summed over the modules; these random weights
    /// have a flat spectrum, so neither is close to it with q = r).
    @Test(arguments: BackendKind.allCases)
    func approximatesAsWellAsPEFT(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let fixture = SplitFixture(initialization: .pissa(iterations: 4), folder: fixturePath("peft-init"))
            let model = try LlamaFixtures.model(on: backend)
            let originals = try Dictionary(uniqueKeysWithValues: model.linearModules.map { ($0.path, try model.weight($0.path + ".weight").floats()) })
            let settings = try AdapterSettings(contentsOf: fixture.path(fixture.name + "/" + ModelAdapter.configName))
            #expect(settings.rank == 4)
            let adapter = try ModelAdapter(splitting: settings, by: fixture.initialization, on: model, seed: 3)
            let loss = try Evaluation(model: model, adapter: adapter, data: LlamaFixtures.data(model), batchSize: 6).loss
            let want = fixture.expected["loss"]!["pissa_niter_4"]!.number!
            #expect(abs(loss - want) / want < 1e-5, "loss \(loss) vs PEFT \(want)")
            var (ours, peft) = (0.0, 0.0)
            for (path, layer) in adapter.layers {
                let (dOut, dIn) = (layer.lora.b.shape[0], layer.lora.a.shape[1])
                let exact = try SingularValueDecomposition(originals[path]!.map(Double.init), rows: dOut, columns: dIn)
                let truncated = (0..<dOut * dIn).map { i in (0..<4).reduce(0.0) { $0 + exact.u[(i / dIn) * exact.k + $1] * exact.s[$1] * exact.vt[$1 * dIn + i % dIn] } }
                let (a, b) = (try layer.lora.a.floats(), try layer.lora.b.floats())
                let product = (0..<dOut * dIn).map { i in Float((0..<4).reduce(0.0) { $0 + 2 * Double(b[(i / dIn) * 4 + $1]) * Double(a[$1 * dIn + i % dIn]) }) }
                ours += relativeError(product, truncated)
                peft += fixture.expected["svd_error"]![path]!.number!
            }
            print("pissa_niter_4 on \(kind): summed distance from the exact truncation \(ours), PEFT's \(peft)")
            #expect(ours < 1.5 * peft)
        }
    }
}
