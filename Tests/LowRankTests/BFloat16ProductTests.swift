import Dispatch
import LowRank
@testable import LowRankCPU
import LowRankModels
import Synchronization
import Testing

/// The CPU's `medium` matmul precision for bfloat16 frozen weights (`CPUBackend+BFloat16Products.swift`),
/// PyTorch's for a bfloat16 model's linear layers: A rounded to bfloat16 once, f32 sums. f32
/// weights, and every weight under `highest`, compute as they always did.
@Suite("bfloat16 products on the CPU")
struct BFloat16ProductTests {
    /// (M, N, K): one row, single columns, odd sizes, K past one packed block (2048) and odd, N past
    /// packed panels (128) with a partial register tile, whole 16-pair groups of A with a tail,
    /// more strips than one group of them (8 strips of 12 rows).
    static let shapes = [(1, 3, 17), (37, 101, 77), (13, 64, 1), (100, 33, 1031), (29, 1600, 258), (24, 40, 70), (110, 45, 2101)]

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

    /// The threads' chunks of a product's columns (`TileCounter`, two threads taking at once)
    /// cover every tile once, each at most 1/share of the tiles left when it was taken, and the
    /// last ones one tile each, so that no thread is left with a wide chunk at the end.
    @Test func tileCountersChunksShrinkToOneTile() {
        for (tiles, share) in [(1, 4), (8, 4), (64, 4), (1000, 4), (63, 2)] {
            let counter = TileCounter(tiles: tiles, share: share), taken = Mutex<[Range<Int>]>([])
            DispatchQueue.concurrentPerform(iterations: 2) { _ in
                while let chunk = counter.take() { taken.withLock { $0.append(chunk) } }
            }
            let chunks = taken.withLock { $0 }.sorted { $0.lowerBound < $1.lowerBound }
            #expect(chunks.first?.lowerBound == 0 && chunks.last?.upperBound == tiles, "\(tiles) tiles: \(chunks)")
            #expect(zip(chunks, chunks.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }, "\(tiles) tiles: \(chunks)")
            #expect(chunks.allSatisfy { $0.count == max(1, (tiles - $0.lowerBound) / share) }, "\(tiles) tiles: \(chunks)")
            #expect(chunks.last?.count == 1, "\(tiles) tiles: \(chunks)")
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

    /// The fused LM head and cross-entropy on a bfloat16 head under `medium` takes the same
    /// bfloat16 products as the unfused head (a `matmul`, then `cross_entropy`): loss, logsumexp
    /// and d hidden within f32 summation of it (measured: 0, 7.7e-8, 1e-6), and not the f32 ones (the
    /// loss moves from `highest`'s by more than f32 rounding, less than bfloat16's 2⁻⁸). The unfused
    /// gradient is formed with the fused logsumexp: the two sum a row's exponentials in different
    /// orders, and their 1e-7 apart would flip the bfloat16 rounding of some of d logits' values
    /// (5e-5 on d hidden), which says nothing about the products.
    @Test func fusedHeadTakesTheBFloat16Products() throws {
        let on = try Self.mediumBackend(), off = CPUBackend(threads: 2, matmulPrecision: .highest)
        let (rows, d, classes) = (300, 64, 700)
        let h = randomValues(rows * d, seed: 41, scale: 2), w = randomValues(classes * d, seed: 42, dtype: .bf16, scale: 0.5)
        let ids = (0..<rows).map { $0 % 97 == 5 ? -100 : Int32(($0 * 37) % classes) }
        let options = LinearCrossEntropyOptions(vocabularyChunk: 256, rowChunk: 128)
        let results = try [on, off].map { backend in
            let hidden = try Tensor(h, shape: [rows, d], on: backend), weight = try Tensor(w, shape: [classes, d], dtype: .bf16, on: backend)
            let labels = try Tensor(ids: ids, on: backend), lossGradient = try Tensor([0.75], shape: [1], on: backend)
            let fused = try Ops.execute(.linearCrossEntropy(options), [hidden, weight, labels])
            let operands = LinearCrossEntropyBackwardOperands(hidden: hidden, weight: weight, labels: labels, logsumexp: fused[1], lossGradient: lossGradient)
            let dHidden = try Ops.execute(.linearCrossEntropyBackward(options, weightGradient: false), operands.values)[0]
            let logits = try Ops.execute(.matmul(MatmulOptions(transposeB: true, outputDType: .f32)), [hidden, weight])[0]
            let unfused = try Ops.execute(.crossEntropy(ignoreIndex: -100), [logits, labels])
            let dLogits = try Ops.execute(.crossEntropyBackward(ignoreIndex: -100),
                                          CrossEntropyBackwardOperands(logits: logits, labels: labels, logsumexp: fused[1], lossGradient: lossGradient).values)[0]
            let want = try Ops.execute(.matmul(MatmulOptions(outputDType: .f32)), [dLogits, weight])[0]
            return (fused: [try fused[0].floats(), try fused[1].floats(), try dHidden.floats()],
                    unfused: [try unfused[0].floats(), try unfused[1].floats(), try want.floats()])
        }
        for (i, name) in ["loss", "logsumexp", "d hidden"].enumerated() {
            #expect(relativeError(results[0].fused[i], results[0].unfused[i].map(Double.init)) < 5e-6, "\(name): fused against unfused under medium")
        }
        let (medium, highest) = (Double(results[0].fused[0][0]), Double(results[1].fused[0][0]))
        #expect(abs(medium - highest) > 1e-6 * abs(highest) && abs(medium - highest) < 0x1p-8 * abs(highest), "loss \(medium) vs \(highest)")
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
