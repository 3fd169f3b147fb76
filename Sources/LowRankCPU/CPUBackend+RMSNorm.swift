import LowRankCore

extension CPUBackend {
    /// `y = w ⊙ x·rstd`, `rstd = 1/√(mean(x²) + ε)` per row, in f32 (`Shaders/rms_norm.comp` is the twin).
    func rmsNorm(_ epsilon: Float, _ x: Tensor, _ weight: Tensor, _ outputs: [Tensor]) throws {
        let (rows, d) = (x.shape.rows, x.shape.columns)
        let rstd = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        withFloats(x) { xv in
            withFloats(weight) { w in
                producing(outputs[0]) { y in
                    parallelForRows(rows, columns: d) { r in
                        for row in r {
                            let (x, out) = (xv + row * d, y + row * d)
                            let s = 1 / (sumOfSquares(x, count: d) / Float(d) + epsilon).squareRoot()
                            rstd[row] = s
                            mapVectors(0..<d, w, x, into: out) { w, x in w * (x * s) }
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
                        parallelForRows(rows, columns: d) { r in
                            for row in r {
                                let (g, x, out, s) = (gv + row * d, xv + row * d, dx + row * d, rstd[row])
                                var dot = FloatVector(repeating: 0)
                                forEachVector(0..<d) { c, n in dot += FloatVector(g + c, count: n) * FloatVector(w + c, count: n) * FloatVector(x + c, count: n) }
                                let k = s * s * s * dot.sum() / Float(d)
                                forEachVector(0..<d) { c, n in
                                    (s * FloatVector(g + c, count: n) * FloatVector(w + c, count: n) - FloatVector(x + c, count: n) * k).store(to: out + c, count: n)
                                }
                            }
                        }
                    }
                    guard outputs.count > 1 else { return }
                    let dWeight = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
                    // 16 columns at a time, each summed over the rows in order.
                    parallelFor((d + 15) / 16, minimumPerThread: 4) { vectors in
                        forEachVector(vectors.lowerBound * 16..<Swift.min(d, vectors.upperBound * 16)) { c, n in
                            var sum = FloatVector(repeating: 0)
                            for row in 0..<rows { sum += FloatVector(gv + row * d + c, count: n) * FloatVector(xv + row * d + c, count: n) * rstd[row] }
                            sum.store(to: dWeight + c, count: n)
                        }
                    }
                }
            }
        }
        // R added onto dx in dx's dtype, as `add` would add the two.
        if let residual = operands.residualGradient { try elementwise([outputs[0], residual], outputs[0], +) }
    }
}
