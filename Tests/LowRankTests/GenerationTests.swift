import Foundation
import LowRank
@testable import LowRankModels
import Testing

/// `lowrank generate`'s engine against transformers + PEFT (`tools/make_generation_fixture.py` writes
/// `Tests/Fixtures/llama/generation.json`): greedy ids on the tiny Llama and Qwen2 fixtures, with no
/// adapter, LoRA and DoRA applied unmerged, and stopping at EOS; the KV cache's logits against a
/// whole forward's; the sampler's rules.
struct GenerationTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var model: String
        var adapter: String?
        var prompt: [Int32]
        var eos: [Int32]
        var generated: [Int32]
        var testDescription: String { "\(model)\(adapter.map { " + \($0)" } ?? "") prompt \(prompt.count)\(eos.isEmpty ? "" : " stopping at \(eos)")" }
    }

    static let fixture = fixturePath("llama/generation.json")

    static var cases: [Case] {
        guard let file = try? JSON.read(fixture, what: "generation fixture"), let list = file["cases"]?.array else { return [] }
        let ids = { (value: JSON?) in (value?.array ?? []).compactMap { $0.int.map(Int32.init) } }
        return list.map { Case(model: $0["model"]!.string!, adapter: $0["adapter"]?.string, prompt: ids($0["prompt"]), eos: ids($0["eos"]),
                               generated: ids($0["generated"])) }
    }

    static func load(_ c: Case, on backend: any Backend, quantize: DType? = nil) throws -> (LlamaModel, ModelAdapter?) {
        // The Qwen2 fixture is stored in bf16; transformers generated from it in f32.
        let model = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: fixturePath("llama/" + c.model)), on: backend,
                                   quantize: quantize, dtype: .f32)
        return (model, try c.adapter.map { try ModelAdapter(contentsOf: fixturePath("llama/" + $0), on: model) })
    }

    /// Every case's greedy ids equal transformers' `generate(do_sample=False)` (the fixture's margins
    /// between the chosen and the runner-up logit are at least 2.5e-3, far from a near-tie), and a
    /// case with an EOS id ends at it.
    @Test(arguments: BackendKind.allCases)
    func greedyIDsEqualTransformers(_ kind: BackendKind) throws {
        let cases = Self.cases
        #expect(cases.count == 17)
        try onBackend(kind) { backend in
            for c in cases {
                let (model, adapter) = try Self.load(c, on: backend)
                let generated = try TextGenerator(model: model, adapter: adapter)
                    .generate(prompt: c.prompt, maxNewTokens: 12, stopTokens: Set(c.eos))
                #expect(generated == c.generated, "\(c.testDescription)")
            }
        }
    }

    /// At every step of a generation (the prompt, then each token through the cache), the logits
    /// equal the last row of a whole forward over the sequence so far (causal attention, no cache),
    /// within f32 rounding: 1e-6 of the largest logit on the CPU, 4e-6 on Vulkan, where a step's
    /// one-row products take the matrix-vector kernel and sum K in another order than the whole
    /// forward's tiles (each sum within K·2⁻²⁴ ≈ 3.8e-6 of Σ|a·b| for the fixtures' K ≤ 64; measured up to 1.7e-6
    /// of the largest logit); also with the projections quantized to NF4 and Q8_0 as training quantizes
    /// them (the adapter on top, unmerged).
    @Test(arguments: BackendKind.allCases, [nil, DType.nf4, .q8_0])
    func cachedLogitsEqualAWholeForward(_ kind: BackendKind, _ quantize: DType?) throws {
        try onBackend(kind) { backend in
            for c in Self.cases where c.prompt.count == 5 && (quantize == nil || c.model == "tiny-llama") {
                let (model, adapter) = try Self.load(c, on: backend, quantize: quantize)
                let decoder = try KVCacheDecoder(model: model, adapter: adapter, capacity: c.prompt.count + c.generated.count)
                var sequence = c.prompt
                var logits = try decoder.logits(after: c.prompt)
                for next in c.generated {
                    let whole = try Self.wholeForwardLogits(model: model, adapter: adapter, ids: sequence)
                    let error = relativeError(logits, whole.suffix(model.config.vocabularySize).map(Double.init))
                    #expect(error <= (kind == .vulkan ? 4e-6 : 1e-6), "\(c.testDescription) at \(sequence.count) tokens: \(error)")
                    sequence.append(next)
                    logits = try decoder.logits(after: [next])
                }
                #expect(decoder.count == sequence.count)
            }
        }
    }

    /// The logits `[T, V]` of one forward over `ids` with causal attention.
    static func wholeForwardLogits(model: LlamaModel, adapter: ModelAdapter?, ids: [Int32]) throws -> [Float] {
        let g = Graph(backend: model.backend)
        let input = try g.input("input_ids", [ids.count], dtype: .i32)
        let positions = try g.parameter("positions", try Tensor(ids: (0..<ids.count).map(Int32.init), on: model.backend))
        let decoder = try g.causalLMDecoder(model: model, adapter: adapter, ids: input, positions: positions, sequence: ids.count, training: false)
        let plan = try g.compile(outputs: [try g.linear(decoder.hidden, weight: try g.lmHead(model, adapter: adapter, decoder: decoder))])
        return try plan.run([input: try Tensor(ids: ids, on: model.backend)])[0].floats()
    }

    /// A cache that would overflow, an id outside the vocabulary and an empty prompt are errors.
    @Test func rejectsBadRequests() throws {
        let backend = try BackendKind.cpu.open()
        let (model, _) = try Self.load(Case(model: "tiny-llama", adapter: nil, prompt: [], eos: [], generated: []), on: backend)
        let decoder = try KVCacheDecoder(model: model, adapter: nil, capacity: 4)
        _ = try decoder.logits(after: [1, 2, 3])
        #expect(throws: LowRankError.self) { _ = try decoder.logits(after: [4, 5]) }
        #expect(throws: LowRankError.self) { _ = try decoder.logits(after: [64]) }
        #expect(throws: LowRankError.self) { _ = try TextGenerator(model: model, adapter: nil).generate(prompt: [], maxNewTokens: 3) }
        #expect(throws: LowRankError.self) { _ = try TokenSampler(SamplingSettings(temperature: 1, topP: 0)) }
    }

    /// Outside training an adapter runs as PEFT's eval mode, without dropout: the loss (evaluation,
    /// validation) and the generated ids of an adapter with lora_dropout 0.5 equal those of the same
    /// tensors with none.
    @Test func inferenceAppliesNoDropout() throws {
        let backend = try BackendKind.cpu.open()
        let (model, _) = try Self.load(Case(model: "tiny-llama", adapter: nil, prompt: [], eos: [], generated: []), on: backend)
        let adapters = try [Float(0.5), 0].map { dropout in
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, dropout: dropout, targets: .allLinear, baseModel: ""), on: model, seed: 3)
            for (i, (_, tensor)) in adapter.parameters.enumerated() { try tensor.assign(randomValues(tensor.shape.count, seed: UInt64(40 + i), scale: 0.3)) }
            return adapter
        }
        let batch = TokenBatch([[5, 9, 13, 2, 40, 41, 7, 8]])
        let losses = try adapters.map { try LossEvaluator(model: model, adapter: $0).loss(of: batch) }
        #expect(losses[0] == losses[1])
        let ids = try adapters.map { try TextGenerator(model: model, adapter: $0).generate(prompt: [5, 9, 13], maxNewTokens: 8) }
        #expect(ids[0] == ids[1])
    }

    /// Temperature 1 draws each token with its softmax probability (20 000 draws within 0.015);
    /// top-k 2 and top-p 0.7 keep the two most probable tokens, top-p 0.5 the most probable alone
    /// (4/7 > 0.5), as transformers' warpers do; the same seed draws the same tokens.
    @Test func samplingFollowsTransformersWarpers() throws {
        let logits: [Float] = [0, Float(log(2.0)), Float(log(4.0))]
        func frequencies(_ settings: SamplingSettings) throws -> [Double] {
            var sampler = try TokenSampler(settings), counts = [0, 0, 0]
            for _ in 0..<20000 { counts[Int(try sampler.next(logits))] += 1 }
            return counts.map { Double($0) / 20000 }
        }
        let plain = try frequencies(SamplingSettings(temperature: 1, seed: 7))
        for (got, want) in zip(plain, [1.0 / 7, 2.0 / 7, 4.0 / 7]) { #expect(abs(got - want) < 0.015, "\(plain)") }
        #expect(try frequencies(SamplingSettings(temperature: 1, topK: 2, seed: 7))[0] == 0)
        let nucleus = try frequencies(SamplingSettings(temperature: 1, topP: 0.7, seed: 7))
        #expect(nucleus[0] == 0 && abs(nucleus[1] - 1.0 / 3) < 0.015)
        #expect(try frequencies(SamplingSettings(temperature: 1, topP: 0.5, seed: 7)) == [0, 0, 1])
        #expect(try frequencies(SamplingSettings(temperature: 2, seed: 3)) == frequencies(SamplingSettings(temperature: 2, seed: 3)))
        var greedy = try TokenSampler(.greedy)
        #expect(try greedy.next([1, 5, 5, 2]) == 1)
    }
}
