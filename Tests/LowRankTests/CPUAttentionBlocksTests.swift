import LowRank
import Testing

/// The CPU attention at shapes that span several query blocks (32 rows) and key blocks (64 rows),
/// with packed sequences whose boundaries fall inside blocks and grouped KV heads: the forward
/// against its float64 twin, the backward against float64 directional derivatives of that twin,
/// and every output bit for bit the same on one thread and on all. Packed rows (several sequences
/// in a run of `sequence` rows, `AttentionOptions.packed`) likewise, and each of their sequences
/// gives what it gives alone.
@Suite("CPU attention blocks")
struct CPUAttentionBlocksTests {
    struct Shape: CustomTestStringConvertible, Sendable {
        var rows, sequence, qHeads, kvHeads, headDim: Int
        /// Packed: the lengths of the sequences each run of `sequence` rows holds, repeated, the last cut at the run's end.
        var packed: [Int] = []
        var testDescription: String {
            "T=\(rows) sequences of \(sequence)\(packed.isEmpty ? "" : " packed \(packed)"), \(qHeads)/\(kvHeads) heads, d=\(headDim)"
        }
        var options: AttentionOptions { AttentionOptions(sequenceLength: sequence, packed: !packed.isEmpty) }
        var starts: [Int32] { packedStarts(rows: rows, sequence: sequence, lengths: packed) }
    }

    static let shapes = [
        Shape(rows: 300, sequence: 150, qHeads: 4, kvHeads: 2, headDim: 32),
        Shape(rows: 131, sequence: 131, qHeads: 3, kvHeads: 1, headDim: 16),
        Shape(rows: 300, sequence: 150, qHeads: 4, kvHeads: 2, headDim: 32, packed: [40, 1, 75]),
    ]

    @Test(arguments: shapes)
    func matchesFloat64(_ s: Shape) throws {
        let options = s.options
        let qCount = s.rows * s.qHeads * s.headDim, kvCount = s.rows * s.kvHeads * s.headDim
        // Large scores, so that a later key block often raises a row's running maximum.
        let x = [randomValues(qCount, seed: 410, scale: 3), randomValues(kvCount, seed: 411, scale: 3), randomValues(kvCount, seed: 412)]
        let g = randomValues(qCount, seed: 413)
        let shapes: [LowRank.Shape] = [[s.rows, s.qHeads, s.headDim], [s.rows, s.kvHeads, s.headDim], [s.rows, s.kvHeads, s.headDim]]
        func run(_ backend: CPUBackend) throws -> [[Float]] {
            let inputs = try zip(x, shapes).map { try Tensor($0, shape: $1, on: backend) }
            let starts = s.packed.isEmpty ? [] : [try Tensor(ids: s.starts, on: backend)]
            let forward = try Ops.execute(.attention(options), inputs + starts)
            let backward = try Ops.execute(.attentionBackward(options), [try Tensor(g, shape: shapes[0], on: backend)] + inputs + forward + starts)
            return try (forward + backward).map { try $0.floats() }
        }
        let got = try run(CPUBackend())
        #expect(try run(CPUBackend(threads: 1)) == got, "one thread and all")

        let starts = s.packed.isEmpty ? [] : [try Float64Values(try Tensor(ids: s.starts, on: CPUBackend()))]
        func exact(_ values: [[Double]]) -> [[Double]] {
            Float64Reference.outputs(of: .attention(options), zip(values, shapes).map { Float64Values($0, shape: $1) } + starts, prior: { [] })!
        }
        let base = x.map { $0.map(Double.init) }, reference = exact(base)
        #expect(relativeError(got[0], reference[0]) < 2e-6, "out")
        #expect(relativeError(got[1], reference[1]) < 2e-6, "logsumexp")

        // d/dε Σ G⊙out(x + ε·u) by central differences in float64, against Σ grad⊙u.
        let loss = { (values: [[Double]]) in zip(exact(values)[0], g).reduce(0.0) { $0 + $1.0 * Double($1.1) } }
        let step = 1e-5
        for (i, name) in ["dq", "dk", "dv"].enumerated() {
            let u = randomValues(x[i].count, seed: 420 + UInt64(i)).map(Double.init)
            let moved = { (sign: Double) in base.enumerated().map { j, v in j == i ? zip(v, u).map { $0 + sign * step * $1 } : v } }
            let difference = (loss(moved(1)) - loss(moved(-1))) / (2 * step)
            let terms = zip(got[2 + i], u).map { Double($0) * $1 }
            let error = abs(terms.reduce(0, +) - difference) / terms.reduce(0) { $0 + abs($1) }
            print("\(name) at \(s.testDescription): directional derivative off by \(error)")
            // Measured: at most 3.1e-8 (dk), the f32 gradients' own rounding.
            #expect(error < 1e-6, "\(name)")
        }
    }
}

/// The sequence starts of `rows` rows in runs of `sequence`, each run holding sequences of
/// `lengths` in turn (the last cut at the run's end); no lengths: one sequence per run.
func packedStarts(rows: Int, sequence: Int, lengths: [Int]) -> [Int32] {
    var starts: [Int32] = [], start = 0, turn = 0, next = 0
    for row in 0..<rows {
        if row % sequence == 0 { turn = 0 }
        if row % sequence == 0 || row == next {
            start = row
            next = lengths.isEmpty ? Int.max : row + lengths[turn % lengths.count]
            turn += 1
        }
        starts.append(Int32(start))
    }
    return starts
}
