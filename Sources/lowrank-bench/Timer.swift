import Foundation
import LowRank

/// Times a closure: device timestamps summed over its dispatches on Vulkan (when the queue has
/// them), a monotonic clock around it and a synchronize on the CPU.
struct Timer {
    let backend: any Backend
    /// At least this many timed runs, and more until they add up to `minimumSeconds`.
    let runs: Int
    let warmup: Int
    let minimumSeconds: Double
    /// Prints each kernel's share of the last timed run (Vulkan only).
    var profile = false

    struct Sample {
        var median: Double
        var min: Double
        /// The interquartile range over the median, in percent.
        var spreadPercent: Double
        var runs: Int
        var source: String
    }

    func measure(_ body: () throws -> Void) throws -> Sample {
        var lastProfile: [DispatchTiming]?
        for _ in 0..<warmup { try body(); try backend.synchronize() }
        let vulkan = (backend as? VulkanBackend).flatMap { $0.supportsTimestamps ? $0 : nil }
        var times: [Double] = []
        // Runs are capped so that a tiny case cannot spin for long under a large minimum time.
        while times.count < runs || (times.reduce(0, +) < minimumSeconds * 1000 && times.count < 100 * runs) {
            if let vulkan {
                let timings = try vulkan.dispatchTimings(body)
                times.append(timings.reduce(0) { $0 + $1.milliseconds })
                if profile { lastProfile = timings }
            } else {
                times.append(try backend.wallSeconds(body) * 1e3)
            }
        }
        if profile, let lastProfile { printProfile(lastProfile) }
        times.sort()
        let quantile = { (q: Double) -> Double in
            let position = q * Double(times.count - 1), lower = Int(position)
            let upper = Swift.min(lower + 1, times.count - 1)
            return times[lower] + (times[upper] - times[lower]) * (position - Double(lower))
        }
        let median = quantile(0.5)
        return Sample(median: median, min: times[0], spreadPercent: median > 0 ? 100 * (quantile(0.75) - quantile(0.25)) / median : 0,
                      runs: times.count, source: vulkan != nil ? "device timestamps" : "monotonic clock")
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
