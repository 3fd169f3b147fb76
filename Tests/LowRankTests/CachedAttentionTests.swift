import Glibc
import LowRank
import Testing

/// `Op.cachedAttention`, the decoding step's attention over a KV cache, against `Op.attention` over
/// the whole sequence on the same backend: the new rows' outputs are the whole sequence's rows
/// past..<past + T. The caches' rows beyond past hold NaN, so a kernel that reads them fails.
struct CachedAttentionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var past, rows, qHeads, kvHeads, headDim: Int
        var dtype: DType = .f32
        var testDescription: String { "past \(past), \(rows) new rows, \(qHeads)/\(kvHeads) heads, d=\(headDim), \(dtype)" }
    }

    /// A prefill (no past), single decoding steps at the start, inside and past a key tile, a chunk
    /// of new rows after a long past, a head dim that is not a multiple of 64, and bf16.
    static let cases = [
        Case(past: 0, rows: 9, qHeads: 4, kvHeads: 2, headDim: 64),
        Case(past: 1, rows: 1, qHeads: 4, kvHeads: 2, headDim: 64),
        Case(past: 37, rows: 1, qHeads: 4, kvHeads: 2, headDim: 64),
        Case(past: 70, rows: 5, qHeads: 6, kvHeads: 2, headDim: 80),
        Case(past: 21, rows: 3, qHeads: 3, kvHeads: 3, headDim: 128, dtype: .bf16),
    ]

    /// out and logsumexp within 1e-6 of the whole sequence's attention on each backend (f32; bf16
    /// outputs within one unit in the last place), and the f32 case within f32's rounding of two
    /// implementations across backends (`crossBackendBounds`).
    @Test(arguments: BackendKind.allCases, cases)
    func matchesAttentionOverTheWholeSequence(_ kind: BackendKind, _ c: Case) throws {
        try onBackend(kind) { backend in
            let total = c.past + c.rows, capacity = total + 4
            let (qRow, kvRow) = (c.qHeads * c.headDim, c.kvHeads * c.headDim)
            let q = randomValues(total * qRow, seed: 500, dtype: c.dtype, scale: 2)
            let k = randomValues(total * kvRow, seed: 501, dtype: c.dtype, scale: 2), v = randomValues(total * kvRow, seed: 502, dtype: c.dtype)
            let whole = try Ops.execute(.attention(AttentionOptions(sequenceLength: total)),
                                        [try Tensor(q, shape: [total, c.qHeads, c.headDim], dtype: c.dtype, on: backend),
                                         try Tensor(k, shape: [total, c.kvHeads, c.headDim], dtype: c.dtype, on: backend),
                                         try Tensor(v, shape: [total, c.kvHeads, c.headDim], dtype: c.dtype, on: backend)])
            let unwritten = [Float](repeating: .nan, count: (capacity - c.past) * kvRow)
            let new = c.past..<total
            func rows(_ values: [Float], _ width: Int, _ range: Range<Int>) -> [Float] { Array(values[range.lowerBound * width..<range.upperBound * width]) }
            let operands = CachedAttentionOperands(
                q: try Tensor(rows(q, qRow, new), shape: [c.rows, c.qHeads, c.headDim], dtype: c.dtype, on: backend),
                k: try Tensor(rows(k, kvRow, new), shape: [c.rows, c.kvHeads, c.headDim], dtype: c.dtype, on: backend),
                v: try Tensor(rows(v, kvRow, new), shape: [c.rows, c.kvHeads, c.headDim], dtype: c.dtype, on: backend),
                keyCache: try Tensor(rows(k, kvRow, 0..<c.past) + unwritten, shape: [capacity, c.kvHeads, c.headDim], dtype: c.dtype, on: backend),
                valueCache: try Tensor(rows(v, kvRow, 0..<c.past) + unwritten, shape: [capacity, c.kvHeads, c.headDim], dtype: c.dtype, on: backend),
                past: try Tensor(ids: [Int32(c.past)], on: backend))
            let cached = try Ops.execute(.cachedAttention(scale: nil), operands.values)
            let want = rows(try whole[0].floats(), qRow, new).map(Double.init)
            let bound = c.dtype == .f32 ? 1e-6 : 8e-3
            #expect(relativeError(try cached[0].floats(), want) <= bound, "out")
            #expect(relativeError(try cached[1].floats(), rows(try whole[1].floats(), c.qHeads, new).map(Double.init)) <= 1e-6, "logsumexp")
            if c.dtype == .f32, kind != .cpu {
                let cpu = try BackendKind.cpu.open()
                let onCPU = try Ops.execute(.cachedAttention(scale: nil), try operands.values.map { try $0.copy(to: cpu) })
                let (got, cpuOut) = (try cached[0].floats(), try onCPU[0].floats())
                let bounds = Self.crossBackendBounds(c, q: rows(q, qRow, new), k: k, v: v)
                let worst = zip(zip(got, cpuOut), bounds).map { abs(Double($0.0) - Double($0.1)) / $1 }.max() ?? 0
                #expect(worst <= 1, "out against the CPU backend: \(worst) of the f32 rounding bound")
            }
        }
    }

    /// How far two f32 implementations of the new rows' attention may differ, element by element:
    /// each rounds the scores' dot products (γ(d + 1) of Σ|q·k| times the scale, the running maximum
    /// subtracted too) and each exp (Vulkan allows 3 + 2|x| ulp at x; glibc's is within 1), which move each
    /// probability p_j by a relative E_j and the output by Σ p_j·|v_j − o|·E_j / Σ p_j; and each sums P·V
    /// and the denominator, γ(n + 2) of Σ p_j·|v_j| / Σ p_j.
    static func crossBackendBounds(_ c: Case, q: [Float], k: [Float], v: [Float]) -> [Double] {
        func gamma(_ n: Int) -> Double { Double(n) * 0x1p-24 / (1 - Double(n) * 0x1p-24) }
        let scale = 1 / Double(c.headDim).squareRoot(), group = c.qHeads / c.kvHeads
        var bounds: [Double] = []
        for row in 0..<c.rows {
            let keys = c.past + row + 1
            for head in 0..<c.qHeads {
                let query = (row * c.qHeads + head) * c.headDim
                func key(_ j: Int) -> Int { (j * c.kvHeads + head / group) * c.headDim }
                let scores = (0..<keys).map { j in (0..<c.headDim).reduce(0.0) { $0 + Double(q[query + $1]) * Double(k[key(j) + $1]) } * scale }
                let magnitudes = (0..<keys).map { j in (0..<c.headDim).reduce(0.0) { $0 + abs(Double(q[query + $1]) * Double(k[key(j) + $1])) } * scale }
                let top = scores.max()!
                let p = scores.map { exp($0 - top) }, total = p.reduce(0, +)
                let relative = (0..<keys).map { j in 2 * (gamma(c.headDim + 1) * magnitudes[j] + (3 + 2 * (top - scores[j])) * 0x1p-23) }
                for t in 0..<c.headDim {
                    let values = (0..<keys).map { Double(v[key($0) + t]) }
                    let out = zip(p, values).reduce(0.0) { $0 + $1.0 * $1.1 } / total
                    let moved = (0..<keys).reduce(0.0) { $0 + p[$1] * abs(values[$1] - out) * relative[$1] } / total
                    let summed = 2 * gamma(keys + 2) * zip(p, values).reduce(0.0) { $0 + $1.0 * abs($1.1) } / total
                    bounds.append(moved + summed)
                }
            }
        }
        return bounds
    }

    /// A past beyond the cache is an error on the CPU; mismatched caches are refused by the shape rule;
    /// a graph refuses to differentiate through the op.
    @Test func rejectsBadInputs() throws {
        let cpu = try BackendKind.cpu.open()
        func operands(past: Int32, cacheRows: Int = 4, cacheDType: DType = .f32) throws -> [Tensor] {
            [try Tensor.zeros([1, 2, 8], on: cpu), try Tensor.zeros([1, 1, 8], on: cpu), try Tensor.zeros([1, 1, 8], on: cpu),
             try Tensor.zeros([cacheRows, 1, 8], dtype: cacheDType, on: cpu), try Tensor.zeros([cacheRows, 1, 8], on: cpu),
             try Tensor(ids: [past], on: cpu)]
        }
        #expect(throws: LowRankError.self) { try Ops.execute(.cachedAttention(scale: nil), try operands(past: 5)) }
        #expect(throws: LowRankError.self) { try Ops.execute(.cachedAttention(scale: nil), try operands(past: -1)) }
        #expect(throws: LowRankError.self) { try Ops.execute(.cachedAttention(scale: nil), try operands(past: 0, cacheDType: .bf16)) }
        #expect(throws: LowRankError.self) {
            _ = try Op.cachedAttention(scale: nil).outputs(for: try operands(past: 0).map(\.descriptor).dropLast() + [TensorDescriptor([2], .i32)])
        }
        let g = Graph(backend: cpu)
        let values = try operands(past: 0)
        let q = try g.parameter("q", values[0], trainable: true)
        let rest = try values.dropFirst().enumerated().map { try g.parameter("x\($0.offset)", $0.element) }
        let out = try g.cachedAttention(CachedAttentionOperands([q] + rest))
        let loss = try g.meanSquaredError(out, try g.parameter("target", try Tensor.zeros([1, 2, 8], on: cpu)))
        #expect(throws: LowRankError.self) { _ = try g.gradients(of: loss, for: [q]) }
    }
}
