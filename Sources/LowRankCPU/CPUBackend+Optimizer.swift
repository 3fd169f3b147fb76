import LowRankCore

extension CPUBackend {
    /// One tensor's AdamW step: the multi-tensor op's update without clipping.
    func adamW(_ o: AdamWOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        adamWUpdate(o.stepScalars, gradient: inputs[1], parameter: outputs[0], m: outputs[1], v: outputs[2], clip: nil)
    }

    /// Every tensor's AdamW step (`Shaders/adamw.comp` is the twin). With clipping, the coefficient is
    /// formed as the per-tensor ops form it: each gradient's `row_sum_of_squares` as one row, the sums
    /// added in tensor order, `clip_coefficient`; each gradient is scaled by it as `scale_rows` scales.
    /// Guarded, a non-finite loss zeroes the health flag, and a zero flag skips the step.
    func multiTensorAdamW(_ o: MultiTensorAdamWOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let operands = MultiTensorAdamWOperands(inputs), n = operands.count
        if o.guarded {
            let loss = pointer(inputs[4 * n]).assumingMemoryBound(to: Float.self)[0]
            let health = pointer(outputs[3 * n]).assumingMemoryBound(to: Float.self)
            if !loss.isFinite { health[0] = 0 }
            if health[0] == 0 { return }
        }
        let clip = try o.maxGradientNorm.map { maxNorm in
            let sums = try operands.gradients.map { g in
                var s: Float = 0
                rowSumsOfSquares(try g.reshaped([1, g.shape.count]), into: &s, root: false)
                return s
            }
            return Self.clipCoefficient(sumOfSquares: sums.dropFirst().reduce(sums[0], +), maxNorm: maxNorm)
        }
        for i in 0..<n {
            adamWUpdate(o.options(i).stepScalars, gradient: operands.gradients[i], parameter: outputs[i], m: outputs[n + i], v: outputs[2 * n + i], clip: clip)
        }
    }

    /// AdamW in place, element by element in PyTorch's order: decay θ, lerp m toward g, v·β₂ + (1 − β₂)·g·g,
    /// then θ + (−step)·m / (√v / √(1 − β₂ᵗ) + ε), each product and quotient rounded in the order
    /// PyTorch's CPU kernels round them; g is first multiplied by `clip` when given.
    private func adamWUpdate(_ c: AdamWStepScalars, gradient: Tensor, parameter: Tensor, m: Tensor, v: Tensor, clip: Float?) {
        let (decay, oneMinusBeta1, beta2, oneMinusBeta2, bias2Root, epsilon, negativeStep) = (c.decay, c.oneMinusBeta1, c.beta2, c.oneMinusBeta2, c.bias2Root, c.epsilon, c.negativeStep)
        let m = pointer(m).assumingMemoryBound(to: Float.self), v = pointer(v).assumingMemoryBound(to: Float.self)
        withFloats(gradient) { g in
            producing(parameter, preserving: true) { p in
                parallelFor(parameter.shape.count) { range in
                    for i in range {
                        let gi = clip.map { g[i] * $0 } ?? g[i]
                        let mi = m[i] + oneMinusBeta1 * (gi - m[i])
                        let vi = v[i] * beta2 + oneMinusBeta2 * gi * gi
                        let denominator = vi.squareRoot() / bias2Root + epsilon
                        p[i] = p[i] * decay + negativeStep * mi / denominator
                        m[i] = mi
                        v[i] = vi
                    }
                }
            }
        }
    }
}
