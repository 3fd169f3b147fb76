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
}
