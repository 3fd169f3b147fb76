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

    /// Backward with a frozen weight forms dx alone, the same bits as with d weight beside it.
    @Test(arguments: BackendKind.allCases)
    func rmsNormBackwardWithoutWeightGradient(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (rows, d) = (70, 300)
            let x = try Tensor(randomValues(rows * d, seed: 202), shape: [rows, d], on: backend)
            let weight = try Tensor(randomValues(d, seed: 203), shape: [d], on: backend)
            let g = try Tensor(randomValues(rows * d, seed: 204), shape: [rows, d], on: backend)
            let rstd = try Ops.execute(.rmsNorm(epsilon: 1e-6), [x, weight])[1]
            let operands = RMSNormBackwardOperands(gradient: g, x: x, weight: weight, rstd: rstd).values
            let both = try Ops.execute(.rmsNormBackward(weightGradient: true), operands)
            let dx = try Ops.execute(.rmsNormBackward(weightGradient: false), operands)
            #expect(both.count == 2 && dx.count == 1)
            #expect(try dx[0].floats() == both[0].floats(), "on \(backend.identifier)")
        }
    }

    /// The norm of a residual sum gives the bits of `add` then `rms_norm` (f32 and bf16), and its
    /// backward with R the backward then `add` (within f32 rounding on the device, whose compiler
    /// may contract dx's products differently in the two variants; one bf16 rounding step in bf16).
    @Test(arguments: BackendKind.allCases)
    func rmsNormOfAResidualSumIsTheUnfusedOps(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (rows, d) = (6, 300)
            let tensor = { (seed: UInt64, shape: Shape) in try Tensor(randomValues(shape.count, seed: seed), shape: shape, on: backend) }
            let weight = try tensor(220, [d]), g = try tensor(221, [rows, d])
            for dtype in [DType.f32, .bf16] {
                let x = try Ops.cast(try tensor(223, [rows, d]), to: dtype), r = try Ops.cast(try tensor(224, [rows, d]), to: dtype)
                let fused = try Ops.execute(.rmsNorm(epsilon: 1e-6), [x, weight, r])
                let sum = try Ops.execute(.add, [x, r])[0]
                let unfused = try Ops.execute(.rmsNorm(epsilon: 1e-6), [sum, weight])
                #expect(fused.count == 3 && fused[2].dtype == dtype)
                for (name, got, want) in [("y", fused[0], unfused[0]), ("rstd", fused[1], unfused[1]), ("sum", fused[2], sum)] {
                    #expect(try got.floats() == want.floats(), "\(name), \(dtype) on \(backend.identifier)")
                }
                let gSum = try Ops.cast(try tensor(222, [rows, d]), to: dtype)
                let operands = RMSNormBackwardOperands(gradient: g, x: sum, weight: weight, rstd: fused[1])
                var withR = operands
                withR.residualGradient = gSum
                let dx = try Ops.execute(.rmsNormBackward(weightGradient: false), withR.values)[0]
                let alone = try Ops.execute(.rmsNormBackward(weightGradient: false), operands.values)[0]
                let want = try Ops.execute(.add, [gSum, alone])[0]
                #expect(dx.dtype == dtype)
                #expect(relativeError(try dx.floats(), try want.floats().map(Double.init)) <= (dtype == .f32 ? 1e-6 : 4e-3),
                        "dx + R, \(dtype) on \(backend.identifier)")
            }
        }
    }

    /// The gated activation and its backward give the bits of the activation and product as
    /// separate ops in f32, for every function; with bf16 operands, the f32 result rounded once.
    @Test(arguments: BackendKind.allCases)
    func gatedActivationIsTheUnfusedOps(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let count = 1000
            let gate = try Tensor(randomValues(count, seed: 205, scale: 4), shape: [10, 100], on: backend)
            let up = try Tensor(randomValues(count, seed: 206), shape: [10, 100], on: backend)
            let g = try Tensor(randomValues(count, seed: 207), shape: [10, 100], on: backend)
            for f in Activation.allCases {
                let activated = try Ops.execute(.activation(f), [gate])[0]
                let y = try Ops.execute(.gatedActivation(f), [gate, up])[0]
                #expect(try y.floats() == Ops.execute(.mul, [activated, up])[0].floats(), "\(f) on \(backend.identifier)")
                let d = try Ops.execute(.gatedActivationBackward(f), [gate, up, g])
                let dGate = try Ops.execute(.activationBackward(f), [gate, try Ops.execute(.mul, [g, up])[0]])[0]
                #expect(try d[0].floats() == dGate.floats(), "d gate, \(f) on \(backend.identifier)")
                #expect(try d[1].floats() == Ops.execute(.mul, [g, activated])[0].floats(), "d up, \(f) on \(backend.identifier)")
            }
            // bf16 operands: f32 arithmetic rounded once, into the gate's dtype.
            let (gate16, up16) = (try Ops.cast(gate, to: .bf16), try Ops.cast(up, to: .bf16))
            let y16 = try Ops.execute(.gatedActivation(.silu), [gate16, up16])[0]
            let y32 = try Ops.execute(.gatedActivation(.silu), [try Ops.cast(gate16, to: .f32), try Ops.cast(up16, to: .f32)])[0]
            #expect(y16.dtype == .bf16)
            #expect(try y16.floats() == Ops.cast(y32, to: .bf16).floats(), "bf16 on \(backend.identifier)")
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
            // A pair (keys of another head count beside the queries, bf16) gives each one's bits alone, both ways.
            let keys = try Ops.cast(try Tensor(randomValues(t * 2 * d, seed: 211), shape: [t, 2, d], on: backend), to: .bf16)
            for inverse in [false, true] {
                let pair = try Ops.execute(.rope(inverse: inverse), inputs + [keys])
                #expect(try pair[0].floats() == Ops.execute(.rope(inverse: inverse), inputs)[0].floats(), "x on \(backend.identifier)")
                #expect(pair[1].dtype == .bf16)
                #expect(try pair[1].floats() == Ops.execute(.rope(inverse: inverse), [keys, inputs[1], inputs[2]])[0].floats(), "y on \(backend.identifier)")
            }
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
