import LowRankCore

extension CPUBackend {
    func elementwise(_ inputs: [Tensor], _ out: Tensor, _ f: @escaping (Float, Float) -> Float) throws {
        let period = Swift.max(inputs[1].shape.count, 1)
        withFloats(inputs[0]) { a in
            withFloats(inputs[1]) { b in
                producing(out) { c in
                    parallelFor(out.shape.count) { r in
                        if period == out.shape.count {
                            for i in r { c[i] = f(a[i], b[i]) }
                        } else {
                            for i in r { c[i] = f(a[i], b[i % period]) }
                        }
                    }
                }
            }
        }
    }

    func scale(_ input: Tensor, _ factor: Float, _ out: Tensor) throws {
        withFloats(input) { a in
            producing(out) { c in
                parallelFor(out.shape.count) { r in
                    for i in r { c[i] = a[i] * factor }
                }
            }
        }
    }

    /// Also right in place (out the same tensor as input): each element is read before it is written.
    func scaleRows(_ input: Tensor, _ factors: Tensor, _ out: Tensor) throws {
        let columns = Swift.max(input.shape.columns, 1)
        withFloats(input) { a in
            withFloats(factors) { f in
                producing(out) { c in
                    parallelFor(out.shape.count) { r in
                        for i in r { c[i] = a[i] * f[i / columns] }
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
