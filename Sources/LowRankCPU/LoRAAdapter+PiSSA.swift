import COpenBLAS
import LowRankCore

extension LoRAAdapter {
    /// PiSSA (PEFT's `init_lora_weights="pissa"`): the adapter starts as the top-r singular
    /// triplets of W and W keeps the residual, so the layer's output is unchanged at step 0:
    /// `B = U_r·√(S_r/s)`, `A = √(S_r/s)·V_rᵀ`, `W ← W − s·B·A`. The SVD runs in float64 on the
    /// CPU (once, at initialisation); W is overwritten on its own backend, in its own dtype, and
    /// the factors are f32 on that backend.
    public static func pissa(weight: Tensor, config: LoRAConfig) throws -> LoRAAdapter {
        guard weight.shape.rank == 2 else { throw LowRankError(.shapeMismatch, "PiSSA needs a [d_out, d_in] weight, got \(weight.shape)") }
        let (dOut, dIn, r) = (weight.shape[0], weight.shape[1], config.rank)
        guard r >= 1, r <= min(dOut, dIn) else {
            throw LowRankError(.invalidArgument, "PiSSA's rank must be in 1...min(d_out, d_in) = \(min(dOut, dIn)), got \(r)")
        }
        let w = try weight.floats().map(Double.init)
        let svd = try SingularValueDecomposition(w, rows: dOut, columns: dIn)
        let s = Double(config.scale)
        let root = svd.s.prefix(r).map { ($0 / s).squareRoot() }
        let b = (0..<dOut * r).map { Float(svd.u[($0 / r) * svd.k + $0 % r] * root[$0 % r]) }
        let a = (0..<r * dIn).map { Float(root[$0 / dIn] * svd.vt[$0]) }
        // residual = W − U_r·diag(S_r)·V_rᵀ
        var residual = w
        let scaledU = (0..<dOut * svd.k).map { svd.u[$0] * svd.s[$0 % svd.k] }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(dOut), Int32(dIn), Int32(r),
                    -1, scaledU, Int32(svd.k), svd.vt, Int32(dIn), 1, &residual, Int32(dIn))
        try weight.assign(residual.map(Float.init))
        return try LoRAAdapter(config: config, a: try Tensor(a, shape: [r, dIn], on: weight.backend),
                               b: try Tensor(b, shape: [dOut, r], on: weight.backend))
    }
}
