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
                        mapVectors(r, a, u, into: c) { gate, up in function(gate) * up }
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

    /// Elements per thread for a pass that evaluates a transcendental function per element.
    static let transcendentalGrain = 1 << 12

    private static let sqrtHalf: Float = 0.70710678118654752
    private static let inverseSqrt2Pi: Float = 0.39894228040143268
    private static let sqrt2OverPi: Float = 0.79788456080286536
    private static let geluCubic: Float = 0.044715

    /// f over 16 lanes: SiLU on `VectorMath.exp`, the GELUs lane by lane on libm's erf and tanh.
    static func function(_ f: Activation) -> @Sendable (FloatVector) -> FloatVector {
        switch f {
        case .silu: { x in x * VectorMath.sigmoid(x) }
        case .gelu: lanes { x in 0.5 * x * (1 + erff(x * sqrtHalf)) }
        case .geluTanh: lanes { x in 0.5 * x * (1 + tanhf(sqrt2OverPi * (x + geluCubic * x * x * x))) }
        }
    }

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
