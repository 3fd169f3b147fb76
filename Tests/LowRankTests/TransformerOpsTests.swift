import Foundation
import LowRank
import Testing

/// The forward of each transformer op against a float64 reference on every backend (their
/// backward passes are checked by `GraphGradientTests`).
@Suite("Transformer ops")
struct TransformerOpsTests {
    /// Rows of 37 and 300 (not a multiple of the workgroup), within 1e-6.
    @Test(arguments: BackendKind.allCases)
    func rmsNormMatchesReference(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            for (rows, d) in [(5, 37), (3, 300)] {
                let xs = randomValues(rows * d, seed: 200), ws = randomValues(d, seed: 201)
                let out = try Ops.execute(.rmsNorm(epsilon: 1e-6), [try Tensor(xs, shape: [rows, d], on: backend), try Tensor(ws, shape: [d], on: backend)])
                var want: [Double] = [], rstd: [Double] = []
                for r in 0..<rows {
                    let row = xs[(r * d)..<(r * d + d)].map(Double.init)
                    let s = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(d) + 1e-6).squareRoot()
                    rstd.append(s)
                    want += row.enumerated().map { Double(ws[$0.offset]) * $0.element * s }
                }
                #expect(relativeError(try out[0].floats(), want) < 1e-6, "y on \(backend.identifier)")
                #expect(relativeError(try out[1].floats(), rstd) < 1e-6, "rstd on \(backend.identifier)")
            }
        }
    }

    /// Hugging Face's rotate-half RoPE at positions up to 100000 (angles to 1e5 radians, which the
    /// device reduces modulo 2π itself), within 1e-6; the inverse undoes it.
    @Test(arguments: BackendKind.allCases)
    func ropeMatchesReference(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (t, heads, d) = (4, 3, 16)
            let xs = randomValues(t * heads * d, seed: 210)
            let frequencies = (0..<(d / 2)).map { Float(pow(10000.0, -2.0 * Double($0) / Double(d))) }
            let positions: [Int32] = [0, 1, 4095, 100_000]
            let inputs = [try Tensor(xs, shape: [t, heads, d], on: backend), try Tensor(frequencies, shape: [d / 2], on: backend),
                          try Tensor(ids: positions, on: backend)]
            let y = try Ops.execute(.rope(inverse: false), inputs)[0]
            var want = [Double](repeating: 0, count: xs.count)
            for row in 0..<(t * heads) {
                for i in 0..<(d / 2) {
                    let angle = Double(Float(positions[row / heads]) * frequencies[i])
                    let (x1, x2) = (Double(xs[row * d + i]), Double(xs[row * d + i + d / 2]))
                    want[row * d + i] = x1 * cos(angle) - x2 * sin(angle)
                    want[row * d + i + d / 2] = x2 * cos(angle) + x1 * sin(angle)
                }
            }
            #expect(relativeError(try y.floats(), want) < 1e-6, "on \(backend.identifier)")
            let back = try Ops.execute(.rope(inverse: true), [y, inputs[1], inputs[2]])[0]
            #expect(relativeError(try back.floats(), xs.map(Double.init)) < 1e-6)
        }
    }

    /// Two sequences of 5 rows, 4 query heads over 2 KV heads, head dim 80 (two columns per
    /// invocation on the device): out and logsumexp within 1e-5.
    @Test(arguments: BackendKind.allCases)
    func attentionMatchesReference(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (t, hq, hkv, d, s) = (10, 4, 2, 80, 5)
            let q = randomValues(t * hq * d, seed: 220), k = randomValues(t * hkv * d, seed: 221), v = randomValues(t * hkv * d, seed: 222)
            let out = try Ops.execute(.attention(AttentionOptions(sequenceLength: s)),
                                      [try Tensor(q, shape: [t, hq, d], on: backend), try Tensor(k, shape: [t, hkv, d], on: backend),
                                       try Tensor(v, shape: [t, hkv, d], on: backend)])
            var want = [Double](repeating: 0, count: q.count), lse = [Double](repeating: 0, count: t * hq)
            let scale = 1 / Double(d).squareRoot()
            for row in 0..<t {
                for h in 0..<hq {
                    let kh = h / (hq / hkv), keys = (row / s * s)...row
                    let scores = keys.map { j in (0..<d).reduce(0.0) { $0 + Double(q[(row * hq + h) * d + $1]) * Double(k[(j * hkv + kh) * d + $1]) } * scale }
                    let largest = scores.max()!
                    let weights = scores.map { exp($0 - largest) }, total = weights.reduce(0, +)
                    lse[row * hq + h] = largest + log(total)
                    for c in 0..<d {
                        want[(row * hq + h) * d + c] = zip(keys, weights).reduce(0.0) { $0 + $1.1 * Double(v[($1.0 * hkv + kh) * d + c]) } / total
                    }
                }
            }
            #expect(relativeError(try out[0].floats(), want) < 1e-5, "out on \(backend.identifier)")
            #expect(relativeError(try out[1].floats(), lse) < 1e-5, "logsumexp on \(backend.identifier)")
        }
    }

    /// Rows of 300 classes, one ignored: PyTorch's mean over the others, within 1e-6; a label
    /// outside the classes, or every row ignored, gives NaN as PyTorch does.
    @Test(arguments: BackendKind.allCases)
    func crossEntropyMatchesReference(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (rows, classes) = (6, 300)
            let logits = try Tensor(randomValues(rows * classes, seed: 230, scale: 4), shape: [rows, classes], on: backend)
            let values = try logits.floats()
            let labels: [Int32] = [3, -100, 299, 0, 150, 7]
            let out = try Ops.execute(.crossEntropy(ignoreIndex: -100), [logits, try Tensor(ids: labels, on: backend)])
            var total = 0.0, counted = 0.0, lse: [Double] = []
            for r in 0..<rows {
                let row = values[(r * classes)..<(r * classes + classes)].map(Double.init)
                let largest = row.max()!
                lse.append(largest + log(row.reduce(0) { $0 + exp($1 - largest) }))
                if labels[r] != -100 { total += lse[r] - row[Int(labels[r])]; counted += 1 }
            }
            #expect(relativeError(try out[0].floats(), [total / counted]) < 1e-6, "loss on \(backend.identifier)")
            #expect(relativeError(try out[1].floats(), lse) < 1e-6, "logsumexp on \(backend.identifier)")
            for bad: [Int32] in [[3, -100, 300, 0, 150, 7], [-100, -100, -100, -100, -100, -100]] {
                let loss = try Ops.execute(.crossEntropy(ignoreIndex: -100), [logits, try Tensor(ids: bad, on: backend)])[0]
                #expect(try loss.floats()[0].isNaN, "labels \(bad) on \(backend.identifier)")
            }
        }
    }

    /// Rows of the table by id; an id outside it gives a NaN row, on both backends alike.
    @Test(arguments: BackendKind.allCases)
    func embeddingLooksUpRows(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let table = randomValues(5 * 3, seed: 240)
            let out = try Ops.execute(.embedding, [try Tensor(table, shape: [5, 3], dtype: .bf16, on: backend), try Tensor(ids: [4, 0, 4, 5], on: backend)])[0]
            #expect(out.descriptor == TensorDescriptor([4, 3], .bf16))
            let got = try out.floats()
            let want = [4, 0, 4].flatMap { r in (0..<3).map { rounded(table[r * 3 + $0], to: .bf16) } }
            #expect(Array(got.prefix(9)) == want)
            #expect(got.suffix(3).allSatisfy { $0.isNaN })
        }
    }

    /// The embedding's backward: each token's G row summed into its id's row in token order (a
    /// repeated id, an id outside the table adding nothing, rows no token names zero), bit for bit
    /// the same on every backend, with G in f32 and bf16; on Vulkan the rows split into blocks.
    @Test(arguments: BackendKind.allCases)
    func embeddingBackwardSumsInTokenOrder(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (vocabulary, d) = (7, 3), ids: [Int32] = [4, 0, 4, 9, 4, 6, -1]
            for dtype in [DType.f32, .bf16] {
                let g = randomValues(ids.count * d, seed: 245, dtype: dtype)
                let out = try Ops.execute(.embeddingBackward(vocabulary: vocabulary),
                                          [try Tensor(ids: ids, on: backend), try Tensor(g, shape: [ids.count, d], dtype: dtype, on: backend)])[0]
                #expect(out.descriptor == TensorDescriptor([vocabulary, d], .f32))
                var want = [Float](repeating: 0, count: vocabulary * d)
                for (t, id) in ids.enumerated() where (0..<vocabulary).contains(Int(id)) {
                    for c in 0..<d { want[Int(id) * d + c] += g[t * d + c] }
                }
                #expect(try out.floats() == want)
            }
        }
    }

    /// Axes reordered as `torch.permute` orders them, ranks 2 to 4, f32 and bf16.
    @Test(arguments: BackendKind.allCases)
    func transposeReordersAxes(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            for (shape, axes, dtype): (Shape, [Int], DType) in [([3, 5], [1, 0], .f32), ([2, 3, 4], [2, 0, 1], .bf16), ([2, 3, 4, 5], [0, 2, 1, 3], .f32)] {
                let xs = randomValues(shape.count, seed: 250, dtype: dtype)
                let out = try Ops.execute(.transpose(axes: axes), [try Tensor(xs, shape: shape, dtype: dtype, on: backend)])[0]
                #expect(out.shape == Shape(axes.map { shape[$0] }))
                var strides = [Int](repeating: 1, count: shape.rank)
                for i in stride(from: shape.rank - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
                var want: [Float] = [], index = [Int](repeating: 0, count: shape.rank)
                for _ in 0..<shape.count {
                    want.append(xs[zip(axes, index).reduce(0) { $0 + $1.1 * strides[$1.0] }])
                    for axis in stride(from: shape.rank - 1, through: 0, by: -1) {
                        index[axis] += 1
                        if index[axis] < out.shape[axis] { break }
                        index[axis] = 0
                    }
                }
                #expect(try out.floats() == want, "\(shape) by \(axes) on \(backend.identifier)")
            }
            #expect(throws: LowRankError.self) { _ = try Ops.execute(.transpose(axes: [0, 0]), [try Tensor.zeros([2, 2], on: backend)]) }
        }
    }

    /// Shapes that do not fit are errors naming the op.
    @Test func rejectsBadShapes() throws {
        let backend = try BackendKind.cpu.open()
        let q = try Tensor.zeros([6, 3, 8], on: backend), k = try Tensor.zeros([6, 2, 8], on: backend)
        #expect(throws: LowRankError.self) { _ = try Ops.execute(.attention(AttentionOptions(sequenceLength: 3)), [q, k, k]) }  // 3 heads over 2
        #expect(throws: LowRankError.self) { _ = try Ops.execute(.attention(AttentionOptions(sequenceLength: 4)), [k, k, k]) }  // 6 rows, sequences of 4
        #expect(throws: LowRankError.self) { _ = try Ops.execute(.crossEntropy(ignoreIndex: -100), [try Tensor.zeros([4, 5], on: backend), try Tensor.zeros([4], on: backend)]) }
        #expect(throws: LowRankError.self) { _ = try Ops.execute(.rope(inverse: false), [try Tensor.zeros([2, 2, 7], on: backend), try Tensor.zeros([3], on: backend), try Tensor(ids: [0, 1], on: backend)]) }
        #expect(throws: LowRankError.self) { _ = try Ops.execute(.rmsNorm(epsilon: 1e-6), [try Tensor.zeros([2, 8], on: backend), try Tensor.zeros([7], on: backend)]) }
    }
}
