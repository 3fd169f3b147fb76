import COpenBLAS
import LowRankCore

/// The blocking of one attention op: shapes, the query and key blocks of each sequence, and
/// sgemm over rows of one head inside `[T, heads, d]` tensors (leading dimension `heads·d`), so
/// no head, and no KV head shared by a group of query heads, is ever copied out.
struct AttentionBlocks {
    /// Query rows per block: with `keyRows`, a `32×64×d` product stays under OpenBLAS's
    /// threading threshold for d < 128, so the threads over blocks do not contend for its pool.
    static let queryRows = 32
    static let keyRows = 64

    let t, hq, hkv, d, group, sequence: Int
    let scale: Float
    /// Keys before the first query (a KV cache's rows; 0 in training): query row t is at position
    /// past + t of one sequence whose keys are rows 0..<past + T.
    let past: Int

    init(_ o: AttentionOptions, q: Tensor, k: Tensor, past: Int = 0) {
        (t, hq, d, hkv) = (q.shape[0], q.shape[1], q.shape[2], k.shape[1])
        group = hq / hkv
        sequence = o.sequenceLength
        scale = o.scale(headDim: d)
        self.past = past
    }

    var sequences: Int { t / sequence }
    var queryBlocksPerSequence: Int { (sequence + Self.queryRows - 1) / Self.queryRows }
    var qStride: Int { hq * d }
    var kvStride: Int { hkv * d }

    func start(_ sequence: Int) -> Int { sequence * self.sequence }
    /// Where row `row` of query head (or of its gradient, output) `h` starts.
    func qOffset(_ row: Int, _ h: Int) -> Int { (row * hq + h) * d }
    /// Where key or value row `row` of KV head `kh` starts.
    func kvOffset(_ row: Int, _ kh: Int) -> Int { (row * hkv + kh) * d }

    /// Query block `index` of sequence `sequence`.
    func queryBlock(_ sequence: Int, _ index: Int) -> Range<Int> {
        let lower = start(sequence) + index * Self.queryRows
        return lower..<Swift.min(lower + Self.queryRows, start(sequence) + self.sequence)
    }

    /// The key blocks the query rows `rows` attend to: their sequence's start through the last of
    /// them. Causal masking skips every later block whole.
    func keyBlocks(through rows: Range<Int>) -> [Range<Int>] {
        let first = rows.lowerBound / sequence * sequence, end = rows.upperBound + past
        return stride(from: first, to: end, by: Self.keyRows).map { $0..<Swift.min($0 + Self.keyRows, end) }
    }

    func keyBlocks(_ sequence: Int) -> [Range<Int>] { keyBlocks(through: start(sequence)..<(start(sequence) + self.sequence)) }

    /// The query blocks of the sequence of `keys` that hold a row seeing any of them.
    func queryBlocks(seeing keys: Range<Int>) -> [Range<Int>] {
        let first = keys.lowerBound / sequence * sequence, end = first + sequence
        let from = first + (keys.lowerBound - first) / Self.queryRows * Self.queryRows
        return stride(from: from, to: end, by: Self.queryRows).map { $0..<Swift.min($0 + Self.queryRows, end) }
    }

    /// How many leading keys of `keys` query row `row` sees (causal; may be zero or negative).
    func visible(row: Int, _ keys: Range<Int>) -> Int { Swift.min(keys.count, row + past - keys.lowerBound + 1) }

    /// Row-major `C[m, n] = alpha·op(A)·op(B) + beta·C` with explicit leading dimensions.
    func gemm(_ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, transposeA: Bool = false, transposeB: Bool,
              _ c: UnsafeMutablePointer<Float>, _ ldc: Int, m: Int, n: Int, k: Int, alpha: Float, beta: Float) {
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
}
