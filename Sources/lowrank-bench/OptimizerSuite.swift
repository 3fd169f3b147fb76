import LowRank
import LowRankBench

extension BenchContext {
    /// One AdamW step over the adapter parameters of the layer (A and B, r·(d_in + d_out) values),
    /// the fused in-place kernel: one pass over the parameter, its gradient and both moments; then
    /// a whole adapter's step with clipping, A and B of the layer for 32 layers: the multi-tensor
    /// op against the per-tensor ops it replaced (each gradient's sum of squares, a chain of adds,
    /// the clip coefficient, a scaled copy of each gradient, AdamW tensor by tensor).
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
        let shapes = (0..<32).flatMap { _ -> [Shape] in [[shape.r, shape.dIn], [shape.dOut, shape.r]] }
        let tensors = { (seed: UInt32, scale: Float) in
            try shapes.map { try Tensor(Self.values($0.count, seed: seed, scale: scale), shape: $0, on: backend) }
        }
        let (params, grads, firstMoments) = (try tensors(11, 0.05), try tensors(12, 1), try tensors(13, 0.1))
        let secondMoments = try shapes.map { try Tensor(Self.values($0.count, seed: 14, scale: 0.1).map(abs), shape: $0, on: backend) }
        let all = MultiTensorAdamWOptions(adamW: options, learningRateFactors: shapes.map { _ in 1 }, maxGradientNorm: 1)
        // Per value: param read and written, grad read twice (its sum of squares, then the step), both moments read and written.
        let adapter = 32 * n, adapterBytes = adapter * 32
        return try measure("optimizer", [
            ("adamw", "fused, in place", 14 * n, bytes, {
                try Ops.adamW(param: param, grad: grad, m: m, v: v, options: options)
                return [param, m, v]
            }),
            ("multi_tensor_adamw", "64 tensors, clipped, one op", 16 * adapter, adapterBytes, {
                try Ops.multiTensorAdamW(params: params, grads: grads, m: firstMoments, v: secondMoments, options: all)
                return params
            }),
            ("multi_tensor_adamw", "64 tensors, clipped, per-tensor ops", 16 * adapter, adapterBytes, {
                let flat = try grads.map { try $0.reshaped([1, $0.shape.count]) }
                let squares = try flat.map { try Ops.rowSumOfSquares($0) }
                let total = try squares.dropFirst().reduce(squares[0]) { try Ops.add($0, $1) }
                let factor = try Ops.execute(.clipCoefficient(maxNorm: 1), [total])[0]
                for i in shapes.indices {
                    let clipped = try Ops.scaleRows(flat[i], by: factor).reshaped(shapes[i])
                    try Ops.adamW(param: params[i], grad: clipped, m: firstMoments[i], v: secondMoments[i], options: options)
                }
                return params
            }),
        ])
    }
}
