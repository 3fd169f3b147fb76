import LowRank
import Testing

@Suite("DoRA linear")
struct DoRATests {
    struct Layer {
        var x, w, a, b, m, bias, g: [Float]
        let (t, dIn, dOut, r): (Int, Int, Int, Int)

        init(t: Int = 9, dIn: Int = 33, dOut: Int = 20, r: Int = 4, seed: UInt64) {
            (self.t, self.dIn, self.dOut, self.r) = (t, dIn, dOut, r)
            x = randomValues(t * dIn, seed: seed)
            w = randomValues(dOut * dIn, seed: seed + 1, scale: 0.2)
            a = randomValues(r * dIn, seed: seed + 2, scale: 0.2)
            b = randomValues(dOut * r, seed: seed + 3, scale: 0.1)
            m = randomValues(dOut, seed: seed + 4).map { 1 + 0.3 * $0 }
            bias = randomValues(dOut, seed: seed + 5)
            g = randomValues(t * dOut, seed: seed + 6)
        }

        func run(on backend: any Backend, _ options: DoRAOptions) throws -> (forward: DoRAForward, dx: Tensor, dA: Tensor, dB: Tensor, dm: Tensor?) {
            let tensor = { (v: [Float], s: Shape) in try Tensor(v, shape: s, on: backend) }
            let xt = try tensor(x, [t, dIn]), wt = try tensor(w, [dOut, dIn]), at = try tensor(a, [r, dIn]), bt = try tensor(b, [dOut, r])
            let forward = try Ops.doraForward(x: xt, weight: wt, bias: try tensor(bias, [dOut]), a: at, b: bt, magnitude: try tensor(m, [dOut]),
                                              weightNormSquared: try Ops.rowSumOfSquares(wt), options: options)
            let (dx, dA, dB, dm) = try Ops.doraBackward(gradOutput: try tensor(g, [t, dOut]), x: xt, weight: wt, a: at, b: bt,
                                                        forward: forward, options: options)
            return (forward, dx, dA, dB, dm)
        }

        /// L = Σ y ⊙ G in float64.
        func loss(on backend: any Backend, _ options: DoRAOptions) throws -> Double {
            let y = try run(on: backend, options).forward.y.floats()
            return zip(y, g).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
    }

    /// Central differences for dx and dm on the CPU backend, with and without dropout. (The norm
    /// depends on A and B but is detached in backward, as in PEFT, so dA and dB are checked by the
    /// golden cases and across backends instead.)
    @Test(arguments: [Float(0), 0.3])
    func finiteDifferences(_ dropout: Float) throws {
        let cpu = try Engine.backend(.cpu)
        let layer = Layer(t: 5, dIn: 7, dOut: 6, r: 3, seed: 40)
        let options = DoRAOptions(lora: LoRAOptions(scale: 1.5, dropout: dropout, seed: 3))
        let result = try layer.run(on: cpu, options)
        let h: Float = 0.0625
        for (name, keyPath, analytic) in [("x", \Layer.x, try result.dx.floats()), ("m", \Layer.m, try result.dm!.floats())] {
            let numeric = try centralDifferences(of: layer[keyPath: keyPath], step: h) { values in
                var moved = layer
                moved[keyPath: keyPath] = values
                return try moved.loss(on: cpu, options)
            }
            #expect(relativeError(analytic, numeric) <= 1e-4, "d\(name), dropout \(dropout)")
        }
    }

    /// Both backends agree, with dropout on and off, with and without a trainable magnitude, at a
    /// rank of one block of the branch-gradient kernel, where Vulkan's norm sums B·(A·Aᵀ) in its
    /// row loop, and at one over two (with T = 130, over two blocks of rows too), where a GEMM
    /// forms it.
    @Test(arguments: [Float(0), 0.25], [true, false])
    func backendsAgree(_ dropout: Float, _ trainable: Bool) throws {
        let cpu = try BackendKind.cpu.open()
        try onBackend(.vulkan) { vulkan in
            for rank in [6, 40] {
                let layer = Layer(t: rank > 32 ? 130 : 37, dIn: 70, dOut: 65, r: rank, seed: 7)
                let options = DoRAOptions(lora: LoRAOptions(scale: 0.75, dropout: dropout, seed: 11), trainableMagnitude: trainable)
                let results = try [cpu, vulkan].map { backend in
                    let r = try layer.run(on: backend, options)
                    #expect((r.dm != nil) == trainable && (r.forward.inner != nil) == trainable)
                    return try ([r.forward.y, r.forward.norm, r.forward.g, r.dx, r.dA, r.dB] + (r.dm.map { [$0] } ?? [])).map { try $0.floats() }
                }
                for (name, (got, reference)) in zip(["y", "n", "g", "dx", "dA", "dB", "dm"], zip(results[1], results[0])) {
                    #expect(relativeError(got, reference.map(Double.init)) <= 2e-6, "\(name) at r = \(rank)")
                }
            }
        }
    }

