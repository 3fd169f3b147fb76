import LowRank
@testable import LowRankVulkan
import Testing

@Suite("LoRA linear")
struct LoRATests {
    struct Case {
        var t = 5, dIn = 7, dOut = 6, r = 3
        var dtype: DType
        var dropout: Float
        var bias = true
    }

    /// Inputs of a small case, rounded to its dtype.
    struct Inputs {
        var x, w, a, b, bias, g: [Float]
        init(_ c: Case, seed: UInt64) {
            x = randomValues(c.t * c.dIn, seed: seed, dtype: c.dtype)
            w = randomValues(c.dOut * c.dIn, seed: seed + 1, dtype: c.dtype)
            a = randomValues(c.r * c.dIn, seed: seed + 2, dtype: c.dtype)
            b = randomValues(c.dOut * c.r, seed: seed + 3, dtype: c.dtype)
            bias = randomValues(c.dOut, seed: seed + 4, dtype: c.dtype)
            g = randomValues(c.t * c.dOut, seed: seed + 5, dtype: c.dtype)
        }
    }

    /// L = Σ y ⊙ G in float64, from one forward pass.
    static func loss(_ c: Case, _ v: Inputs, _ options: LoRAOptions, on backend: any Backend) throws -> Double {
        let tensor = { (values: [Float], shape: Shape) in try Tensor(values, shape: shape, dtype: c.dtype, on: backend) }
        let (y, _) = try Ops.loraForward(x: try tensor(v.x, [c.t, c.dIn]), weight: try tensor(v.w, [c.dOut, c.dIn]),
                                         bias: c.bias ? try tensor(v.bias, [c.dOut]) : nil,
                                         a: try tensor(v.a, [c.r, c.dIn]), b: try tensor(v.b, [c.dOut, c.r]), options: options)
        return zip(try y.floats(), v.g).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }

    /// Central differences against backward on the CPU backend, for every dtype, with and
    /// without dropout. L is linear in each single input element, so the difference quotient is
    /// exact but for f32 rounding of y, once divided by the step the rounded inputs really took.
    @Test(arguments: [DType.f32, .f16, .bf16], [Float(0), 0.3])
    func finiteDifferences(_ dtype: DType, _ dropout: Float) throws {
        let backend = try Engine.backend(.cpu)
        let c = Case(dtype: dtype, dropout: dropout)
        let v = Inputs(c, seed: 100)
        let options = LoRAOptions(scale: 1.75, dropout: dropout, seed: 9, outputDType: .f32)
        let tensor = { (values: [Float], shape: Shape) in try Tensor(values, shape: shape, dtype: c.dtype, on: backend) }
        let x = try tensor(v.x, [c.t, c.dIn]), w = try tensor(v.w, [c.dOut, c.dIn])
        let a = try tensor(v.a, [c.r, c.dIn]), b = try tensor(v.b, [c.dOut, c.r])
        let (_, u) = try Ops.loraForward(x: x, weight: w, bias: try tensor(v.bias, [c.dOut]), a: a, b: b, options: options)
        let (dx, dA, dB) = try Ops.loraBackward(gradOutput: try tensor(v.g, [c.t, c.dOut]), x: x, weight: w, a: a, b: b, u: u, options: options)
        let h: Float = 0.0625
        for (name, keyPath, analytic) in [("x", \Inputs.x, try dx.floats()), ("A", \Inputs.a, try dA.floats()), ("B", \Inputs.b, try dB.floats())] {
            let numeric = try centralDifferences(of: v[keyPath: keyPath], step: h, dtype: dtype) { values in
                var moved = v
                moved[keyPath: keyPath] = values
                return try Self.loss(c, moved, options, on: backend)
            }
            let error = relativeError(analytic, numeric)
            #expect(error <= 1e-4, "d\(name) \(dtype) dropout \(dropout): \(error)")
        }
    }

    /// Both backends agree with each other with dropout on (the mask is the same function of the seed).
    /// Rank 40 crosses the branch-gradient kernel's blocks of 32 rank columns and, with T = 130,
    /// its blocks of 64 rows in both products.
    @Test(arguments: [DType.f32, .bf16], [5, 40])
    func dropoutMatchesAcrossBackends(_ dtype: DType, _ rank: Int) throws {
        let cpu = try BackendKind.cpu.open()
        try onBackend(.vulkan) { vulkan in
            let c = Case(t: rank > 32 ? 130 : 33, dIn: 70, dOut: 65, r: rank, dtype: dtype, dropout: 0.25)
            let v = Inputs(c, seed: 7)
            let options = LoRAOptions(scale: 0.5, dropout: 0.25, seed: 1234, outputDType: .f32)
            var results: [[[Float]]] = []
            for backend in [cpu, vulkan] {
                let tensor = { (values: [Float], shape: Shape) in try Tensor(values, shape: shape, dtype: dtype, on: backend) }
                let x = try tensor(v.x, [c.t, c.dIn]), w = try tensor(v.w, [c.dOut, c.dIn])
                let a = try tensor(v.a, [c.r, c.dIn]), b = try tensor(v.b, [c.dOut, c.r])
                let (y, u) = try Ops.loraForward(x: x, weight: w, bias: try tensor(v.bias, [c.dOut]), a: a, b: b, options: options)
                let (dx, dA, dB) = try Ops.loraBackward(gradOutput: try tensor(v.g, [c.t, c.dOut]), x: x, weight: w, a: a, b: b, u: u, options: options)
                results.append(try [y, u, dx, dA, dB].map { try $0.floats() })
            }
            for (name, (got, reference)) in zip(["y", "u", "dx", "dA", "dB"], zip(results[1], results[0])) {
                #expect(relativeError(got, reference.map(Double.init)) <= 2e-6, "\(name)")
            }
        }
    }

