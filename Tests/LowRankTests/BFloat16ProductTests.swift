import LowRank
import LowRankModels
import Testing

/// The CPU's `medium` matmul precision for bfloat16 frozen weights (`CPUBackend+BFloat16Products.swift`),
/// PyTorch's for a bfloat16 model's linear layers: A rounded to bfloat16 once, f32 sums. f32
/// weights, and every weight under `highest`, compute as they always did.
@Suite("bfloat16 products on the CPU")
struct BFloat16ProductTests {
    /// (M, N, K): one row, single columns, odd sizes, K past one packed block (256) and odd, N past
    /// one packed panel (1536) with a partial register tile.
    static let shapes = [(1, 3, 17), (37, 101, 77), (13, 64, 1), (100, 33, 301), (29, 1600, 258)]

    static func mediumBackend() throws -> CPUBackend {
        if !CPUBackend.hasBFloat16DotProducts { try Test.cancel("this CPU has no AVX-512 BF16: bfloat16 weights are widened to f32") }
        return CPUBackend(threads: 2, matmulPrecision: .medium)
    }

    /// Every layout (`x·Wᵀ`, `G·W`, `Gᵀ·W`), alpha, bias and accumulation: each element within f32
    /// summation error (`k·2⁻²⁴·Σ|ã·w|`, ã = bf16(a)) of float64's `bf16(A)·W`, and so within
    /// `2⁻⁸·Σ|a·w|` (bfloat16's unit roundoff, the rounding of A) of the exact f32 product.
    @Test func roundsActivationsOnceAndSumsInF32() throws {
        let backend = try Self.mediumBackend()
        for (i, (m, n, k)) in Self.shapes.enumerated() {
            for (transposeA, transposeB) in [(false, true), (false, false), (true, false)] {
                let a = randomValues(m * k, seed: UInt64(i * 5 + 1), scale: 3)
                let w = randomValues(k * n, seed: UInt64(i * 5 + 2), dtype: .bf16)
                let c0 = randomValues(m * n, seed: UInt64(i * 5 + 3))
                let ta = try Tensor(a, shape: transposeA ? [k, m] : [m, k], on: backend)
                let tw = try Tensor(w, shape: transposeB ? [n, k] : [k, n], dtype: .bf16, on: backend)
                let c = try Tensor(c0, shape: [m, n], on: backend)
                try Ops.matmul(ta, tw, transposeA: transposeA, transposeB: transposeB, alpha: -0.5, accumulatingInto: c)
                let got = try c.floats()
                let shape = "\(m)x\(n)x\(k) transposeA=\(transposeA) transposeB=\(transposeB)"
                var worst = (rounding: 0.0, f32: 0.0)
                for row in 0..<m {
                    for column in 0..<n {
                        var (rounded, exact, magnitude) = (0.0, 0.0, 0.0)
                        for p in 0..<k {
                            let av = transposeA ? a[p * m + row] : a[row * k + p]
                            let wv = Double(transposeB ? w[column * k + p] : w[p * n + column])
                            let ãv = Double(floatFromBF16(bf16Bits(av)))
                            rounded += ãv * wv
                            exact += Double(av) * wv
                            magnitude += abs(ãv * wv)
                        }
                        let prior = Double(c0[row * n + column]), value = Double(got[row * n + column])
                        let summation = Double(k + 2) * 0x1p-24 * (0.5 * magnitude + abs(prior))
                        worst.rounding = max(worst.rounding, abs(value - (prior - 0.5 * rounded)) / summation)
                        worst.f32 = max(worst.f32, abs(value - (prior - 0.5 * exact)) / (0x1p-8 * 0.5 * magnitude * 1.01 + summation))
                    }
                }
                #expect(worst.rounding <= 1, "\(shape): \(worst.rounding) of the f32 summation bound from bf16(A)·W")
                #expect(worst.f32 <= 1, "\(shape): \(worst.f32) of the bfloat16 rounding bound from A·W")
            }
        }
    }

    /// `medium` touches only bfloat16 weights: f32 and f16 weights give the very bits of
    /// `highest`, and so does the DoRA norm's `A·Wᵀ` on a bfloat16 W (a norm,
    /// kept in f32 as PEFT keeps it).
    @Test func leavesOtherProductsAlone() throws {
        let on = try Self.mediumBackend(), off = CPUBackend(threads: 2, matmulPrecision: .highest)
        let (m, n, k) = (37, 101, 300)
        let a = randomValues(m * k, seed: 31), w = randomValues(n * k, seed: 32, dtype: .bf16)
        for dtype in [DType.f32, .f16] {
            let results = try [on, off].map { backend in
                try Ops.matmul(try Tensor(a, shape: [m, k], on: backend), try Tensor(w, shape: [n, k], dtype: dtype, on: backend),
                               transposeB: true).floats()
            }
            #expect(results[0] == results[1], "\(dtype)")
        }
        let r = 8, loraA = randomValues(r * k, seed: 33), loraB = randomValues(n * r, seed: 34), magnitude = randomValues(n, seed: 35)
        let norms = try [on, off].map { backend in
            let weight = try Tensor(w, shape: [n, k], dtype: .bf16, on: backend)
            let (norm, g) = try Ops.doraNorm(weight: weight, a: try Tensor(loraA, shape: [r, k], on: backend),
                                              b: try Tensor(loraB, shape: [n, r], on: backend),
                                              magnitude: try Tensor(magnitude, shape: [n], on: backend),
                                              weightNormSquared: try Ops.rowSumOfSquares(weight), scale: 2)
            return [try norm.floats(), try g.floats()]
        }
        #expect(norms[0] == norms[1])
    }

    /// The bf16 Qwen2 fixture (weights held as bf16) evaluated and trained for three steps
    /// (LoRA, every projection) under `medium` and under `highest`: every loss within 2⁻⁸
    /// (bfloat16's unit roundoff) relative of the f32 products' one.
    @Test func bf16ModelStaysWithinBFloat16Rounding() throws {
        let backends = [try Self.mediumBackend(), CPUBackend(threads: 2, matmulPrecision: .highest)]
        let runs = try backends.map { backend in
            let model = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: LlamaFixtures.path(WeightDTypeTests.bf16Model)), on: backend)
            #expect(model.projectionDType == .bf16)
            let evaluated = try Evaluation(model: model, adapter: nil, data: LlamaFixtures.data(model), batchSize: 4).loss
            var settings = TrainingSettings()
            (settings.learningRate, settings.batchSize, settings.steps, settings.shuffle) = (1e-2, 4, 3, false)
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, targets: .allLinear), on: model, seed: 5)
            let trainer = try Trainer(model: model, adapter: adapter, data: LlamaFixtures.data(model), settings: settings, output: nil)
            try trainer.train()
            return [evaluated] + trainer.losses.map(Double.init)
        }
        print("bf16 model under medium vs highest on the CPU: \(runs[0]) vs \(runs[1])")
        for (got, want) in zip(runs[0], runs[1]) { #expect(abs(got - want) <= 0x1p-8 * abs(want), "\(got) vs \(want)") }
    }
}
