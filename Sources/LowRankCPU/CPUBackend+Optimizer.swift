import LowRankCore

extension CPUBackend {
    /// AdamW in place, element by element in PyTorch's order (`Shaders/adamw.comp` is the twin):
    /// decay θ, lerp m toward g, v·β₂ + (1 − β₂)·g·g, then θ + (−step)·m / (√v / √(1 − β₂ᵗ) + ε),
    /// each product and quotient rounded in the order PyTorch's CPU kernels round them.
    func adamW(_ o: AdamWOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let c = o.stepScalars
        let (decay, oneMinusBeta1, beta2, oneMinusBeta2, bias2Root, epsilon, negativeStep) = (c.decay, c.oneMinusBeta1, c.beta2, c.oneMinusBeta2, c.bias2Root, c.epsilon, c.negativeStep)
        let m = pointer(outputs[1]).assumingMemoryBound(to: Float.self), v = pointer(outputs[2]).assumingMemoryBound(to: Float.self)
        withFloats(inputs[1]) { g in
            producing(outputs[0], preserving: true) { p in
                parallelFor(outputs[0].shape.count) { range in
                    for i in range {
                        let gi = g[i]
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
