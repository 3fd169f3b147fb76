import LowRank
import Testing

@Suite("elementwise, row reductions and casts")
struct ElementwiseTests {
    static let sizes = [1, 3, 17, 100, 257, 4096 + 5]

    @Test(arguments: BackendKind.allCases, [DType.f32, .f16, .bf16])
    func addMulScale(_ kind: BackendKind, _ dtype: DType) throws {
        try onBackend(kind) { backend in
            for n in Self.sizes {
                let a = randomValues(n, seed: 31, dtype: dtype), b = randomValues(n, seed: 32, dtype: dtype)
                let ta = try Tensor(a, shape: [n], dtype: dtype, on: backend), tb = try Tensor(b, shape: [n], dtype: dtype, on: backend)
                let bound = dtype.unitRoundoff * 1.0001
                #expect(relativeError(try Ops.add(ta, tb).floats(), zip(a, b).map { Double($0) + Double($1) }) <= bound, "add n=\(n)")
                #expect(relativeError(try Ops.mul(ta, tb).floats(), zip(a, b).map { Double($0) * Double($1) }) <= bound, "mul n=\(n)")
                #expect(relativeError(try Ops.scale(ta, by: -1.5).floats(), a.map { Double($0) * -1.5 }) <= bound, "scale n=\(n)")
            }
            // The second operand broadcast over the first's leading dimensions.
            let (rows, columns) = (7, 33)
            let a = randomValues(rows * columns, seed: 33, dtype: dtype), b = randomValues(columns, seed: 34, dtype: dtype)
            let ta = try Tensor(a, shape: [rows, columns], dtype: dtype, on: backend), tb = try Tensor(b, shape: [columns], dtype: dtype, on: backend)
            let bound = dtype.unitRoundoff * 1.0001
            #expect(relativeError(try Ops.add(ta, tb).floats(), a.indices.map { Double(a[$0]) + Double(b[$0 % columns]) }) <= bound)
            #expect(relativeError(try Ops.mul(ta, tb).floats(), a.indices.map { Double(a[$0]) * Double(b[$0 % columns]) }) <= bound)
        }
    }

    /// Row scaling, into a new tensor and in place (how DoRA's merge uses it).
    @Test(arguments: BackendKind.allCases, [DType.f32, .f16, .bf16])
    func scaleRows(_ kind: BackendKind, _ dtype: DType) throws {
        try onBackend(kind) { backend in
            for (rows, columns) in [(1, 1), (3, 257), (100, 17), (5, 4096)] {
                let a = randomValues(rows * columns, seed: 45, dtype: dtype), f = randomValues(rows, seed: 46)
                let reference = a.indices.map { Double(a[$0]) * Double(f[$0 / columns]) }
                let t = try Tensor(a, shape: [rows, columns], dtype: dtype, on: backend), factors = try Tensor(f, shape: [rows], on: backend)
                let bound = dtype.unitRoundoff * 1.0001
                #expect(relativeError(try Ops.scaleRows(t, by: factors).floats(), reference) <= bound, "\(rows)x\(columns)")
                try Ops.scaleRows(inPlace: t, by: factors)
                #expect(relativeError(try t.floats(), reference) <= bound, "in place \(rows)x\(columns)")
            }
            let error = #expect(throws: LowRankError.self) {
                try Ops.scaleRows(try Tensor.zeros([3, 4], on: backend), by: try Tensor.zeros([4], on: backend))
            }
            #expect(error?.description.contains("scale_rows") == true)
        }
    }

    @Test(arguments: BackendKind.allCases, [DType.f32, .f16, .bf16])
    func rowReductions(_ kind: BackendKind, _ dtype: DType) throws {
        try onBackend(kind) { backend in
            for (rows, columns) in [(1, 1), (3, 257), (100, 17), (17, 1000), (2, 4096)] {
                let a = randomValues(rows * columns, seed: 41, dtype: dtype)
                let t = try Tensor(a, shape: [rows, columns], dtype: dtype, on: backend)
                let sums = (0..<rows).map { r in (0..<columns).reduce(0.0) { $0 + Double(a[r * columns + $1]) * Double(a[r * columns + $1]) } }
                let s = try Ops.rowSumOfSquares(t), norm = try Ops.rowL2Norm(t)
                #expect(s.shape == [rows] && s.dtype == .f32)
                // f32 accumulation over the row: a few ulps per log2(columns) levels.
                #expect(relativeError(try s.floats(), sums) <= 1e-6, "sum of squares \(rows)x\(columns)")
                #expect(relativeError(try norm.floats(), sums.map { $0.squareRoot() }) <= 1e-6, "L2 norm \(rows)x\(columns)")
            }
        }
    }

    /// Casts must round to nearest even exactly as the host conversions do, ties and specials included.
    @Test(arguments: BackendKind.allCases)
    func castsRoundToNearestEven(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            var values = randomValues(1000, seed: 51, scale: 70000)
            // Exact ties of bf16 (halfway between two bf16 values) and of f16, plus specials.
            values += [1 + 0x1p-8, 1 + 3 * 0x1p-8, 1 + 0x1p-11, 1 + 3 * 0x1p-11, 0, -0.0, .infinity, -.infinity,
                       65504, 65520, 1e-8, -3.0e38, .leastNormalMagnitude]
            let source = try Tensor(values, shape: [values.count], on: backend)
            let bf16 = try Ops.cast(source, to: .bf16), f16 = try Ops.cast(source, to: .f16)
            let bfBits = try bf16.bytes().withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            let f16Bits_ = try f16.bytes().withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            #expect(bfBits == values.map(bf16Bits))
            #expect(f16Bits_ == values.map(f16Bits))
            // Back to f32 is exact; bf16 -> f16 goes through f32.
            #expect(try Ops.cast(bf16, to: .f32).floats() == values.map { floatFromBF16(bf16Bits($0)) })
            let viaF16 = try Ops.cast(bf16, to: .f16).bytes().withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            #expect(viaF16 == values.map { f16Bits(floatFromBF16(bf16Bits($0))) })
        }
    }

    @Test(arguments: BackendKind.allCases)
    func rejectsBadInput(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let a = try Tensor.zeros([3, 4], on: backend), b = try Tensor.zeros([4, 3], on: backend)
            let error = #expect(throws: LowRankError.self) { try Ops.add(a, b) }
            #expect(error?.kind == .shapeMismatch && error?.description.contains("add") == true)
            #expect(throws: LowRankError.self) { try Ops.mul(a, try Tensor.zeros([3], on: backend)) }
            #expect(throws: LowRankError.self) { try Ops.cast(a, to: .i32) }
            #expect(throws: LowRankError.self) { try Tensor([1, 2, 3], shape: [2, 2], on: backend) }
        }
    }

    @Test func tensorsOfDifferentBackendsAreRejected() throws {
        let cpu = try Engine.backend(.cpu)
        guard let vulkan = try? Engine.backend(.vulkan(index: nil), validation: true) else {
            try Test.cancel("no Vulkan device here")
        }
        let error = #expect(throws: LowRankError.self) {
            try Ops.add(try Tensor.zeros([2], on: cpu), try Tensor.zeros([2], on: vulkan))
        }
        #expect(error?.description.contains("different backends") == true)
        let moved = try Tensor([1, 2, 3], shape: [3], on: cpu).copy(to: vulkan)
        #expect(try moved.floats() == [1, 2, 3])
    }
}
