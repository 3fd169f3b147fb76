import LowRankCore

/// The blocking of one attention op: shapes, the query and key blocks of each sequence, and
/// `sgemm` (with strides) over rows of one head inside `[T, heads, d]` tensors (leading dimension `heads·d`), so
/// no head, and no KV head shared by a group of query heads, is ever copied out.
struct AttentionBlocks {
    /// Query rows per block: with `keyRows`, a `32×64×d` product stays under OpenBLAS's
    /// threading threshold for d < 128, so the threads over blocks do not contend for its pool.
    static let queryRows = 32
    static let keyRows = 64

    let t, hq, hkv, d, group: Int
    /// Each sequence's rows, in order: runs of `sequenceLength`, split further where a packed
    /// attention's starts begin a sequence.
    let sequences: [Range<Int>]
    /// Every query block: its sequence and its rows.
    let queryBlocks: [(sequence: Range<Int>, rows: Range<Int>)]
    let scale: Float
    /// Keys before the first query (a KV cache's rows; 0 in training): query row t is at position
    /// past + t of one sequence whose keys are rows 0..<past + T.
    let past: Int

    /// `starts`: a packed attention's sequence starts, checked against `AttentionOptions.packed`'s rule.
    init(_ o: AttentionOptions, q: Tensor, k: Tensor, starts: UnsafePointer<Int32>? = nil, past: Int = 0) throws {
        (t, hq, d, hkv) = (q.shape[0], q.shape[1], q.shape[2], k.shape[1])
        group = hq / hkv
        scale = o.scale(headDim: d)
        self.past = past
        var sequences: [Range<Int>] = []
        var lower = 0
        for row in 0..<t {
            let begins = row % o.sequenceLength == 0
            if let starts {
                let start = Int(starts[row])
                guard start == row || (!begins && start == Int(starts[row - 1])) else {
                    let rule = begins ? "\(row), the first of its run of \(o.sequenceLength) rows" : "\(row) or row \(row - 1)'s start \(starts[row - 1])"
                    throw LowRankError(.invalidArgument, "attention: row \(row)'s sequence start is \(start) but must be \(rule)",
                                       context: [("op", "attention")])
                }
            }
            if row > 0 && (begins || starts?[row] == Int32(row)) {
                sequences.append(lower..<row)
                lower = row
            }
        }
        if t > 0 { sequences.append(lower..<t) }
        self.sequences = sequences
        queryBlocks = sequences.flatMap { sequence in
            stride(from: sequence.lowerBound, to: sequence.upperBound, by: Self.queryRows).map {
                (sequence, $0..<Swift.min($0 + Self.queryRows, sequence.upperBound))
            }
        }
    }

    /// The longest side of any block product's operands: a head's d, or a block of keys.
    var extent: Int { Swift.max(d, Self.keyRows, Self.queryRows) }

    var qStride: Int { hq * d }
    var kvStride: Int { hkv * d }

    /// Where row `row` of query head (or of its gradient, output) `h` starts.
    func qOffset(_ row: Int, _ h: Int) -> Int { (row * hq + h) * d }
    /// Where key or value row `row` of KV head `kh` starts.
    func kvOffset(_ row: Int, _ kh: Int) -> Int { (row * hkv + kh) * d }

    /// The key blocks the query rows `rows` of `sequence` attend to: the sequence's start through
    /// the last of them. Causal masking skips every later block whole.
    func keyBlocks(through rows: Range<Int>, of sequence: Range<Int>) -> [Range<Int>] {
        let end = rows.upperBound + past
        return stride(from: sequence.lowerBound, to: end, by: Self.keyRows).map { $0..<Swift.min($0 + Self.keyRows, end) }
    }

    /// The query blocks of `sequence` that hold a row seeing any of `keys`.
    func queryBlocks(seeing keys: Range<Int>, of sequence: Range<Int>) -> [Range<Int>] {
        let from = sequence.lowerBound + (keys.lowerBound - sequence.lowerBound) / Self.queryRows * Self.queryRows
        return stride(from: from, to: sequence.upperBound, by: Self.queryRows).map { $0..<Swift.min($0 + Self.queryRows, sequence.upperBound) }
    }

    /// How many leading keys of `keys` query row `row` sees (causal; may be zero or negative).
    func visible(row: Int, _ keys: Range<Int>) -> Int { Swift.min(keys.count, row + past - keys.lowerBound + 1) }
}
