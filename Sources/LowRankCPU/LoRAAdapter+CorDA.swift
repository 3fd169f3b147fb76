import COpenBLAS
import LowRankCore

/// CorDA's choice of singular triplets of W·C (PEFT's `CordaConfig.corda_method`).
public enum CorDAMethod: String, Sendable, Hashable, CaseIterable {
    /// Instruction-previewed: the largest r, which the task's inputs excite most.
    case ipm
    /// Knowledge-preserved: the smallest r, leaving the directions the inputs use in W.
    case kpm
}

extension LoRAAdapter {
    /// CorDA (PEFT's `init_lora_weights="corda"`): from the covariance C `[d_in, d_in]` of the layer's
    /// inputs (as `preprocess_corda` averages it), damped by `mean(diag C)·damp` (0.01, doubled until
    /// its inverse passes PEFT's check `‖C'·C'⁻¹ − I‖ < 0.05`), the SVD `W·C' = U·S·Vᵀ` gives
    /// `A = √(S_r/s)·V_rᵀ·C'⁻¹`, `B = U_r·√(S_r/s)` of the r largest (ipm) or smallest (kpm) triplets,
    /// and W keeps the residual `W − s·B·A`, as PiSSA's. In f64 (PEFT's runs in f32).
    public static func corda(weight: Tensor, config: LoRAConfig, covariance: [Double], method: CorDAMethod) throws -> LoRAAdapter {
        let (dOut, dIn, r) = try splitShape(weight, config, "CorDA")
        guard covariance.count == dIn * dIn, covariance.allSatisfy(\.isFinite) else {
            throw LowRankError(.numerical, "CorDA needs a finite [\(dIn), \(dIn)] covariance of the layer's inputs, got \(covariance.count) values")
        }
        let meanDiagonal = (0..<dIn).reduce(0) { $0 + covariance[$1 * dIn + $1] } / Double(dIn)
        var damp = 0.01
        var (damped, inverse) = ([Double](), [Double]())
        while true {
            damped = covariance
            for i in 0..<dIn { damped[i * dIn + i] += meanDiagonal * damp }
            inverse = try Self.inverse(damped, dIn)
            var product = [Double](repeating: 0, count: dIn * dIn)
            OpenBLASThreads.allCores {
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(dIn), Int32(dIn), Int32(dIn), 1, damped, Int32(dIn), inverse, Int32(dIn), 0, &product, Int32(dIn))
            }
            let error = (0..<dIn * dIn).reduce(0) { e, i in
                let d = product[i] - (i / dIn == i % dIn ? 1 : 0)
                return e + d * d
            }.squareRoot()
            if error < 0.05 { break }
            damp *= 2
            guard damp.isFinite, meanDiagonal > 0 else { throw LowRankError(.numerical, "CorDA's damped covariance does not invert (mean diagonal \(meanDiagonal))") }
        }
        let w = try weight.floats().map(Double.init)
        var wc = [Double](repeating: 0, count: dOut * dIn)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(dOut), Int32(dIn), Int32(dIn), 1, w, Int32(dIn), damped, Int32(dIn), 0, &wc, Int32(dIn))
        let svd = try SingularValueDecomposition(wc, rows: dOut, columns: dIn)
        var vInverse = [Double](repeating: 0, count: svd.k * dIn)  // rows of Vᵀ·C'⁻¹
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(svd.k), Int32(dIn), Int32(dIn), 1, svd.vt, Int32(dIn), inverse, Int32(dIn), 0, &vInverse, Int32(dIn))
        let chosen = method == .ipm ? Array(0..<r) : Array((svd.k - r)..<svd.k)
        let root = chosen.map { (svd.s[$0] / Double(config.scale)).squareRoot() }
        let a = (0..<r * dIn).map { root[$0 / dIn] * vInverse[chosen[$0 / dIn] * dIn + $0 % dIn] }
        let b = (0..<dOut * r).map { svd.u[($0 / r) * svd.k + chosen[$0 % r]] * root[$0 % r] }
        return try split(weight, w, config: config, a: a, b: b)
    }

    /// The inverse of the `[n, n]` matrix `m`, by LU with partial pivoting.
    private static func inverse(_ m: [Double], _ n: Int) throws -> [Double] {
        // LAPACK is column-major: it solves Mᵀ·X = I, so X is (M⁻¹)ᵀ column-major = M⁻¹ row-major.
        var (a, x) = (m, (0..<n * n).map { $0 / n == $0 % n ? 1.0 : 0 })
        var (size, pivots, info) = (Int32(n), [Int32](repeating: 0, count: n), Int32(0))
        var (lda, ldb, rhs) = (size, size, size)
        OpenBLASThreads.allCores { dgesv_(&size, &rhs, &a, &lda, &pivots, &x, &ldb, &info) }
        guard info == 0 else { throw LowRankError(.numerical, "CorDA's damped covariance is singular (dgesv info \(info))") }
        return x
    }
}
