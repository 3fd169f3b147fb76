import LowRank
import LowRankBench

extension BenchContext {
    /// Fused LoRA kernels against the same math as separate ops, and the base matmul alone.
    func loraSuite() throws -> [BenchRecord] {
        let (t, dIn, dOut) = (shape.t, shape.dIn, shape.dOut)
        let (x, w, bias, a, b, g) = try layer()
        let options = LoRAOptions(scale: 2, hasBias: true)
        let e = Double(dtype.byteSize)

        let (forwardFlops, backwardFlops, forwardBytes, backwardBytes) = Self.loraCost(shape, elementBytes: e)

        func unfusedForward() throws -> (Tensor, Tensor) {
            let base = try Ops.matmul(x, w, transposeB: true, bias: bias)
            let u = try Ops.matmul(x, a, transposeB: true, outputDType: .f32)
            let lora = try Ops.matmul(u, b, transposeB: true, alpha: options.scale, outputDType: dtype)
            return (try Ops.add(base, lora), u)
        }
        func unfusedBackward(_ u: Tensor) throws -> [Tensor] {
            let dB = try Ops.matmul(g, u, transposeA: true, alpha: options.scale, outputDType: .f32)
            let du = try Ops.matmul(g, b, alpha: options.scale, outputDType: .f32)
            let dA = try Ops.matmul(du, x, transposeA: true, outputDType: .f32)
            let dx = try Ops.add(try Ops.matmul(g, w), try Ops.matmul(du, a, outputDType: dtype))
            return [dx, dA, dB]
        }

        let cases: [BenchCase] = [
            ("forward", "base matmul", 2.0 * Double(t * dIn * dOut), e * Double(t * dIn + dOut * dIn + dOut + t * dOut),
             { [try Ops.matmul(x, w, transposeB: true, bias: bias)] }),
            ("forward", "fused", forwardFlops, forwardBytes,
             { let (y, u) = try Ops.loraForward(x: x, weight: w, bias: bias, a: a, b: b, options: options); return [y, u] }),
            ("forward", "unfused", forwardFlops, forwardBytes, { let (y, u) = try unfusedForward(); return [y, u] }),
            ("forward+backward", "fused", forwardFlops + backwardFlops, forwardBytes + backwardBytes, {
                let (y, u) = try Ops.loraForward(x: x, weight: w, bias: bias, a: a, b: b, options: options)
                let (dx, dA, dB) = try Ops.loraBackward(gradOutput: g, x: x, weight: w, a: a, b: b, u: u, options: options)
                return [y, dx, dA, dB]
            }),
            ("forward+backward", "unfused", forwardFlops + backwardFlops, forwardBytes + backwardBytes, {
                let (y, u) = try unfusedForward()
                return [y] + (try unfusedBackward(u))
            }),
        ]
        return try measure("lora", cases)
    }

    /// One LoRA layer's work and compulsory traffic (every input read once, every output written
    /// once), forward and backward.
    static func loraCost(_ shape: LayerShape, elementBytes e: Double)
        -> (forwardFlops: Double, backwardFlops: Double, forwardBytes: Double, backwardBytes: Double) {
        let (t, dIn, dOut, r) = (Double(shape.t), Double(shape.dIn), Double(shape.dOut), Double(shape.r))
        let forwardFlops: Double = 2 * (t * dIn * dOut + t * dIn * r + t * r * dOut)
        let backwardFlops: Double = 2 * (2 * t * dOut * r + t * r * dIn + t * dOut * dIn + t * r * dIn)
        let forwardBytes: Double = e * (t * dIn + dOut * dIn + dOut + r * dIn + dOut * r + t * dOut) + 4 * t * r
        let backwardBytes: Double = e * (t * dOut + t * dIn + dOut * dIn + r * dIn + dOut * r + t * dIn) + 4 * (t * r + r * dIn + dOut * r)
        return (forwardFlops, backwardFlops, forwardBytes, backwardBytes)
    }
}
