import LowRankCore

/// `Shaders/probe_copy.comp`: streams vec4s from one buffer to another.
struct ProbeCopyKernel: Kernel {
    struct Push: BitwiseCopyable {
        var count: UInt32
    }

    static let shader = Shader.probeCopy
    var defines: [String: String] { [:] }
    static var variants: [ProbeCopyKernel] { [ProbeCopyKernel()] }
}

/// `Shaders/probe_fma.comp`: independent chains of multiply-adds.
struct ProbeFMAKernel: Kernel {
    struct Push: BitwiseCopyable {
        var iterations: UInt32
        var seed: Float
    }

    static let shader = Shader.probeFMA
    var defines: [String: String] { [:] }
    static var variants: [ProbeFMAKernel] { [ProbeFMAKernel()] }
}

extension VulkanBackend {
    public var driverDescription: String { "\(info.driverName) \(info.driverInfo), Vulkan \(info.apiVersion)" }

    /// Streaming bandwidth from `Shaders/probe_copy.comp` over up to 256 MiB (read plus write);
    /// multiply-add throughput from `Shaders/probe_fma.comp`, grown until one run lasts 20 ms.
    /// Device timestamps where the queue has them, else the wall clock around submit and wait.
    public func measurePeaks() throws -> DevicePeaks {
        let bytes = min(maxBindingBytes, 256 << 20) / 16 * 16, vec4s = bytes / 16
        let source = try scratch([bytes / 4]), target = try scratch([bytes / 4])
        let copy = try fastestRun {
            try dispatch(ProbeCopyKernel(), [.read(source), .write(target)], push: .init(count: UInt32(vec4s)), groups: (min((vec4s + 255) / 256, 65535), 1, 1))
        }
        var groups = 64, iterations = 1024, seconds = 0.0
        while true {
            let out = try scratch([groups * 256])
            seconds = try fastestRun {
                try dispatch(ProbeFMAKernel(), [.write(out)], push: .init(iterations: UInt32(iterations), seed: 0.5), groups: (groups, 1, 1))
            }
            if seconds >= 0.02 || iterations >= 1 << 20 { break }
            if groups < 65535 { groups = min(groups * 4, 65535) } else { iterations *= 4 }
        }
        let flops = Double(groups * 256) * Double(iterations) * 8 * 4 * 2
        return DevicePeaks(bytesPerSecond: Double(2 * bytes) / copy, flopsPerSecond: flops / seconds,
                           method: "probe_copy.comp over \(bytes >> 20) MiB; probe_fma.comp, \(groups)×256 invocations × \(iterations) × 32 FMAs")
    }

    /// The shortest of three runs of the commands `record` encodes, in seconds.
    private func fastestRun(_ record: () throws -> Void) throws -> Double {
        let wasProfiling = profiling
        defer { profiling = wasProfiling }
        var best = Double.infinity
        for _ in 0..<3 {
            try synchronize()
            _ = drainTimings()
            profiling = supportsTimestamps
            let clock = ContinuousClock(), start = clock.now
            try lock.withLock { _ in try record() }
            try synchronize()
            let wall = clock.now - start
            let seconds = supportsTimestamps ? drainTimings().reduce(0) { $0 + $1.milliseconds } / 1000
                : wall.inSeconds
            best = min(best, seconds)
        }
        return best
    }
}
