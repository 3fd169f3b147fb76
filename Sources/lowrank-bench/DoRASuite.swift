import LowRank
import LowRankBench

extension BenchContext {
    /// DoRA's kernels: the factored norm against the dense one PEFT computes (`B·A` materialised),
    /// and DoRA forward and forward+backward beside our LoRA at the same shape (DoRA's floor is
    /// LoRA's work plus the `W·Aᵀ` product of its norm).
    func doraSuite() throws -> [BenchRecord] {
        let (t, dIn, dOut, r) = (shape.t, shape.dIn, shape.dOut, shape.r)
        let (x, w, bias, a, b, g) = try layer()
        let scale: Float = 2
        let wsq = try Ops.rowSumOfSquares(w)
        let m = try Ops.rowL2Norm(w)
        let dora = DoRAOptions(lora: LoRAOptions(scale: scale, hasBias: true))
        let lora = LoRAOptions(scale: scale, hasBias: true)
        let e = Double(dtype.byteSize)

        let normFlops = 2.0 * Double(dOut * dIn * r + r * r * dIn + dOut * r * r)
        let denseNormFlops = 2.0 * Double(dOut * dIn * r) + 3.0 * Double(dOut * dIn)
        let loraForwardFlops = 2.0 * Double(t * dIn * dOut + t * dIn * r + t * r * dOut)
        let loraBackwardFlops = 2.0 * Double(2 * t * dOut * r + t * r * dIn + t * dOut * dIn + t * r * dIn)
        let forwardBytes = e * Double(t * dIn + dOut * dIn + dOut + r * dIn + dOut * r + t * dOut) + 4 * Double(t * r + t * dOut)
        let backwardBytes = e * Double(t * dOut + t * dIn + dOut * dIn + r * dIn + dOut * r + t * dIn) + 4 * Double(t * r + r * dIn + dOut * r + t * dOut)

        // The compose on [T, d_out]: fused is one pass; unfused is PEFT's eager sequence
        // `base + ((g − 1)⊙base + (g·s)⊙lora)`, four passes and three temporaries.
        let base = try Ops.matmul(x, w, transposeB: true), loraTerm = try Ops.matmul(x, w, transposeB: true, alpha: 0.01)
        let normG = try Ops.doraNorm(weight: w, a: a, b: b, magnitude: m, weightNormSquared: wsq, scale: scale).g
        let gMinusOne = try Tensor(try normG.floats().map { $0 - 1 }, shape: [dOut], on: backend)
        let gScaled = try Ops.scale(normG, by: scale)
        let composeBytes = { (passes: Double) in passes * e * Double(t * dOut) }

        let cases: [BenchCase] = [
            ("compose", "fused", 4 * Double(t * dOut), composeBytes(3), {
                [try Ops.doraCompose(base: base, lora: loraTerm, g: normG, scale: scale)]
            }),
            ("compose", "unfused (PEFT's sequence)", 4 * Double(t * dOut), composeBytes(10), {
                let term = try Ops.add(try Ops.mul(base, gMinusOne), try Ops.mul(loraTerm, gScaled))
                return [try Ops.add(base, term)]
            }),
            ("norm", "factored", normFlops, e * Double(dOut * dIn + r * dIn + dOut * r) + 16 * Double(dOut), {
                let (norm, factor) = try Ops.doraNorm(weight: w, a: a, b: b, magnitude: m, weightNormSquared: wsq, scale: scale)
                return [norm, factor]
            }),
            ("norm", "dense B·A (PEFT)", denseNormFlops, e * Double(3 * dOut * dIn + r * dIn + dOut * r) + 4 * Double(dOut), {
                [try Ops.rowL2Norm(try Ops.add(w, try Ops.matmul(b, a, alpha: scale)))]
            }),
            ("forward", "fused", loraForwardFlops + normFlops, forwardBytes, {
                [try Ops.doraForward(x: x, weight: w, bias: bias, a: a, b: b, magnitude: m, weightNormSquared: wsq, options: dora).y]
            }),
            ("forward", "unfused (PEFT's sequence)", loraForwardFlops + denseNormFlops, forwardBytes, {
                // PEFT's DoRA forward: the dense norm through B·A, then separate products and the eager compose.
                let n = try Ops.rowL2Norm(try Ops.add(w, try Ops.matmul(b, a, alpha: scale)))
                let factors = zip(try m.floats(), try n.floats()).map { $0 / max($1, DoRAOptions.normEpsilon) }
                let factor = try Tensor(factors, shape: [dOut], on: backend)
                let factorMinusOne = try Tensor(factors.map { $0 - 1 }, shape: [dOut], on: backend)
                let base = try Ops.matmul(x, w, transposeB: true)
                let lora = try Ops.matmul(try Ops.matmul(x, a, transposeB: true), b, transposeB: true)
                let term = try Ops.add(try Ops.mul(base, factorMinusOne), try Ops.mul(lora, try Ops.scale(factor, by: scale)))
                return [try Ops.add(try Ops.add(base, term), bias)]
            }),
            ("forward", "lora fused (reference)", loraForwardFlops, forwardBytes, {
                [try Ops.loraForward(x: x, weight: w, bias: bias, a: a, b: b, options: lora).y]
            }),
            ("forward+backward", "fused", loraForwardFlops + normFlops + loraBackwardFlops, forwardBytes + backwardBytes, {
                let f = try Ops.doraForward(x: x, weight: w, bias: bias, a: a, b: b, magnitude: m, weightNormSquared: wsq, options: dora)
                let (dx, dA, dB, dm) = try Ops.doraBackward(gradOutput: g, x: x, weight: w, a: a, b: b, forward: f, options: dora)
                return [f.y, dx, dA, dB] + (dm.map { [$0] } ?? [])
            }),
            ("forward+backward", "lora fused (reference)", loraForwardFlops + loraBackwardFlops, forwardBytes + backwardBytes, {
                let (y, u) = try Ops.loraForward(x: x, weight: w, bias: bias, a: a, b: b, options: lora)
                let (dx, dA, dB) = try Ops.loraBackward(gradOutput: g, x: x, weight: w, a: a, b: b, u: u, options: lora)
                return [y, dx, dA, dB]
            }),
        ]
        return try measure("dora", cases)
    }
}
