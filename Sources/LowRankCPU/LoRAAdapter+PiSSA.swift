import COpenBLAS
import LowRankCore

extension LoRAAdapter {
    /// PiSSA (PEFT's `init_lora_weights="pissa"`, or `"pissa_niter_N"` with `iterations` N): the
    /// adapter starts as the top-r singular triplets of W and W keeps the residual, so the layer's
    /// output is unchanged at step 0: `B = U_r·√(S_r/s)`, `A = √(S_r/s)·V_rᵀ`, `W ← W − s·B·A`.
    /// The SVD is exact, or with `iterations` PyTorch's randomized `svd_lowrank` (seeded by `seed`).
    public static func pissa(weight: Tensor, config: LoRAConfig, iterations: Int? = nil, seed: UInt64 = 0) throws -> LoRAAdapter {
        let (dOut, dIn, r) = try splitShape(weight, config, "PiSSA")
        let w = try weight.floats().map(Double.init)
        let svd = try iterations.map { try SingularValueDecomposition(randomized: w, rows: dOut, columns: dIn, rank: r, iterations: $0, seed: seed) }
            ?? SingularValueDecomposition(w, rows: dOut, columns: dIn)
        let root = svd.s.prefix(r).map { ($0 / Double(config.scale)).squareRoot() }
        let b = (0..<dOut * r).map { svd.u[($0 / r) * svd.k + $0 % r] * root[$0 % r] }
        let a = (0..<r * dIn).map { root[$0 / dIn] * svd.vt[$0] }
        return try split(weight, w, config: config, a: a, b: b)
    }

    /// OLoRA (PEFT's `init_lora_weights="olora"`): from the QR decomposition of W, `B = Q[:, :r]`,
    /// `A = R[:r]`, and W keeps the residual `W − s·B·A`.
    public static func olora(weight: Tensor, config: LoRAConfig) throws -> LoRAAdapter {
        let (dOut, dIn, r) = try splitShape(weight, config, "OLoRA")
        let w = try weight.floats().map(Double.init)
        let qr = try QRDecomposition(w, rows: dOut, columns: dIn)
        let b = (0..<dOut * r).map { qr.q[($0 / r) * qr.k + $0 % r] }
        return try split(weight, w, config: config, a: Array(qr.r.prefix(r * dIn)), b: b)
    }

    static func splitShape(_ weight: Tensor, _ config: LoRAConfig, _ method: String) throws -> (Int, Int, Int) {
        guard weight.shape.rank == 2 else { throw LowRankError(.shapeMismatch, "\(method) needs a [d_out, d_in] weight, got \(weight.shape)") }
        let (dOut, dIn, r) = (weight.shape[0], weight.shape[1], config.rank)
        guard r >= 1, r <= min(dOut, dIn) else {
            throw LowRankError(.invalidArgument, "\(method)'s rank must be in 1...min(d_out, d_in) = \(min(dOut, dIn)), got \(r)")
        }
        return (dOut, dIn, r)
    }

    /// The adapter with factors `a` `[r, d_in]` and `b` `[d_out, r]` (rounded to f32, as PEFT holds
    /// them), W overwritten on its own backend, in its own dtype, by `W − s·B·A` from those factors.
    static func split(_ weight: Tensor, _ w: [Double], config: LoRAConfig, a: [Double], b: [Double]) throws -> LoRAAdapter {
        let (dOut, dIn, r) = (weight.shape[0], weight.shape[1], config.rank)
        let (a32, b32) = (a.map(Float.init), b.map(Float.init))
        var residual = w
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(dOut), Int32(dIn), Int32(r),
                    -Double(config.scale), b32.map(Double.init), Int32(r), a32.map(Double.init), Int32(dIn), 1, &residual, Int32(dIn))
        try weight.assign(residual.map(Float.init))
        return try LoRAAdapter(config: config, a: try Tensor(a32, shape: [r, dIn], on: weight.backend),
                               b: try Tensor(b32, shape: [dOut, r], on: weight.backend))
    }
}
