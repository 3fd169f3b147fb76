import LowRank
import LowRankBench

extension BenchContext {
    /// Causal attention over one sequence of T rows, forward and forward+backward: heads of 64
    /// columns across d_in (`d_in / 64` query heads, a quarter of them KV heads where that divides,
    /// as Llama 3's grouping), q, k and v in the run's dtype; and the same T rows as packed
    /// sequences of 256 (`AttentionOptions.packed`), whose time follows the pairs inside sequences
    /// when tiles across sequences are skipped whole.
    func attentionSuite() throws -> [BenchRecord] {
        let (t, d) = (shape.t, 64)
        let qHeads = max(1, shape.dIn / d), kvHeads = qHeads % 4 == 0 ? qHeads / 4 : qHeads
        let tensor = { (heads: Int, seed: UInt32) in
            try Tensor(Self.values(t * heads * d, seed: seed, scale: 1), shape: [t, heads, d], dtype: dtype, on: backend)
        }
        let (q, k, v, g) = (try tensor(qHeads, 21), try tensor(kvHeads, 22), try tensor(kvHeads, 23), try tensor(qHeads, 24))
        let options = AttentionOptions(sequenceLength: t)
        // Causal: each product (QKᵀ, P·V forward; those two, G·Vᵀ, dSᵀ·Q and dS·K backward) covers T(T+1)/2 pairs.
        let productFlops = 2 * Double(t * (t + 1) / 2 * d * qHeads)
        let e = Double(dtype.byteSize), queries = Double(t * qHeads * d), keys = Double(t * kvHeads * d)
        let forwardBytes = e * (2 * queries + 2 * keys) + 4 * Double(t * qHeads)
        let backwardBytes = e * (4 * queries + 4 * keys) + 4 * Double(t * qHeads)
        let packedLength = min(t, 256)
        let packed = AttentionOptions(sequenceLength: t, packed: true)
        let starts = try Tensor(ids: (0..<t).map { Int32($0 / packedLength * packedLength) }, on: backend)
        let packedFlops = 2 * Double((0..<t).reduce(0) { $0 + $1 % packedLength + 1 } * d * qHeads)
        let cases: [BenchCase] = [
            ("attention", "forward", 2 * productFlops, forwardBytes, { try Ops.execute(.attention(options), [q, k, v]) }),
            ("attention", "forward+backward", 7 * productFlops, forwardBytes + backwardBytes, {
                let forward = try Ops.execute(.attention(options), [q, k, v])
                return forward + (try Ops.execute(.attentionBackward(options), [g, q, k, v, forward[0], forward[1]]))
            }),
            ("attention", "packed \(packedLength) forward", 2 * packedFlops, forwardBytes, { try Ops.execute(.attention(packed), [q, k, v, starts]) }),
            ("attention", "packed \(packedLength) forward+backward", 7 * packedFlops, forwardBytes + backwardBytes, {
                let forward = try Ops.execute(.attention(packed), [q, k, v, starts])
                return forward + (try Ops.execute(.attentionBackward(packed), [g, q, k, v, forward[0], forward[1], starts]))
            }),
        ]
        return try measure("attention", cases)
    }
}
