import Glibc
import LowRankCore

extension CPUBackend {
    /// y = f(x) (`Shaders/activation.comp` is the twin).
    func activation(_ f: Activation, _ x: Tensor, _ out: Tensor) throws {
        let function = Self.function(f)
        withFloats(x) { a in
            producing(out) { c in
                parallelFor(out.shape.count, minimumPerThread: 1 << 12) { r in
                    for i in r { c[i] = function(a[i]) }
                }
            }
        }
    }

    /// dx = G ⊙ f′(x).
    func activationBackward(_ f: Activation, _ x: Tensor, _ g: Tensor, _ out: Tensor) throws {
        let derivative = Self.derivative(f)
        withFloats(x) { a in
            withFloats(g) { gv in
                producing(out) { c in
                    parallelFor(out.shape.count, minimumPerThread: 1 << 12) { r in
                        for i in r { c[i] = gv[i] * derivative(a[i]) }
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
                    parallelFor(out.shape.count, minimumPerThread: 1 << 12) { r in
                        for i in r { c[i] = function(a[i]) * u[i] }
                    }
                }
            }
        }
    }

    /// d gate = (G ⊙ up) ⊙ f′(gate) and d up = G ⊙ f(gate), in the unfused ops' order of rounding.
    func gatedActivationBackward(_ f: Activation, gate: Tensor, up: Tensor, _ g: Tensor, _ dGate: Tensor, _ dUp: Tensor) throws {
        let (function, derivative) = (Self.function(f), Self.derivative(f))
        withFloats(gate) { a in
            withFloats(up) { u in
                withFloats(g) { gv in
                    producing(dGate) { dg in
                        producing(dUp) { du in
                            parallelFor(dGate.shape.count, minimumPerThread: 1 << 12) { r in
                                for i in r {
                                    dg[i] = gv[i] * u[i] * derivative(a[i])
                                    du[i] = gv[i] * function(a[i])
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    private static let sqrtHalf: Float = 0.70710678118654752
    private static let inverseSqrt2Pi: Float = 0.39894228040143268
    private static let sqrt2OverPi: Float = 0.79788456080286536
    private static let geluCubic: Float = 0.044715

    private static func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

    static func function(_ f: Activation) -> @Sendable (Float) -> Float {
        switch f {
        case .silu: { x in x * sigmoid(x) }
        case .gelu: { x in 0.5 * x * (1 + erff(x * sqrtHalf)) }
        case .geluTanh: { x in 0.5 * x * (1 + tanhf(sqrt2OverPi * (x + geluCubic * x * x * x))) }
        }
    }

    static func derivative(_ f: Activation) -> @Sendable (Float) -> Float {
        switch f {
        case .silu:
            { x in let s = sigmoid(x); return s * (1 + x * (1 - s)) }
        case .gelu:
            { x in 0.5 * (1 + erff(x * sqrtHalf)) + x * inverseSqrt2Pi * expf(-0.5 * x * x) }
        case .geluTanh:
            { x in
                let t = tanhf(sqrt2OverPi * (x + geluCubic * x * x * x))
                return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * sqrt2OverPi * (1 + 3 * geluCubic * x * x)
            }
        }
    }
}
