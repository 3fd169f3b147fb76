import LowRank
import Testing

/// Packed attention (`AttentionOptions.packed`): a run of rows holding several sequences attends
/// as each sequence alone would, forward and backward, on both backends; sequence boundaries fall
/// inside the device's query and key tiles and the CPU's blocks, one sequence is a single row.
@Suite("Packed attention")
struct PackedAttentionTests {
    static let (rows, run, qHeads, kvHeads, headDim) = (192, 96, 4, 2, 64)
    /// Each run of 96 rows: sequences of 13, 1, 50 and 32 rows (the longer ones over several tiles).
    static let starts = packedStarts(rows: rows, sequence: run, lengths: [13, 1, 50])

    /// out, logsumexp, dq, dk and dv of every sequence of the packed rows equal those of the
    /// sequence run alone: bit for bit on the CPU (the same blocks from the sequence's start),
    /// within 1e-6 of the largest value on Vulkan, whose tiles start elsewhere: its products add
    /// keys in the same order either way, but the online softmax may rescale at other tiles
    /// (measured: the same bits on lavapipe here).
    @Test(arguments: BackendKind.allCases)
    func eachSequenceAttendsAsAlone(_ kind: BackendKind) throws {
        let (t, hq, hkv, d) = (Self.rows, Self.qHeads, Self.kvHeads, Self.headDim)
        let q = randomValues(t * hq * d, seed: 500, scale: 2), k = randomValues(t * hkv * d, seed: 501, scale: 2)
        let v = randomValues(t * hkv * d, seed: 502), g = randomValues(t * hq * d, seed: 503)
        try onBackend(kind) { backend in
            /// out, logsumexp, dq, dk, dv of rows `rows`, alone or (`starts`) packed.
            func attend(_ rows: Range<Int>, starts: [Int32]?) throws -> [[Float]] {
                let n = rows.count
                func slice(_ x: [Float], _ heads: Int) throws -> Tensor {
                    try Tensor(Array(x[rows.lowerBound * heads * d..<rows.upperBound * heads * d]), shape: [n, heads, d], on: backend)
                }
                let options = AttentionOptions(sequenceLength: starts == nil ? n : Self.run, packed: starts != nil)
                let packed = try starts.map { [try Tensor(ids: $0, on: backend)] } ?? []
                let qkv = [try slice(q, hq), try slice(k, hkv), try slice(v, hkv)]
                let forward = try Ops.execute(.attention(options), qkv + packed)
                let backward = try Ops.execute(.attentionBackward(options), [try slice(g, hq)] + qkv + forward + packed)
                return try (forward + backward).map { try $0.floats() }
            }
            let packed = try attend(0..<t, starts: Self.starts)
            var worst = 0.0
            defer { print("packed attention on \(kind): each sequence alone, worst relative difference \(worst)") }
            for sequence in Self.sequences {
                let alone = try attend(sequence, starts: nil)
                for (i, (name, heads)) in [("out", hq * d), ("logsumexp", hq), ("dq", hq * d), ("dk", hkv * d), ("dv", hkv * d)].enumerated() {
                    let part = Array(packed[i][sequence.lowerBound * heads..<sequence.upperBound * heads])
                    if kind == .cpu {
                        #expect(part == alone[i], "\(name) of rows \(sequence)")
                    } else {
                        let error = relativeError(part, alone[i].map(Double.init))
                        worst = max(worst, error)
                        #expect(error <= 1e-6, "\(name) of rows \(sequence): \(error)")
                    }
                }
            }
        }
    }

    static var sequences: [Range<Int>] {
        let bounds = starts.indices.filter { starts[$0] == Int32($0) } + [rows]
        return zip(bounds, bounds.dropFirst()).map { $0..<$1 }
    }

    /// A start that is neither the row's own nor the previous row's, or one reaching into the
    /// previous run of rows, is an error naming the row on the CPU.
    @Test func aBrokenStartIsAnError() throws {
        let backend = try BackendKind.cpu.open()
        let x = try Tensor(randomValues(8 * 16, seed: 510), shape: [8, 1, 16], on: backend)
        for (starts, row) in [([0, 0, 0, 1, 1, 1, 1, 1], 3), ([0, 0, 0, 0, 0, 0, 0, 0], 4), ([0, 0, 2, 2, 4, 4, 4, 9], 7)] as [([Int32], Int)] {
            #expect {
                _ = try Ops.execute(.attention(AttentionOptions(sequenceLength: 4, packed: true)), [x, x, x, try Tensor(ids: starts, on: backend)])
            } throws: { "\($0)".contains("row \(row)'s sequence start") }
        }
    }
}
