import LowRankCore

extension CPUBackend {
    /// `y = w ⊙ x·rstd`, `rstd = 1/√(mean(x²) + ε)` per row, in f32 (`Shaders/rms_norm.comp` is the twin).
    func rmsNorm(_ epsilon: Float, _ x: Tensor, _ weight: Tensor, _ outputs: [Tensor]) throws {
        let (rows, d) = (x.shape.rows, x.shape.columns)
        let rstd = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        withFloats(x) { xv in
            withFloats(weight) { w in
                producing(outputs[0]) { y in
                    parallelFor(rows, minimumPerThread: Swift.max(1, (1 << 14) / Swift.max(d, 1))) { r in
                        for row in r {
                            let base = row * d
                            var sum: Float = 0
                            for c in 0..<d { sum += xv[base + c] * xv[base + c] }
                            let s = 1 / (sum / Float(d) + epsilon).squareRoot()
                            rstd[row] = s
                            for c in 0..<d { y[base + c] = w[c] * (xv[base + c] * s) }
                        }
                    }
                }
            }
        }
    }

    /// dx = rstd·(G⊙w) − x·rstd³·Σ(G⊙w⊙x)/d [+ R] per row; d weight, when asked for, = Σ_rows G⊙x·rstd,
    /// rows in order.
    func rmsNormBackward(_ operands: RMSNormBackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (g, x, weight) = (operands.gradient, operands.x, operands.weight)
        let (rows, d) = (x.shape.rows, x.shape.columns)
        let rstd = pointer(operands.rstd).assumingMemoryBound(to: Float.self)
        withFloats(g) { gv in
            withFloats(x) { xv in
                withFloats(weight) { w in
                    producing(outputs[0]) { dx in
                        parallelFor(rows, minimumPerThread: Swift.max(1, (1 << 14) / Swift.max(d, 1))) { r in
                            for row in r {
                                let base = row * d, s = rstd[row]
                                var dot: Float = 0
                                for c in 0..<d { dot += gv[base + c] * w[c] * xv[base + c] }
                                let k = s * s * s * dot / Float(d)
                                for c in 0..<d { dx[base + c] = s * gv[base + c] * w[c] - xv[base + c] * k }
                            }
                        }
                    }
                    guard outputs.count > 1 else { return }
                    let dWeight = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
                    parallelFor(d, minimumPerThread: 64) { columns in
                        for c in columns {
                            var sum: Float = 0
                            for row in 0..<rows { sum += gv[row * d + c] * xv[row * d + c] * rstd[row] }
                            dWeight[c] = sum
                        }
                    }
                }
            }
        }
        // R added onto dx in dx's dtype, as `add` would add the two.
        if let residual = operands.residualGradient { try elementwise([outputs[0], residual], outputs[0], +) }
    }
}
