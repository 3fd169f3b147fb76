import LowRank

struct LoRAShape {
    var t, dIn, dOut, r: Int
}

/// One row of output.
struct BenchResult {
    var suite, op, variant, backend, device, dtype: String
    var shape: LoRAShape
    var sample: Timer.Sample
    var flops: Double
    var bytes: Double
    /// Peak bytes above what was allocated before one run (outputs included), from the backend's allocator.
    var transientBytes: Int?
    /// Device bits per parameter of the weight the row reads (quant suite), from the allocator.
    var weightBitsPerParameter: Double?
}

/// One timed op of a suite: its name, variant, work, compulsory traffic and what it runs.
typealias BenchCase = (op: String, variant: String, flops: Double, bytes: Double, body: () throws -> Void)

/// What every suite runs with; each suite is an extension that builds its cases.
struct BenchContext {
    let backend: any Backend
    let shape: LoRAShape
    let dtype: DType
    let timer: Timer

    /// One adapted layer's deterministic inputs x, W, bias, A, B and G, the same on every backend.
    func layer() throws -> (x: Tensor, w: Tensor, bias: Tensor, a: Tensor, b: Tensor, g: Tensor) {
        let tensor = { (dims: Shape, seed: UInt32, scale: Float) in
            try Tensor((0..<dims.count).map { Float(DropoutMask.hash(seed &+ UInt32($0)) >> 8) / Float(1 << 24) * 2 * scale - scale },
                       shape: dims, dtype: dtype, on: backend)
        }
        let (t, dIn, dOut, r) = (shape.t, shape.dIn, shape.dOut, shape.r)
        return (try tensor([t, dIn], 1, 1), try tensor([dOut, dIn], 2, 0.05), try tensor([dOut], 3, 0.1),
                try tensor([r, dIn], 4, 0.05), try tensor([dOut, r], 5, 0.05), try tensor([t, dOut], 6, 1))
    }

    /// Times each case and reads the peak memory one run of it adds.
    func measure(_ suite: String, _ cases: [BenchCase]) throws -> [BenchResult] {
        try cases.map { c in
            if timer.profile { printToStandardError("\(backend.identifier) \(suite) \(c.op) \(c.variant):") }
            let transient = try timer.transientBytes(c.body)
            return BenchResult(suite: suite, op: c.op, variant: c.variant, backend: backend.identifier, device: backend.deviceName,
                               dtype: dtype.rawValue, shape: shape, sample: try timer.measure(c.body), flops: c.flops, bytes: c.bytes,
                               transientBytes: transient)
        }
    }
}

extension Timer {
    /// The peak memory one run of `body` adds, read from the backend's allocator.
    func transientBytes(_ body: () throws -> Void) throws -> Int {
        try backend.synchronize()
        let before = backend.memoryStatistics()[0].currentBytes
        backend.resetPeakMemory()
        try body()
        try backend.synchronize()
        return backend.memoryStatistics()[0].peakBytes - before
    }
}

extension BenchContext {
    /// Fused LoRA kernels against the same math as separate ops, and the base matmul alone.
    func loraSuite() throws -> [BenchResult] {
        let (t, dIn, dOut, r) = (shape.t, shape.dIn, shape.dOut, shape.r)
        let (x, w, bias, a, b, g) = try layer()
        let options = LoRAOptions(scale: 2, hasBias: true)
        let e = Double(dtype.byteSize)

        let forwardFlops = 2.0 * Double(t * dIn * dOut + t * dIn * r + t * r * dOut)
        let backwardFlops = 2.0 * Double(2 * t * dOut * r + t * r * dIn + t * dOut * dIn + t * r * dIn)
        // Compulsory traffic: every input read once, every output written once.
        let forwardBytes = e * Double(t * dIn + dOut * dIn + dOut + r * dIn + dOut * r + t * dOut) + 4 * Double(t * r)
        let backwardBytes = e * Double(t * dOut + t * dIn + dOut * dIn + r * dIn + dOut * r + t * dIn) + 4 * Double(t * r + r * dIn + dOut * r)

        func unfusedForward() throws -> (Tensor, Tensor) {
            let base = try Ops.matmul(x, w, transposeB: true, bias: bias)
            let u = try Ops.matmul(x, a, transposeB: true, outputDType: .f32)
            let lora = try Ops.matmul(u, b, transposeB: true, alpha: options.scale, outputDType: dtype)
            return (try Ops.add(base, lora), u)
        }
        func unfusedBackward(_ u: Tensor) throws {
            _ = try Ops.matmul(g, u, transposeA: true, alpha: options.scale, outputDType: .f32)       // dB
            let du = try Ops.matmul(g, b, alpha: options.scale, outputDType: .f32)                     // du
            _ = try Ops.matmul(du, x, transposeA: true, outputDType: .f32)                             // dA
            _ = try Ops.add(try Ops.matmul(g, w), try Ops.matmul(du, a, outputDType: dtype))           // dx
        }

        let cases: [BenchCase] = [
            ("forward", "base matmul", 2.0 * Double(t * dIn * dOut), e * Double(t * dIn + dOut * dIn + dOut + t * dOut),
             { _ = try Ops.matmul(x, w, transposeB: true, bias: bias) }),
            ("forward", "fused", forwardFlops, forwardBytes,
             { _ = try Ops.loraForward(x: x, weight: w, bias: bias, a: a, b: b, options: options) }),
            ("forward", "unfused", forwardFlops, forwardBytes, { _ = try unfusedForward() }),
            ("forward+backward", "fused", forwardFlops + backwardFlops, forwardBytes + backwardBytes, {
                let (_, u) = try Ops.loraForward(x: x, weight: w, bias: bias, a: a, b: b, options: options)
                _ = try Ops.loraBackward(gradOutput: g, x: x, weight: w, a: a, b: b, u: u, options: options)
            }),
            ("forward+backward", "unfused", forwardFlops + backwardFlops, forwardBytes + backwardBytes, {
                let (_, u) = try unfusedForward()
                try unfusedBackward(u)
            }),
        ]
        return try measure("lora", cases)
    }
}
