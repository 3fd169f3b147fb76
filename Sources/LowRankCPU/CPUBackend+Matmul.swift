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

    /// Row-major `C[m, n] = alpha·op(A)·op(B) + beta·C`, A `[m, k]` (`[k, m]` transposed),
    /// B `[k, n]` (`[n, k]` transposed).
    func sgemm(_ a: UnsafePointer<Float>, transpose ta: Bool, _ b: UnsafePointer<Float>, transpose tb: Bool,
               _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, alpha: Float, beta: Float) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            if beta == 0 { c.update(repeating: 0, count: m * n) } else if beta != 1 { for i in 0..<(m * n) { c[i] *= beta } }
            return
        }
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha,
                    a, blasint(Swift.max(1, ta ? m : k)), b, blasint(Swift.max(1, tb ? k : n)),
                    beta, c, blasint(n))
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
