import LowRank
import LowRankBench

/// One timed case of a suite: its op and variant, its work and compulsory traffic, and what it
/// runs (returning the tensors it produced, which are checked for NaN and infinities).
typealias BenchCase = (op: String, variant: String, flops: Double, bytes: Double, body: () throws -> [Tensor])

/// What every suite runs with; each suite is an extension that builds its cases.
struct BenchContext {
    let backend: any Backend
    let shape: LayerShape
    let dtype: DType
    let timer: Timer
    let roofline: Roofline
    /// The adapters `train-model` trains.
    var adapters: [TrainedAdapter] = TrainedAdapter.allCases
    /// `train-model` also times a step accumulated over this many micro-batches, when above 1.
    var microBatches = 1

    /// `count` deterministic values in [−scale, scale), the same on every backend.
    static func values(_ count: Int, seed: UInt32, scale: Float) -> [Float] {
        (0..<count).map { Float(DropoutMask.hash(seed &+ UInt32($0)) >> 8) / Float(1 << 24) * 2 * scale - scale }
    }

    /// One adapted layer's deterministic inputs x, W, bias, A, B and G, the same on every backend.
    func layer() throws -> (x: Tensor, w: Tensor, bias: Tensor, a: Tensor, b: Tensor, g: Tensor) {
        let tensor = { (dims: Shape, seed: UInt32, scale: Float) in
            try Tensor(Self.values(dims.count, seed: seed, scale: scale), shape: dims, dtype: dtype, on: backend)
        }
        let (t, dIn, dOut, r) = (shape.t, shape.dIn, shape.dOut, shape.r)
        return (try tensor([t, dIn], 1, 1), try tensor([dOut, dIn], 2, 0.05), try tensor([dOut], 3, 0.1),
                try tensor([r, dIn], 4, 0.05), try tensor([dOut, r], 5, 0.05), try tensor([t, dOut], 6, 1))
    }

    /// Runs each case once, reading the peak memory that run adds and checking its outputs, then
    /// times it and places it on the roofline.
    func measure(_ suite: String, _ cases: [BenchCase]) throws -> [BenchRecord] {
        try cases.map { c in
            var outputs: [Tensor] = []
            let vulkan = backend as? VulkanBackend
            _ = vulkan?.drainMatmulPathSummary()
            let transient = try timer.transientBytes { outputs = try c.body() }
            let paths = vulkan?.drainMatmulPathSummary() ?? "cpu"
            for output in outputs where output.dtype.isFloatingPoint {
                guard try output.floats().allSatisfy(\.isFinite) else {
                    throw LowRankError(.numerical, "\(suite) \(c.op) (\(c.variant)) produced NaN or infinite values",
                                       context: [("device", backend.identifier), ("shape", shape.description), ("output", "\(output.descriptor)")])
                }
            }
            if timer.profile { printToStandardError("\(backend.identifier) \(suite) \(c.op) \(c.variant):") }
            let sample = try timer.measure { _ = try c.body() }
            let seconds = sample.median / 1000
            let (bound, share) = roofline.share(flops: c.flops, bytes: c.bytes, seconds: seconds)
            return BenchRecord(suite: suite, op: c.op, variant: c.variant, backend: backend.identifier, device: backend.deviceName,
                               driver: backend.driverDescription, dtype: dtype.rawValue, shape: shape, msMedian: sample.median,
                               msMin: sample.min, spreadPercent: sample.spreadPercent, runs: sample.runs,
                               gflops: c.flops / seconds / 1e9, gbytesPerSecond: c.bytes / seconds / 1e9, bound: bound,
                               rooflineShare: share, peakGbytesPerSecond: roofline.measured.bytesPerSecond / 1e9,
                               peakGflops: roofline.measured.flopsPerSecond / 1e9, timing: sample.source, transientBytes: transient,
                               kernelPaths: paths)
        }
    }
}
