import LowRank
import Testing

/// An attention test's shape: `rows` rows in runs of `sequence`, `qHeads` query heads over `kvHeads`
/// KV heads of `headDim` columns, held in `dtype`; `packed`: the lengths of the sequences in each run
/// of `sequence` rows (`packedStarts`), none for one sequence a run.
struct AttentionShape: CustomTestStringConvertible, Sendable {
    var rows, sequence, qHeads, kvHeads, headDim: Int
    var dtype: DType = .f32
    var packed: [Int] = []
    var testDescription: String {
        "T=\(rows) sequences of \(sequence)\(packed.isEmpty ? "" : " packed \(packed)"), \(qHeads)/\(kvHeads) heads, d=\(headDim), \(dtype)"
    }
}

/// An attention test's operands: random q and k (at scale 2), v and G of `rows` rows, `qHeads` query
/// heads over `kvHeads` KV heads of `headDim` columns, with values rounded to `values` and held in tensors
/// of `dtype`, and the CPU backend's forward of them (the out and logsumexp the backward takes). With
/// `packed` lengths, each run of `sequence` rows holds those sequences (`packedStarts`).
struct AttentionInputs {
    var options: AttentionOptions
    var dtype: DType
    var qShape, kvShape: Shape
    var q, k, v, g: [Float]
    var starts: [Int32]?
    var out: [Float] = [], lse: [Float] = []

    init(_ s: AttentionShape, values: DType? = nil) throws {
        let values = values ?? s.dtype
        options = AttentionOptions(sequenceLength: s.sequence, packed: !s.packed.isEmpty)
        starts = s.packed.isEmpty ? nil : packedStarts(rows: s.rows, sequence: s.sequence, lengths: s.packed)
        dtype = s.dtype
        (qShape, kvShape) = ([s.rows, s.qHeads, s.headDim], [s.rows, s.kvHeads, s.headDim])
        q = randomValues(qShape.count, seed: 300, dtype: values, scale: 2)
        k = randomValues(kvShape.count, seed: 301, dtype: values, scale: 2)
        v = randomValues(kvShape.count, seed: 302, dtype: values)
        g = randomValues(qShape.count, seed: 303, dtype: values)
        let forward = try forward(try BackendKind.cpu.open())
        (out, lse) = (try forward[0].floats(), try forward[1].floats())
    }

    func inputs(_ backend: any Backend) throws -> [Tensor] {
        [try Tensor(q, shape: qShape, dtype: dtype, on: backend), try Tensor(k, shape: kvShape, dtype: dtype, on: backend),
         try Tensor(v, shape: kvShape, dtype: dtype, on: backend)]
    }

    /// The sequence starts of a packed attention, after its other operands.
    func startsInput(_ backend: any Backend) throws -> [Tensor] { try starts.map { [try Tensor(ids: $0, on: backend)] } ?? [] }

    /// out and logsumexp.
    func forward(_ backend: any Backend) throws -> [Tensor] {
        try Ops.execute(.attention(options), try inputs(backend) + startsInput(backend))
    }

    /// dq, dk and dv from G and the CPU's out and logsumexp.
    func backward(_ backend: any Backend) throws -> [Tensor] {
        try Ops.execute(.attentionBackward(options), [try Tensor(g, shape: qShape, dtype: dtype, on: backend)] + inputs(backend)
            + [try Tensor(out, shape: qShape, dtype: dtype, on: backend), try Tensor(lse, shape: [qShape[0], qShape[1]], on: backend)]
            + startsInput(backend))
    }
}
