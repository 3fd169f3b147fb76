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
        #expect(abs(variance - 1.0 / 50) < 0.002)
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
