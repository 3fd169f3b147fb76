import COpenBLAS
import LowRankCore

extension CPUBackend {
    func matmul(_ o: MatmulOptions, _ inputs: [Tensor], _ c: Tensor) throws {
        let a = inputs[0], b = inputs[1]
        let m = c.shape[0], n = c.shape[1]
        withFloats(a) { pa in
            producing(c, preserving: o.accumulate) { pc in
                var beta: Float = o.accumulate ? 1 : 0
                if o.hasBias && !o.accumulate {
                    withFloats(inputs[2]) { bias in fillRows(pc, rows: m, with: bias, columns: n) }
                    beta = 1
                }
                // B of any dtype: f32 straight to sgemm, 16-bit and quantized a panel of rows at a time.
                weightProduct(pa, transposeA: o.transposeA, m: m, b, transposeW: o.transposeB, pc, alpha: o.alpha, beta: beta)
                if o.hasBias && o.accumulate {
                    withFloats(inputs[2]) { bias in addRows(pc, rows: m, bias, columns: n) }
                }
            }
        }
    }

    /// Products smaller than this many FLOPs per thread run on the calling thread: about 0.1 ms of
    /// sgemm, a hundred times the cost of waking a thread.
    static let sgemmFlopsPerThread = 1 << 22

    /// Row-major `C[m, n] = alpha·op(A)·op(B) + beta·C`, A `[m, k]` (`[k, m]` transposed),
    /// B `[k, n]` (`[n, k]` transposed); `strides`, when given, are the three matrices' leading
    /// dimensions (rows inside wider ones: attention's heads), else each is packed.
    ///
    /// OpenBLAS runs single-threaded (`init`): a large product splits C's longer side over this
    /// backend's threads, so the bf16 kernel's and sgemm's work share one pool and no OpenBLAS
    /// worker spins between calls. Each part is C's rows or columns with op(A)'s rows or op(B)'s
    /// columns, so results do not depend on the split.
    func sgemm(_ a: UnsafePointer<Float>, transpose ta: Bool, _ b: UnsafePointer<Float>, transpose tb: Bool,
               _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, alpha: Float, beta: Float, strides: (a: Int, b: Int, c: Int)? = nil) {
        guard m > 0, n > 0 else { return }
        let ldc = strides?.c ?? n
        if k == 0 {
            for row in 0..<m where beta != 1 {
                if beta == 0 { (c + row * ldc).update(repeating: 0, count: n) } else { VectorMath.scale(c + row * ldc, count: n, by: beta) }
            }
            return
        }
        let lda = strides?.a ?? Swift.max(1, ta ? m : k), ldb = strides?.b ?? Swift.max(1, tb ? k : n)
        let splitsRows = m >= n, flopsPerLine = 2 * k * (splitsRows ? n : m)
        parallelFor(splitsRows ? m : n, minimumPerThread: Swift.max(1, Self.sgemmFlopsPerThread / flopsPerLine)) { part in
            let first = part.lowerBound
            let (pa, pb, pc) = splitsRows ? (ta ? a + first : a + first * lda, b, c + first * ldc) : (a, tb ? b + first * ldb : b + first, c + first)
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                        blasint(splitsRows ? part.count : m), blasint(splitsRows ? n : part.count), blasint(k), alpha,
                        pa, blasint(lda), pb, blasint(ldb), beta, pc, blasint(ldc))
        }
    }

    func fillRows(_ c: UnsafeMutablePointer<Float>, rows: Int, with row: UnsafePointer<Float>, columns: Int) {
        for i in 0..<rows { (c + i * columns).update(from: row, count: columns) }
    }

    func addRows(_ c: UnsafeMutablePointer<Float>, rows: Int, _ row: UnsafePointer<Float>, columns: Int) {
        for i in 0..<rows {
            let r = c + i * columns
            for j in 0..<columns { r[j] += row[j] }
        }
    }
}
