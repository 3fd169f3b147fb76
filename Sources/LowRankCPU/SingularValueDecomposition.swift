import COpenBLAS
import LowRankCore

/// The thin SVD `M = U·diag(S)·Vᵀ` of a row-major `[m, n]` matrix, in float64: exact (LAPACK
/// `dgesdd`, k = min(m, n) triplets) or randomized (its top k, approximately).
public struct SingularValueDecomposition: Sendable {
    /// `[m, k]` row-major.
    public let u: [Double]
    /// Descending, k values.
    public let s: [Double]
    /// `[k, n]` row-major.
    public let vt: [Double]
    public let m: Int, n: Int, k: Int

    public init(_ matrix: [Double], rows m: Int, columns n: Int) throws {
        guard matrix.count == m * n, m > 0, n > 0 else {
            throw LowRankError(.shapeMismatch, "an SVD needs a non-empty [\(m), \(n)] matrix, got \(matrix.count) values")
        }
        (self.m, self.n) = (m, n)
        let k = min(m, n)
        self.k = k
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
        OpenBLASThreads.allCores { dgesdd_(&job, &rows, &columns, &a, &lda, &s, &left, &ldl, &right, &ldr, &work, &lwork, &iwork, &info) }
        guard info == 0 else {
            throw LowRankError(.numerical, "the SVD did not converge (dgesdd info \(info))", context: [("shape", "[\(m), \(n)]")])
        }
        self.s = s
        vt = left
        // `right` is column-major Uᵀ [k, m], i.e. row-major U [m, k].
        u = right
    }
}

extension SingularValueDecomposition {
    /// The top `rank` triplets by PyTorch's `svd_lowrank(M, q: rank, niter: iterations)` (Halko et
    /// al. 2009, algorithm 5.1 with 4.4's subspace iterations; the wider side transposed first, as
    /// it does): an orthonormal basis Q of M·Ω for a Gaussian Ω (here from `seed`, not PyTorch's
    /// generator), refined `iterations` times through Mᵀ, then the exact SVD of Qᵀ·M.
    public init(randomized matrix: [Double], rows m: Int, columns n: Int, rank q: Int, iterations: Int, seed: UInt64) throws {
        guard matrix.count == m * n, m > 0, n > 0 else {
            throw LowRankError(.shapeMismatch, "an SVD needs a non-empty [\(m), \(n)] matrix, got \(matrix.count) values")
        }
        guard q >= 1, q <= min(m, n), iterations >= 0 else {
            throw LowRankError(.invalidArgument, "a randomized SVD needs 1 <= rank <= min(m, n) = \(min(m, n)) and iterations >= 0, got rank \(q), \(iterations) iterations")
        }
        let transposed = m < n
        let (rows, columns) = transposed ? (n, m) : (m, n)
        let a = transposed ? Self.transpose(matrix, rows: m, columns: n) : matrix
        func product(_ left: [Double], transposeLeft: Bool, _ right: [Double], _ rowsOut: Int, _ inner: Int, _ columnsOut: Int) -> [Double] {
            var out = [Double](repeating: 0, count: rowsOut * columnsOut)
            cblas_dgemm(CblasRowMajor, transposeLeft ? CblasTrans : CblasNoTrans, CblasNoTrans, Int32(rowsOut), Int32(columnsOut), Int32(inner),
                        1, left, transposeLeft ? Int32(rowsOut) : Int32(inner), right, Int32(columnsOut), 0, &out, Int32(columnsOut))
            return out
        }
        var random = SplitMix(seed: seed)
        let omega = (0..<columns * q).map { _ in random.normal() }
        var basis = try QRDecomposition(product(a, transposeLeft: false, omega, rows, columns, q), rows: rows, columns: q).q
        for _ in 0..<iterations {
            let back = try QRDecomposition(product(a, transposeLeft: true, basis, columns, rows, q), rows: columns, columns: q).q
            basis = try QRDecomposition(product(a, transposeLeft: false, back, rows, columns, q), rows: rows, columns: q).q
        }
        let small = try SingularValueDecomposition(product(basis, transposeLeft: true, a, q, rows, columns), rows: q, columns: columns)
        let left = product(basis, transposeLeft: false, small.u, rows, q, q)  // [rows, q]
        (self.m, self.n, self.k, self.s) = (m, n, q, small.s)
        if transposed {
            // Mᵀ ≈ left·S·smallᵀ, so M ≈ small.vtᵀ·S·leftᵀ.
            u = Self.transpose(small.vt, rows: q, columns: columns)
            vt = Self.transpose(left, rows: rows, columns: q)
        } else {
            (u, vt) = (left, small.vt)
        }
    }

    private static func transpose(_ matrix: [Double], rows: Int, columns: Int) -> [Double] {
        (0..<rows * columns).map { matrix[($0 % rows) * columns + $0 / rows] }
    }
}
