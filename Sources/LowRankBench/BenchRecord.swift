import Foundation
import LowRank

/// The shape of one adapted layer: x is [T, d_in], W is [d_out, d_in], the rank is r.
public struct LayerShape: Sendable, Hashable, Codable, CustomStringConvertible {
    public var t, dIn, dOut, r: Int

    public init(t: Int, dIn: Int, dOut: Int, r: Int) {
        (self.t, self.dIn, self.dOut, self.r) = (t, dIn, dOut, r)
    }

    public var description: String { "\(t)x\(dIn)x\(dOut) r\(r)" }
}

/// One benchmark result: what ran, where, how long it took and how close that is to the device's
/// roofline. A line of `lowrank-bench --json`, and what `--compare` reads back.
public struct BenchRecord: Sendable, Codable, Equatable {
    public var suite, op, variant: String
    public var backend, device, driver: String
    public var dtype: String
    public var t, dIn, dOut, r: Int
    public var msMedian, msMin: Double
    /// The interquartile range of the runs over their median, in percent.
    public var spreadPercent: Double
    public var runs: Int
    public var gflops, gbytesPerSecond: Double
    /// "memory" or "compute": which roof bounds this result at its arithmetic intensity.
    public var bound: String
    /// The result's share of that roof (attainable throughput at its intensity), 0...1.
    public var rooflineShare: Double
    /// The roofline's peaks as the device's probes measured them.
    public var peakGbytesPerSecond, peakGflops: Double
    public var timing: String
    public var transientBytes: Int?
    public var weightBitsPerParameter: Double?
    /// The kernel path and tile of each matmul one run of the case made, with counts (`coopmat 64×64×16
    /// in 8×8×8 ×2, scalar 16×128×8 (4×8 per thread), split-K 5 ×1`; `cpu` on the CPU backend; empty
    /// when it made none).
    public var kernelPaths: String?
    public var lowrankVersion: String

    enum CodingKeys: String, CodingKey {
        case suite, op, variant, backend, device, driver, dtype
        case t = "T", dIn = "d_in", dOut = "d_out", r
        case msMedian = "ms_median", msMin = "ms_min", spreadPercent = "spread_percent", runs
        case gflops, gbytesPerSecond = "gbytes_per_s", bound, rooflineShare = "roofline_share", timing
        case peakGbytesPerSecond = "peak_gbytes_per_s", peakGflops = "peak_gflops"
        case transientBytes = "transient_bytes", weightBitsPerParameter = "weight_bits_per_parameter", kernelPaths = "kernel_paths"
        case lowrankVersion = "lowrank_version"
    }

    public init(suite: String, op: String, variant: String, backend: String, device: String, driver: String, dtype: String,
                shape: LayerShape, msMedian: Double, msMin: Double, spreadPercent: Double, runs: Int, gflops: Double,
                gbytesPerSecond: Double, bound: String, rooflineShare: Double, peakGbytesPerSecond: Double, peakGflops: Double,
                timing: String, transientBytes: Int? = nil,
                weightBitsPerParameter: Double? = nil, kernelPaths: String? = nil, lowrankVersion: String = Engine.version) {
        (self.suite, self.op, self.variant, self.backend, self.device, self.driver, self.dtype) = (suite, op, variant, backend, device, driver, dtype)
        (t, dIn, dOut, r) = (shape.t, shape.dIn, shape.dOut, shape.r)
        (self.msMedian, self.msMin, self.spreadPercent, self.runs) = (msMedian, msMin, spreadPercent, runs)
        (self.gflops, self.gbytesPerSecond, self.bound, self.rooflineShare, self.timing) = (gflops, gbytesPerSecond, bound, rooflineShare, timing)
        (self.peakGbytesPerSecond, self.peakGflops) = (peakGbytesPerSecond, peakGflops)
        (self.transientBytes, self.weightBitsPerParameter, self.kernelPaths, self.lowrankVersion) =
            (transientBytes, weightBitsPerParameter, kernelPaths, lowrankVersion)
    }

    public var shape: LayerShape { LayerShape(t: t, dIn: dIn, dOut: dOut, r: r) }

    /// What identifies the same measurement in another run: the case, the device and the shape.
    public var key: String { "\(suite) / \(op) / \(variant) / \(backend) (\(device)) / \(dtype) / \(shape)" }

    /// One line of JSON, keys sorted.
    public func jsonLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// The records of a `--json` output file (one object per line; blank lines and lines that are
    /// not objects, such as a table printed beside them, are skipped).
    public static func read(jsonLines path: String) throws -> [BenchRecord] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LowRankError(.io, "cannot read the baseline file", context: [("path", path)])
        }
        let decoder = JSONDecoder()
        var records: [BenchRecord] = []
        for (number, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() {
            let text = line.trimmingCharacters(in: .whitespaces)
            guard text.hasPrefix("{") else { continue }
            do {
                records.append(try decoder.decode(BenchRecord.self, from: Data(text.utf8)))
            } catch {
                throw LowRankError(.fileFormat, "line \(number + 1) is not a lowrank-bench result: \(error)", context: [("path", path)])
            }
        }
        guard !records.isEmpty else { throw LowRankError(.fileFormat, "no lowrank-bench results in the file", context: [("path", path)]) }
        return records
    }
}
