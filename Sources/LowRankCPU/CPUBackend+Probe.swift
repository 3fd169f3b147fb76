import COpenBLAS
import Dispatch
import Glibc
import LowRankCore

extension CPUBackend {
    public var driverDescription: String {
        let config = openblas_get_config().map { String(cString: $0) } ?? "OpenBLAS"
        return "\(config) on \(Self.processorName)"
    }

    /// Streaming bandwidth: every thread copies its share of a 256 MiB buffer with `memcpy` (read
    /// plus write, counted as both). Multiply-add throughput: the best of OpenBLAS's sgemm at
    /// 2048³, the fastest f32 kernel this backend has (Swift's own SIMD loops build for baseline
    /// x86-64, without FMA, so a hand-written probe would understate the cores).
    public func measurePeaks() throws -> DevicePeaks {
        let bytes = 256 << 20
        let source = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let target = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { source.deallocate(); target.deallocate() }
        source.initializeMemory(as: UInt8.self, repeating: 1, count: bytes)
        target.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let copy = Self.best(of: 5) {
            parallelFor(bytes, minimumPerThread: 1 << 20) { range in
                memcpy(target + range.lowerBound, source + range.lowerBound, range.count)
            }
        }

        let n = 2048
        let a = [Float](repeating: 0.5, count: n * n), b = [Float](repeating: 0.25, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        let product = Self.best(of: 3) {
            sgemm(a, transpose: false, b, transpose: false, &c, m: n, n: n, k: n, alpha: 1, beta: 0)
        }
        return DevicePeaks(bytesPerSecond: Double(2 * bytes) / copy, flopsPerSecond: 2 * Double(n * n * n) / product,
                           method: "memcpy of 256 MiB over \(threads) threads; OpenBLAS sgemm 2048³")
    }

    /// The shortest of `runs` timings of `body`, in seconds.
    static func best(of runs: Int, _ body: () -> Void) -> Double {
        let clock = ContinuousClock()
        var best = Double.infinity
        for _ in 0..<runs {
            let start = clock.now
            body()
            let d = clock.now - start
            best = Swift.min(best, d.inSeconds)
        }
        return best
    }

    /// The processor's model name from /proc/cpuinfo, or "unknown CPU".
    static var processorName: String {
        guard let file = fopen("/proc/cpuinfo", "r") else { return "unknown CPU" }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("model name"), let colon = text.firstIndex(of: ":") {
                return text[text.index(after: colon)...].trimmingCharacters(in: " \t\n")
            }
        }
        return "unknown CPU"
    }
}

private extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var s = self
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
