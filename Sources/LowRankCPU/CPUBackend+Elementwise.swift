import LowRankCore

extension CPUBackend {
    func elementwise(_ inputs: [Tensor], _ out: Tensor, _ f: @escaping (Float, Float) -> Float) throws {
        withFloats(inputs[0]) { a in
            withFloats(inputs[1]) { b in
                producing(out) { c in
                    parallelFor(out.shape.count) { r in
                        for i in r { c[i] = f(a[i], b[i]) }
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

    func cast(_ input: Tensor, _ out: Tensor) throws {
        withFloats(input) { a in
            let destination = pointer(out)
            parallelFor(out.shape.count) { r in
                convertFromFloat(a + r.lowerBound, count: r.count, dtype: out.dtype,
                                 into: destination + r.lowerBound * out.dtype.byteSize)
            }
        }
    }
}
