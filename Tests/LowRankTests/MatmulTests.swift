import LowRank
import Testing

@Suite("matmul")
struct MatmulTests {
    /// (M, N, K): odd sizes and tile multiples.
    static let shapes = [(1, 3, 17), (3, 1, 1), (17, 100, 257), (100, 17, 3), (64, 64, 64), (128, 64, 100)]

    /// `x·Wᵀ`, `G·W` and `Gᵀ·x`, the three products backward passes need, with and without bias.
    @Test(arguments: BackendKind.allCases, [DType.f32, .f16, .bf16])
    func layouts(_ kind: BackendKind, _ dtype: DType) throws {
        try onBackend(kind) { backend in
            for (i, (m, n, k)) in Self.shapes.enumerated() {
                for (transposeA, transposeB) in [(false, true), (false, false), (true, false)] {
                    let a = randomValues(m * k, seed: UInt64(i * 7 + 1), dtype: dtype)
                    let b = randomValues(k * n, seed: UInt64(i * 7 + 2), dtype: dtype)
                    let bias = randomValues(n, seed: UInt64(i * 7 + 3), dtype: dtype)
                    let ta = try Tensor(a, shape: transposeA ? [k, m] : [m, k], dtype: dtype, on: backend)
                    let tb = try Tensor(b, shape: transposeB ? [n, k] : [k, n], dtype: dtype, on: backend)
                    let tbias = try Tensor(bias, shape: [n], dtype: dtype, on: backend)
                    for withBias in [false, true] {
                        let c = try Ops.matmul(ta, tb, transposeA: transposeA, transposeB: transposeB,
                                               bias: withBias ? tbias : nil, alpha: 0.5)
                        #expect(c.shape == [m, n] && c.dtype == dtype)
                        let reference = referenceMatmul(a, b, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                                        alpha: 0.5, bias: withBias ? bias : nil)
                        let error = relativeError(try c.floats(), reference)
                        // f32 accumulation over K, then one rounding to the output type.
                        #expect(error <= 1e-5 + dtype.unitRoundoff,
                                "\(m)x\(n)x\(k) transposeA=\(transposeA) transposeB=\(transposeB) bias=\(withBias): \(error)")
                    }
                }
            }
        }
    }

    @Test(arguments: BackendKind.allCases)
    func accumulatesIntoOutput(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (m, n, k) = (17, 33, 9)
            let a = randomValues(m * k, seed: 11), b = randomValues(n * k, seed: 12), c0 = randomValues(m * n, seed: 13)
            let c = try Tensor(c0, shape: [m, n], on: backend)
            try Ops.matmul(try Tensor(a, shape: [m, k], on: backend), try Tensor(b, shape: [n, k], on: backend),
                           transposeB: true, alpha: -2, accumulatingInto: c)
            let product = referenceMatmul(a, b, m: m, n: n, k: k, transposeA: false, transposeB: true, alpha: -2)
            let reference = zip(product, c0).map { $0 + Double($1) }
            #expect(relativeError(try c.floats(), reference) <= 1e-5)
        }
    }

    @Test(arguments: BackendKind.allCases)
    func mixedOutputType(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let a = randomValues(5 * 7, seed: 21, dtype: .bf16), b = randomValues(7 * 3, seed: 22, dtype: .bf16)
            let c = try Ops.matmul(try Tensor(a, shape: [5, 7], dtype: .bf16, on: backend),
                                   try Tensor(b, shape: [7, 3], dtype: .bf16, on: backend), outputDType: .f32)
            #expect(c.dtype == .f32)
            let reference = referenceMatmul(a, b, m: 5, n: 3, k: 7, transposeA: false, transposeB: false)
            #expect(relativeError(try c.floats(), reference) <= 1e-6)
        }
    }

    @Test(arguments: BackendKind.allCases)
    func rejectsMismatchedShapes(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let a = try Tensor.zeros([4, 5], on: backend), b = try Tensor.zeros([6, 7], on: backend)
            let error = #expect(throws: LowRankError.self) { try Ops.matmul(a, b) }
            #expect(error?.kind == .shapeMismatch)
            #expect(error?.description.contains("matmul") == true)
            #expect(error?.description.contains("[4, 5]") == true)
            let bias = try Tensor.zeros([3], on: backend)
            #expect(throws: LowRankError.self) { try Ops.matmul(a, try Tensor.zeros([5, 7], on: backend), bias: bias) }
        }
    }
}
