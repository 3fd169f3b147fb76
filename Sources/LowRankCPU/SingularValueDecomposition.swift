import COpenBLAS
import LowRankCore

/// The thin SVD `M = U·diag(S)·Vᵀ` of a row-major `[m, n]` matrix, in float64 (LAPACK `dgesdd`).
public struct SingularValueDecomposition: Sendable {
    /// `[m, k]` row-major, k = min(m, n).
    public let u: [Double]
    /// Descending, k values.
    public let s: [Double]
    /// `[k, n]` row-major.
    public let vt: [Double]
    public let m: Int, n: Int

    public var k: Int { min(m, n) }

    public init(_ matrix: [Double], rows m: Int, columns n: Int) throws {
        guard matrix.count == m * n, m > 0, n > 0 else {
            throw LowRankError(.shapeMismatch, "an SVD needs a non-empty [\(m), \(n)] matrix, got \(matrix.count) values")
        }
        self.m = m
        self.n = n
        let k = min(m, n)
        // LAPACK is column-major: the row-major M is the column-major Mᵀ [n, m] = V·S·Uᵀ, so its
        // left factor is our V (column-major [n, k] = row-major Vᵀ [k, n]) and its right one our Uᵀ.
        var a = matrix
        var s = [Double](repeating: 0, count: k)
        var left = [Double](repeating: 0, count: n * k), right = [Double](repeating: 0, count: k * m)
        var (rows, columns, lda, ldl, ldr) = (Int32(n), Int32(m), Int32(n), Int32(n), Int32(k))
        var iwork = [Int32](repeating: 0, count: 8 * k)
        var info: Int32 = 0
        var job = Int8(UInt8(ascii: "S"))
        var query = -1 as Int32, size = 0.0
        dgesdd_(&job, &rows, &columns, &a, &lda, &s, &left, &ldl, &right, &ldr, &size, &query, &iwork, &info)
        var lwork = Int32(size)
        var work = [Double](repeating: 0, count: max(1, Int(size)))
        dgesdd_(&job, &rows, &columns, &a, &lda, &s, &left, &ldl, &right, &ldr, &work, &lwork, &iwork, &info)
        guard info == 0 else {
            throw LowRankError(.numerical, "the SVD did not converge (dgesdd info \(info))", context: [("shape", "[\(m), \(n)]")])
        }
        self.s = s
        vt = left
        // `right` is column-major Uᵀ [k, m], i.e. row-major U [m, k].
        u = right
    }
}
