import LowRank

/// Times a closure: device timestamps summed over its dispatches on Vulkan (when the queue has
/// them), a monotonic clock around it and a synchronize on the CPU.
struct Timer {
    let backend: any Backend
    let runs: Int
    let warmup: Int

    struct Sample {
        var median: Double
        var min: Double
        var source: String
    }

    func measure(_ body: () throws -> Void) throws -> Sample {
        for _ in 0..<warmup { try body(); try backend.synchronize() }
        let vulkan = (backend as? VulkanBackend).flatMap { $0.supportsTimestamps ? $0 : nil }
        var times: [Double] = []
        for _ in 0..<runs {
            if let vulkan {
                _ = vulkan.drainTimings()
                vulkan.profiling = true
                try body()
                try vulkan.synchronize()
                vulkan.profiling = false
                times.append(vulkan.drainTimings().reduce(0) { $0 + $1.milliseconds })
            } else {
                let clock = ContinuousClock()
                let start = clock.now
                try body()
                try backend.synchronize()
                let d = clock.now - start
                times.append(Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) * 1e-15)
            }
        }
        times.sort()
        let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
        return Sample(median: median, min: times[0], source: vulkan != nil ? "device timestamps" : "monotonic clock")
    }
}
