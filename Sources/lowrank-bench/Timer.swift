import Foundation
import LowRank

/// Times a closure: device timestamps summed over its dispatches on Vulkan (when the queue has
/// them), a monotonic clock around it and a synchronize on the CPU.
struct Timer {
    let backend: any Backend
    let runs: Int
    let warmup: Int
    /// Prints each kernel's share of the last timed run (Vulkan only).
    var profile = false

    struct Sample {
        var median: Double
        var min: Double
        var source: String
    }

    func measure(_ body: () throws -> Void) throws -> Sample {
        var lastProfile: [DispatchTiming]?
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
                let timings = vulkan.drainTimings()
                times.append(timings.reduce(0) { $0 + $1.milliseconds })
                if profile { lastProfile = timings }
            } else {
                let clock = ContinuousClock()
                let start = clock.now
                try body()
                try backend.synchronize()
                let d = clock.now - start
                times.append(Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) * 1e-15)
            }
        }
        if profile, let lastProfile { printProfile(lastProfile) }
        times.sort()
        let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
        return Sample(median: median, min: times[0], source: vulkan != nil ? "device timestamps" : "monotonic clock")
    }

    private func printProfile(_ timings: [DispatchTiming]) {
        let total = timings.reduce(0) { $0 + $1.milliseconds }
        var byKernel: [(String, Double, Int)] = []
        for t in timings {
            if let i = byKernel.firstIndex(where: { $0.0 == t.kernel }) {
                byKernel[i].1 += t.milliseconds
                byKernel[i].2 += 1
            } else {
                byKernel.append((t.kernel, t.milliseconds, 1))
            }
        }
        for (kernel, ms, n) in byKernel {
            printToStandardError("    \(kernel) ×\(n): \(String(format: "%.3f", ms)) ms (\(String(format: "%.0f", 100 * ms / total))%)")
        }
    }
}
