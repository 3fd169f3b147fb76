import LowRank
import LowRankBench

extension BenchContext {
    /// One AdamW step over the adapter parameters of the layer (A and B, r·(d_in + d_out) values),
    /// the fused in-place kernel: one pass over the parameter, its gradient and both moments.
    func optimizerSuite() throws -> [BenchRecord] {
        let count = shape.r * (shape.dIn + shape.dOut)
        let values = { (seed: UInt32, scale: Float) in Self.values(count, seed: seed, scale: scale) }
        let param = try Tensor(values(7, 0.05), shape: [count], dtype: dtype, on: backend)
        let grad = try Tensor(values(8, 1), shape: [count], dtype: dtype, on: backend)
        let m = try Tensor(values(9, 0.1), shape: [count], on: backend)
        let v = try Tensor(values(10, 0.1).map(abs), shape: [count], on: backend)
        let options = AdamWOptions(learningRate: 1e-4, step: 10)
        let e = Double(dtype.byteSize), n = Double(count)
        // Compulsory traffic: param read and written, grad read, both f32 moments read and written.
        let bytes = n * (3 * e + 16)
        return try measure("optimizer", [
            ("adamw", "fused, in place", 14 * n, bytes, {
                try Ops.adamW(param: param, grad: grad, m: m, v: v, options: options)
                return [param, m, v]
            }),
        ])
    }
}