    /// The branch-gradient pass's du in blocks of 64 rows and one row per thread (the pass's choice
    /// on a GPU where T is short beside d_out, 256 / RC rows per workgroup) gives the same bits, du and dB
    /// each within f32 rounding of s·G·B and s·Gᵀ·u in float64. (T, d_out, r): one block of T against
    /// five of d_out with one rank block of 16, and two against four with rank blocks of 32.
    @Test(arguments: [(33, 300, 5), (90, 200, 40)])
    func duRowBlocksGiveTheSameBits(_ shape: (t: Int, dOut: Int, r: Int)) throws {
        let (t, dOut, r) = shape
        let scale: Float = 0.75
        let gValues = randomValues(t * dOut, seed: 21), bValues = randomValues(dOut * r, seed: 22), uValues = randomValues(t * r, seed: 23)
        let rankBlocks = (r + 31) / 32
        #expect(LoRABackwardKernel.DuRows(t: t, dOut: dOut, rankBlocks: rankBlocks, cores: 32) == .onePerThread)
        #expect(LoRABackwardKernel.DuRows(t: t, dOut: dOut, rankBlocks: rankBlocks, cores: nil) == .block)
        #expect(LoRABackwardKernel.DuRows(t: dOut, dOut: t, rankBlocks: rankBlocks, cores: 32) == .block)
        #expect(LoRABackwardKernel.DuRows(t: t, dOut: dOut, rankBlocks: rankBlocks, cores: 1) == .block)
        // A backend of its own: the encoder is called here without `run`'s lock.
        let shared = try #require(try BackendKind.vulkan.open() as? VulkanBackend)
        let vulkan = try VulkanBackend(instance: shared.instance, index: shared.info.index)
        let g = try Tensor(gValues, shape: [t, dOut], on: vulkan), b = try Tensor(bValues, shape: [dOut, r], on: vulkan)
        let u = try Tensor(uValues, shape: [t, r], on: vulkan)
        var results: [[[Float]]] = []
        for rows in LoRABackwardKernel.DuRows.allCases {
            let du = try Tensor.zeros([t, r], on: vulkan), dB = try Tensor.zeros([dOut, r], on: vulkan)
            try vulkan.encodeBranchGradients(g: g, b: b, u: u, du: du, dB: dB, scale: scale, duRows: rows)
            results.append([try du.floats(), try dB.floats()])
        }
        let messages = try vulkan.drainValidationMessages()
        #expect(messages.isEmpty, "validation messages:\n\(messages.joined(separator: "\n"))")
        #expect(results[0][0] == results[1][0] && results[0][1] == results[1][1])
        let du = (0..<t * r).map { e in
            (0..<dOut).reduce(0.0) { $0 + Double(gValues[e / r * dOut + $1]) * Double(bValues[$1 * r + e % r]) } * Double(scale)
        }
        let dB = (0..<dOut * r).map { e in
            (0..<t).reduce(0.0) { $0 + Double(gValues[$1 * dOut + e / r]) * Double(uValues[$1 * r + e % r]) } * Double(scale)
        }
        #expect(relativeError(results[1][0], du) <= 1e-6)
        #expect(relativeError(results[1][1], dB) <= 1e-6)
    }

    @Test func dropoutMaskKeepsTheRightShare() {
        let mask = DropoutMask(probability: 0.3, seed: 5)
        let kept = (0..<200).reduce(0) { acc, row in acc + (0..<500).filter { mask.keeps(row: row, column: $0) }.count }
        #expect(abs(Double(kept) / 100_000 - 0.7) < 0.01)
        #expect(DropoutMask(probability: 0, seed: 1).isIdentity)
    }

    @Test(arguments: BackendKind.allCases)
    func rejectsBadShapesAndOptions(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let x = try Tensor.zeros([4, 8], on: backend), w = try Tensor.zeros([6, 8], on: backend)
            let a = try Tensor.zeros([2, 8], on: backend), b = try Tensor.zeros([6, 3], on: backend)
            let error = #expect(throws: LowRankError.self) {
                try Ops.loraForward(x: x, weight: w, a: a, b: b, options: LoRAOptions(scale: 1))
            }
            #expect(error?.description.contains("lora_forward") == true && error?.description.contains("rank") == true)
            #expect(throws: LowRankError.self) {
                try Ops.loraForward(x: x, weight: w, a: a, b: try Tensor.zeros([6, 2], on: backend), options: LoRAOptions(scale: 1, dropout: 1))
            }
        }
    }
}
