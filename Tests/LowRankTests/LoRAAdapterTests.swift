import LowRank
import Testing

@Suite("LoRA adapters")
struct LoRAAdapterTests {
    @Test func scaleAndInitialisation() throws {
        #expect(LoRAConfig(rank: 16, alpha: 32).scale == 2)
        #expect(LoRAConfig(rank: 16, alpha: 32, rsLoRA: true).scale == 8)
        let cpu = try Engine.backend(.cpu)
        let kaiming = try LoRAAdapter(inFeatures: 400, outFeatures: 30, config: LoRAConfig(rank: 50, alpha: 16), seed: 1, on: cpu)
        let a = try kaiming.a.floats()
        #expect(a.allSatisfy { abs($0) <= 1 / Float(400).squareRoot() })
        #expect(abs(a.reduce(0, +) / Float(a.count)) < 0.002)
        #expect(try kaiming.b.floats().allSatisfy { $0 == 0 }, "B starts at zero")
        let gaussian = try LoRAAdapter(inFeatures: 400, outFeatures: 30, config: LoRAConfig(rank: 50, alpha: 16),
                                       initialization: .gaussian, seed: 2, on: cpu)
        let g = try gaussian.a.floats()
        let variance = g.reduce(0) { $0 + Double($1 * $1) } / Double(g.count)
        #expect(abs(variance - 1.0 / (50 * 50)) < 0.00004, "PEFT's std 1/r")
        #expect(throws: LowRankError.self) { try LoRAAdapter(inFeatures: 4, outFeatures: 4, config: LoRAConfig(rank: 0, alpha: 1), seed: 0, on: cpu) }
    }

    /// A merged adapter's base matmul gives the adapted layer's output; unmerging restores W.
    @Test(arguments: BackendKind.allCases)
    func mergeAndUnmerge(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (t, dIn, dOut) = (9, 37, 21)
            let adapter = try LoRAAdapter(inFeatures: dIn, outFeatures: dOut, config: LoRAConfig(rank: 4, alpha: 8), seed: 3, on: backend)
            adapter.b = try Tensor(randomValues(dOut * 4, seed: 4), shape: [dOut, 4], on: backend)
            let w0 = randomValues(dOut * dIn, seed: 5)
            let w = try Tensor(w0, shape: [dOut, dIn], on: backend)
            let x = try Tensor(randomValues(t * dIn, seed: 6), shape: [t, dIn], on: backend)
            let (adapted, _) = try Ops.loraForward(x: x, weight: w, a: adapter.a, b: adapter.b, options: adapter.options(seed: 0))
            try adapter.merge(into: w)
            let merged = try Ops.matmul(x, w, transposeB: true)
            #expect(relativeError(try merged.floats(), try adapted.floats().map(Double.init)) <= 1e-6)
            try adapter.unmerge(from: w)
            #expect(relativeError(try w.floats(), w0.map(Double.init)) <= 1e-6)
        }
    }
}

@Suite("PiSSA initialisation")
struct PiSSATests {
    /// The SVD reconstructs its matrix, with orthonormal factors, for wide and tall shapes.
    @Test(arguments: [(7, 5), (5, 7)])
    func singularValueDecomposition(_ shape: (Int, Int)) throws {
        let (m, n) = shape
        let matrix = randomValues(m * n, seed: 8).map(Double.init)
        let svd = try SingularValueDecomposition(matrix, rows: m, columns: n)
        var rebuilt = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for c in 0..<svd.k { rebuilt[i * n + j] += svd.u[i * svd.k + c] * svd.s[c] * svd.vt[c * n + j] } } }
        #expect(relativeError(rebuilt.map(Float.init), matrix) <= 1e-6)
        #expect(zip(svd.s, svd.s.dropFirst()).allSatisfy { $0 >= $1 })
        for c in 0..<svd.k {
            let norm = (0..<n).reduce(0.0) { $0 + svd.vt[c * n + $1] * svd.vt[c * n + $1] }
            #expect(abs(norm - 1) < 1e-12)
        }
        #expect(throws: LowRankError.self) { try SingularValueDecomposition([1, 2, 3], rows: 2, columns: 2) }
    }

    /// The adapter holds W's top-r part and W the rest: the layer's output is unchanged, A's rows
    /// are orthogonal with squared norms S_r/s, and the residual's top singular value is W's (r+1)-th.
    @Test(arguments: BackendKind.allCases)
    func pissaSplitsTheWeight(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (t, dIn, dOut, r) = (6, 24, 16, 4)
            let config = LoRAConfig(rank: r, alpha: 8)
            let w0 = randomValues(dOut * dIn, seed: 31)
            let weight = try Tensor(w0, shape: [dOut, dIn], on: backend)
            let x = try Tensor(randomValues(t * dIn, seed: 32), shape: [t, dIn], on: backend)
            let before = try Ops.matmul(x, weight, transposeB: true).floats()
            let adapter = try LoRAAdapter.pissa(weight: weight, config: config)
            let (after, _) = try Ops.loraForward(x: x, weight: weight, a: adapter.a, b: adapter.b, options: adapter.options(seed: 0))
            #expect(relativeError(try after.floats(), before.map(Double.init)) <= 1e-5)

            let singular = try SingularValueDecomposition(w0.map(Double.init), rows: dOut, columns: dIn).s
            let a = try adapter.a.floats()
            for i in 0..<r {
                for j in 0..<r {
                    let dot = (0..<dIn).reduce(0.0) { $0 + Double(a[i * dIn + $1]) * Double(a[j * dIn + $1]) }
                    let expected = i == j ? singular[i] / Double(config.scale) : 0
                    #expect(abs(dot - expected) <= 1e-5 * singular[0], "A·Aᵀ[\(i), \(j)]")
                }
            }
            let residual = try SingularValueDecomposition(try weight.floats().map(Double.init), rows: dOut, columns: dIn).s
            #expect(abs(residual[0] - singular[r]) <= 1e-5 * singular[0])
            #expect(throws: LowRankError.self) { try LoRAAdapter.pissa(weight: weight, config: LoRAConfig(rank: 17, alpha: 1)) }
        }
    }
}
