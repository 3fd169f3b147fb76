import COpenBLAS
import LowRankCore

/// The reduced QR `M = Q·R` of a row-major `[m, n]` matrix, in float64 (LAPACK's Householder
/// `dgeqrf` and `dorgqr`, the routines PyTorch's `linalg.qr` calls, so the signs of Q's columns and
/// R's rows are theirs).
public struct QRDecomposition: Sendable {
    /// `[m, k]` row-major, orthonormal columns, k = min(m, n).
    public let q: [Double]
    /// `[k, n]` row-major, upper triangular.
    public let r: [Double]
    public let m: Int, n: Int

    public var k: Int { min(m, n) }

    public init(_ matrix: [Double], rows m: Int, columns n: Int) throws {
        guard matrix.count == m * n, m > 0, n > 0 else {
            throw LowRankError(.shapeMismatch, "a QR decomposition needs a non-empty [\(m), \(n)] matrix, got \(matrix.count) values")
        }
        (self.m, self.n) = (m, n)
        let k = min(m, n)
        // LAPACK is column-major: lay the matrix out by columns.
        var a = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { a[i + j * m] = matrix[i * n + j] } }
        var tau = [Double](repeating: 0, count: k)
        var (rows, columns, reflectors, lda, info) = (Int32(m), Int32(n), Int32(k), Int32(m), Int32(0))
        func withWorkspace(_ call: (inout [Double], inout Int32) -> Void) {
            var size = [0.0], query = Int32(-1)
            call(&size, &query)
            var work = [Double](repeating: 0, count: max(1, Int(size[0])))
            var lwork = Int32(work.count)
            OpenBLASThreads.allCores { call(&work, &lwork) }
        }
        withWorkspace { work, lwork in dgeqrf_(&rows, &columns, &a, &lda, &tau, &work, &lwork, &info) }
        guard info == 0 else { throw LowRankError(.numerical, "the QR decomposition failed (dgeqrf info \(info))", context: [("shape", "[\(m), \(n)]")]) }
        var r = [Double](repeating: 0, count: k * n)
        for i in 0..<k { for j in i..<n { r[i * n + j] = a[i + j * m] } }
        self.r = r
        withWorkspace { work, lwork in dorgqr_(&rows, &reflectors, &reflectors, &a, &lda, &tau, &work, &lwork, &info) }
        guard info == 0 else { throw LowRankError(.numerical, "forming Q failed (dorgqr info \(info))", context: [("shape", "[\(m), \(n)]")]) }
        var q = [Double](repeating: 0, count: m * k)
        for i in 0..<m { for j in 0..<k { q[i * k + j] = a[i + j * m] } }
        self.q = q
    }
}