    /// An all-zero row of W: PEFT divides by a zero norm there (peft#2049). Here g = m / max(n, ε):
    /// with m initialised from the row (0) g is 0 and the row's output is the bias; with m moved
    /// off zero g is large but finite. Outputs and gradients are finite either way.
    @Test(arguments: BackendKind.allCases)
    func zeroWeightRowStaysFinite(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            var layer = Layer(seed: 60)
            for i in 0..<layer.dIn { layer.w[2 * layer.dIn + i] = 0 }
            layer.b = [Float](repeating: 0, count: layer.dOut * layer.r)
            layer.m[2] = 0
            let options = DoRAOptions(lora: LoRAOptions(scale: 2))
            let fresh = try layer.run(on: backend, options)
            let y = try fresh.forward.y.floats()
            #expect((0..<layer.t).allSatisfy { y[$0 * layer.dOut + 2] == layer.bias[2] })
            layer.m[2] = 0.5
            let moved = try layer.run(on: backend, options)
            for result in [fresh, moved] {
                for tensor in [result.forward.y, result.forward.g, result.dx, result.dA, result.dB, result.dm!] {
                    #expect(try tensor.floats().allSatisfy(\.isFinite), "\(tensor.descriptor)")
                }
            }
        }
    }

    /// A new adapter leaves the layer unchanged: B = 0 and m = ‖W‖_row give g = 1.
    @Test(arguments: BackendKind.allCases)
    func newAdapterIsTheIdentity(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let weight = try Tensor(randomValues(12 * 30, seed: 70), shape: [12, 30], on: backend)
            let x = try Tensor(randomValues(4 * 30, seed: 71), shape: [4, 30], on: backend)
            let adapter = try DoRAAdapter(weight: weight, config: LoRAConfig(rank: 3, alpha: 6), seed: 72)
            let forward = try adapter.forward(x, weight: weight)
            #expect(try forward.g.floats().allSatisfy { abs($0 - 1) < 1e-6 })
            let base = try Ops.matmul(x, weight, transposeB: true)
            #expect(relativeError(try forward.y.floats(), try base.floats().map(Double.init)) <= 1e-6)
        }
    }

    /// The factored norm against ‖W + s·B·A‖_row in float64, at a rank beyond what one row of B in
    /// shared memory could hold (8,200 > the 8,128 floats of 32 KiB), where on Vulkan B·(A·Aᵀ) is a
    /// GEMM, so r has no bound (it used to fall back to the CPU), and at a low rank, where the norm
    /// kernel sums it itself.
    @Test(arguments: BackendKind.allCases, [32, 8200])
    func normAtAHighRank(_ kind: BackendKind, _ r: Int) throws {
        try onBackend(kind) { backend in
            let (dOut, dIn, s) = (6, 10, Float(0.01))
            let (w, a, b, m) = (randomValues(dOut * dIn, seed: 140), randomValues(r * dIn, seed: 141), randomValues(dOut * r, seed: 142), randomValues(dOut, seed: 143))
            let weight = try Tensor(w, shape: [dOut, dIn], on: backend)
            let (norm, g) = try Ops.doraNorm(weight: weight, a: try Tensor(a, shape: [r, dIn], on: backend), b: try Tensor(b, shape: [dOut, r], on: backend),
                                             magnitude: try Tensor(m, shape: [dOut], on: backend), weightNormSquared: try Ops.rowSumOfSquares(weight),
                                             scale: s)
            let reference = (0..<dOut).map { j in
                (0..<dIn).reduce(0.0) { sum, i in
                    let merged = Double(w[j * dIn + i]) + Double(s) * (0..<r).reduce(0.0) { $0 + Double(b[j * r + $1]) * Double(a[$1 * dIn + i]) }
                    return sum + merged * merged
                }.squareRoot()
            }
            #expect(relativeError(try norm.floats(), reference) <= 1e-5)
            #expect(relativeError(try g.floats(), (0..<dOut).map { Double(m[$0]) / reference[$0] }) <= 1e-5)
        }
    }

    /// The compose alone against float64, in the regime g ≈ 1 where the cancelling form loses digits.
    @Test(arguments: BackendKind.allCases)
    func composeAlone(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (t, dOut) = (9, 40)
            let base = randomValues(t * dOut, seed: 90), lora = randomValues(t * dOut, seed: 91, scale: 1e-3)
            let g = randomValues(dOut, seed: 92).map { 1 + $0 * 1e-4 }
            let s: Float = 2
            let reference = base.indices.map { i -> Double in
                let gj = Double(g[i % dOut])
                return Double(base[i]) * gj + gj * Double(s) * Double(lora[i])
            }
            let y = try Ops.doraCompose(base: try Tensor(base, shape: [t, dOut], on: backend), lora: try Tensor(lora, shape: [t, dOut], on: backend),
                                        g: try Tensor(g, shape: [dOut], on: backend), scale: s)
            // What differs from base is ~1e-4 of it: an error of a few f32 ulps of base is all that is allowed.
            #expect(relativeError(try y.floats(), reference) <= 3e-7)
        }
    }

    /// Merging gives a weight whose plain product is DoRA's output; unmerging restores W.
    @Test(arguments: BackendKind.allCases)
    func mergeAndUnmerge(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let layer = Layer(seed: 95)
            let weight = try Tensor(layer.w, shape: [layer.dOut, layer.dIn], on: backend)
            let x = try Tensor(layer.x, shape: [layer.t, layer.dIn], on: backend), bias = try Tensor(layer.bias, shape: [layer.dOut], on: backend)
            let adapter = try DoRAAdapter(weight: weight, config: LoRAConfig(rank: layer.r, alpha: 8), seed: 96)
            adapter.lora.b = try Tensor(layer.b, shape: [layer.dOut, layer.r], on: backend)
            adapter.magnitude = try Tensor(layer.m, shape: [layer.dOut], on: backend)
            let expected = try adapter.forward(x, weight: weight, bias: bias).y.floats()
            try adapter.merge(into: weight)
            #expect(adapter.isMerged)
            #expect(throws: LowRankError.self) { try adapter.forward(x, weight: weight) }
            #expect(throws: LowRankError.self) { try adapter.merge(into: weight) }
            let merged = try Ops.matmul(x, weight, transposeB: true, bias: bias).floats()
            #expect(relativeError(merged, expected.map(Double.init)) <= 1e-6)
            try adapter.unmerge(from: weight)
            #expect(relativeError(try weight.floats(), layer.w.map(Double.init)) <= 1e-6)
            #expect(throws: LowRankError.self) { try adapter.unmerge(from: weight) }

            // m = 0 on a row makes that row of the merged weight zero, which no unmerge can undo.
            var zeroed = layer.m
            zeroed[3] = 0
            adapter.magnitude = try Tensor(zeroed, shape: [layer.dOut], on: backend)
            let before = try weight.floats()
            let error = #expect(throws: LowRankError.self) { try adapter.merge(into: weight) }
            #expect(error?.kind == .numerical && !adapter.isMerged)
            #expect(try weight.floats() == before, "a refused merge leaves W as it was")
        }
    }

    @Test(arguments: BackendKind.allCases)
    func rejectsBadShapes(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let w = try Tensor.zeros([6, 8], on: backend), a = try Tensor.zeros([2, 8], on: backend), b = try Tensor.zeros([6, 2], on: backend)
            let error = #expect(throws: LowRankError.self) {
                try Ops.doraNorm(weight: w, a: a, b: b, magnitude: try Tensor.zeros([5], on: backend),
                                 weightNormSquared: try Tensor.zeros([6], on: backend), scale: 1)
            }
            #expect(error?.description.contains("dora_norm") == true && error?.description.contains("m") == true)
        }
    }
}
