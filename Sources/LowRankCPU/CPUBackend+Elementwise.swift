import LowRankCore

extension CPUBackend {
    /// `out = f(a, b)`, b broadcast over a's leading dimensions when it is shorter.
    func elementwise(_ inputs: [Tensor], _ out: Tensor, _ f: (FloatVector, FloatVector) -> FloatVector) throws {
        let period = Swift.max(inputs[1].shape.count, 1)
        withFloats(inputs[0]) { a in
            withFloats(inputs[1]) { b in
                producing(out) { c in
                    parallelFor(out.shape.count) { r in
                        // One run per stretch that b covers once: a whole range when nothing is broadcast.
                        var i = r.lowerBound
                        while i < r.upperBound {
                            let j = i % period, n = Swift.min(period - j, r.upperBound - i)
                            mapVectors(0..<n, a + i, b + j, into: c + i, f)
                            i += n
                        }
                    }
                }
            }
        }
    }

    func scale(_ input: Tensor, _ factor: Float, _ out: Tensor) throws {
        withFloats(input) { a in
            producing(out) { c in
                parallelFor(out.shape.count) { r in mapVectors(r, a, into: c) { $0 * factor } }
            }
        }
    }

    /// Also right in place (out the same tensor as input): each element is read before it is written.
    func scaleRows(_ input: Tensor, _ factors: Tensor, _ out: Tensor) throws {
        let columns = Swift.max(input.shape.columns, 1)
        withFloats(input) { a in
            withFloats(factors) { f in
                producing(out) { c in
                    parallelForRows(input.shape.rows, columns: columns) { rows in
                        for row in rows {
                            let factor = f[row]
                            mapVectors(row * columns..<(row + 1) * columns, a, into: c) { $0 * factor }
                        }
                    }
                }
            }
        }
    }

    func cast(_ input: Tensor, _ out: Tensor) throws {
        if input.dtype.isQuantized || out.dtype.isQuantized { return try quantizedCast(input, out) }
        withFloats(input) { a in
            let destination = pointer(out)
            parallelFor(out.shape.count) { r in
                convertFromFloat(a + r.lowerBound, count: r.count, dtype: out.dtype,
                                 into: destination + r.lowerBound * out.dtype.byteSize)
            }
        }
    }

    /// `min(1, maxNorm / (√Σ + 1e-6))`, as `torch.nn.utils.clip_grad_norm_` forms it.
    func clipCoefficient(_ sumOfSquares: Tensor, _ maxNorm: Float, _ out: Tensor) throws {
        let s = pointer(sumOfSquares).assumingMemoryBound(to: Float.self)[0]
        pointer(out).assumingMemoryBound(to: Float.self)[0] = Self.clipCoefficient(sumOfSquares: s, maxNorm: maxNorm)
    }

    static func clipCoefficient(sumOfSquares s: Float, maxNorm: Float) -> Float { Swift.min(1, maxNorm / (s.squareRoot() + 1e-6)) }
}
