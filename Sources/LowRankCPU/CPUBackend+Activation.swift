import CBFloat16GEMM
import Glibc
import LowRankCore

extension CPUBackend {
    /// y = f(x) (`Shaders/activation.comp` is the twin).
    func activation(_ f: Activation, _ x: Tensor, _ out: Tensor) throws {
        let function = Self.function(f)
        withFloats(x) { a in
            producing(out) { c in
                parallelFor(out.shape.count, minimumPerThread: Self.transcendentalGrain) { r in mapVectors(r, a, into: c, function) }
            }
        }
    }

    /// dx = G ⊙ f′(x).
    func activationBackward(_ f: Activation, _ x: Tensor, _ g: Tensor, _ out: Tensor) throws {
        let derivative = Self.derivative(f)
        withFloats(x) { a in
            withFloats(g) { gv in
                producing(out) { c in
                    parallelFor(out.shape.count, minimumPerThread: Self.transcendentalGrain) { r in
                        mapVectors(r, a, gv, into: c) { x, g in g * derivative(x) }
                    }
                }
            }
        }
    }

    /// y = f(gate) ⊙ up: the unfused activation then product, in one pass.
    func gatedActivation(_ f: Activation, gate: Tensor, up: Tensor, _ out: Tensor) throws {
        let function = Self.function(f)
        withFloats(gate) { a in
            withFloats(up) { u in
                producing(out) { c in
                    parallelFor(out.shape.count, minimumPerThread: Self.transcendentalGrain) { r in
                        if f == .silu {
                            Self.siluGated(r, a, u, into: c)
                        } else {
                            mapVectors(r, a, u, into: c) { gate, up in function(gate) * up }
                        }
                    }
                }
            }
        }
    }

    /// d gate = (G ⊙ up) ⊙ f′(gate) and d up = G ⊙ f(gate), in the unfused ops' order of rounding.
    /// Either output may be the memory of gate, up or G (a plan writes them in place,
    /// `Op.overwritableInputs`): each vector of all three is read before either is written.
    func gatedActivationBackward(_ f: Activation, gate: Tensor, up: Tensor, _ g: Tensor, _ dGate: Tensor, _ dUp: Tensor) throws {
        let (function, derivative) = (Self.function(f), Self.derivative(f))
        withFloats(gate) { a in
            withFloats(up) { u in
                withFloats(g) { gv in
                    producing(dGate) { dg in
                        producing(dUp) { du in
                            parallelFor(dGate.shape.count, minimumPerThread: Self.transcendentalGrain) { r in
                                if f == .silu { return Self.siluGatedBackward(r, gate: a, up: u, gv, dGate: dg, dUp: du) }
                                forEachVector(r) { i, n in
                                    let (x, up, g) = (FloatVector(a + i, count: n), FloatVector(u + i, count: n), FloatVector(gv + i, count: n))
                                    let (dGate, dUp) = (g * up * derivative(x), g * function(x))
                                    dGate.store(to: dg + i, count: n)
                                    dUp.store(to: du + i, count: n)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `silu(gate) ⊙ up` over `range`: the AVX-512 loop (`VectorMath.hasAVX512`), else (and for
    /// tests, `avx512` false) the Swift one, with SiLU written out so that it inlines. The same bits either way.
    static func siluGated(_ range: Range<Int>, _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                          avx512: Bool = VectorMath.hasAVX512) {
        if avx512 { return lowrank_silu_gated(range.count, gate + range.lowerBound, up + range.lowerBound, out + range.lowerBound) }
        mapVectors(range, gate, up, into: out) { gate, up in silu(gate) * up }
    }

    /// SiLU's `gatedActivationBackward` over `range`, f and f′ from one sigmoid (one exp where the
    /// two took two, the same bits); AVX-512 or Swift as `siluGated`.
    static func siluGatedBackward(_ range: Range<Int>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                  dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, avx512: Bool = VectorMath.hasAVX512) {
        let first = range.lowerBound
        if avx512 { return lowrank_silu_gated_backward(range.count, gate + first, up + first, g + first, dGate + first, dUp + first) }
        forEachVector(range) { i, n in
            let (x, up, g) = (FloatVector(gate + i, count: n), FloatVector(up + i, count: n), FloatVector(g + i, count: n))
            let s = VectorMath.sigmoid(x)
            (g * up * (s * (1 + x * (1 - s)))).store(to: dGate + i, count: n)
            (g * (x * s)).store(to: dUp + i, count: n)
        }
    }

    /// Elements per thread for a pass that evaluates a transcendental function per element.
    static let transcendentalGrain = 1 << 12

    private static let sqrtHalf: Float = 0.70710678118654752
    private static let inverseSqrt2Pi: Float = 0.39894228040143268
    private static let sqrt2OverPi: Float = 0.79788456080286536
    private static let geluCubic: Float = 0.044715

    /// f over 16 lanes: SiLU on `VectorMath.exp`, the GELUs lane by lane on libm's erf and tanh.
    static func function(_ f: Activation) -> @Sendable (FloatVector) -> FloatVector {
        switch f {
        case .silu: { x in silu(x) }
        case .gelu: lanes { x in 0.5 * x * (1 + erff(x * sqrtHalf)) }
        case .geluTanh: lanes { x in 0.5 * x * (1 + tanhf(sqrt2OverPi * (x + geluCubic * x * x * x))) }
        }
    }

    /// x·σ(x).
    @inline(__always)
    static func silu(_ x: FloatVector) -> FloatVector { x * VectorMath.sigmoid(x) }

    static func derivative(_ f: Activation) -> @Sendable (FloatVector) -> FloatVector {
        switch f {
        case .silu:
            { x in let s = VectorMath.sigmoid(x); return s * (1 + x * (1 - s)) }
        case .gelu:
            lanes { x in 0.5 * (1 + erff(x * sqrtHalf)) + x * inverseSqrt2Pi * expf(-0.5 * x * x) }
        case .geluTanh:
            lanes { x in
                let t = tanhf(sqrt2OverPi * (x + geluCubic * x * x * x))
                return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * sqrt2OverPi * (1 + 3 * geluCubic * x * x)
            }
        }
    }

    private static func lanes(_ f: @escaping @Sendable (Float) -> Float) -> @Sendable (FloatVector) -> FloatVector {
        { x in
            var y = x
            for lane in 0..<16 { y[lane] = f(x[lane]) }
            return y
        }
    }
}
