import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import LowRank
import LowRankBench
import Testing

/// The parts of `lowrank-bench` that judge results: baseline comparison, the roofline, the plot.
@Suite("benchmark records")
struct BenchTests {
    static func record(_ variant: String, ms: Double, r: Int = 16, suite: String = "lora") -> BenchRecord {
        BenchRecord(suite: suite, op: "forward", variant: variant, backend: "cpu", device: "CPU", driver: "OpenBLAS", dtype: "f32",
                    shape: LayerShape(t: 512, dIn: 2048, dOut: 2048, r: r), msMedian: ms, msMin: ms * 0.95, spreadPercent: 2,
                    runs: 10, gflops: 1, gbytesPerSecond: 1, bound: "compute", rooflineShare: 0.5, peakGbytesPerSecond: 20,
                    peakGflops: 200, timing: "monotonic clock")
    }

    /// A planted 20% slowdown among changes inside the threshold is the one regression reported,
    /// after the baseline went through a file of JSON lines (with a table line mixed in).
    @Test func comparisonCatchesAPlantedSlowdown() throws {
        let baseline = [Self.record("fused", ms: 10), Self.record("unfused", ms: 20), Self.record("fused", ms: 30, r: 64),
                        Self.record("fused", ms: 40, suite: "dora"), Self.record("gone", ms: 5)]
        let path = temporaryPath("baseline.json")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let lines = try ["roofline of cpu: a line that is not a result"] + baseline.map { try $0.jsonLine() }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(lines.joined(separator: "\n").utf8)))
        let readBack = try BenchRecord.read(jsonLines: path)
        #expect(readBack == baseline)

        let current = [Self.record("fused", ms: 10.5), Self.record("unfused", ms: 24), Self.record("fused", ms: 27, r: 64),
                       Self.record("fused", ms: 30, suite: "dora"), Self.record("added", ms: 1)]
        let comparison = BaselineComparison(current: current, baseline: readBack, threshold: BaselineComparison.threshold(parsing: "10%")!)
        #expect(comparison.regressions.map(\.key) == [Self.record("unfused", ms: 0).key])
        #expect(abs(comparison.regressions[0].change - 0.2) < 1e-12)
        #expect(comparison.improvements.map(\.key) == [Self.record("fused", ms: 0, suite: "dora").key])
        #expect(comparison.unchanged.count == 2)
        #expect(comparison.new == [Self.record("added", ms: 0).key] && comparison.missing == [Self.record("gone", ms: 0).key])
        #expect(comparison.summary.contains("REGRESSION +20%"))

        // At a 25% threshold the same slowdown passes.
        #expect(BaselineComparison(current: current, baseline: baseline, threshold: 0.25).regressions.isEmpty)
    }

    @Test func thresholdsAndBadBaselines() throws {
        #expect(BaselineComparison.threshold(parsing: "10%") == 0.1)
        #expect(BaselineComparison.threshold(parsing: "0.1") == 0.1)
        #expect(BaselineComparison.threshold(parsing: "15") == 0.15)
        #expect(BaselineComparison.threshold(parsing: "fast") == nil && BaselineComparison.threshold(parsing: "-5%") == nil)
        let path = temporaryPath("bad.json")
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data("{\"suite\": \"lora\"}\n".utf8)))
        #expect(throws: LowRankError.self) { try BenchRecord.read(jsonLines: path) }
        #expect(throws: LowRankError.self) { try BenchRecord.read(jsonLines: path + ".missing") }
    }

    /// A copy is bounded by memory; a large matmul by compute; the share is the roof's time over the measured one.
    @Test func rooflineBounds() {
        let roofline = Roofline(measured: DevicePeaks(bytesPerSecond: 100e9, flopsPerSecond: 10e12, method: "test"), deviceName: "NVIDIA H100 80GB HBM3")
        let copy = roofline.share(flops: 0, bytes: 1e9, seconds: 0.02)
        #expect(copy.bound == "memory" && abs(copy.share - 0.5) < 1e-12)
        let matmul = roofline.share(flops: 2 * 4096.0 * 4096 * 4096, bytes: 3 * 4096.0 * 4096 * 4, seconds: 0.1)
        #expect(matmul.bound == "compute" && abs(matmul.share - 2 * 4096.0 * 4096 * 4096 / 10e12 / 0.1) < 1e-12)
        #expect(roofline.vendor?.name == "NVIDIA H100 SXM5")
        #expect(VendorPeaks.known("NVIDIA H100 PCIe")?.name == "NVIDIA H100 PCIe" && VendorPeaks.known("llvmpipe") == nil)
    }

    /// The plot of a sweep is well-formed SVG with one line per case and the swept values on x.
    @Test func sweepPlotIsSVG() throws {
        let records = [16, 64, 384].flatMap { r in [Self.record("fused", ms: Double(r) / 8, r: r), Self.record("unfused", ms: Double(r) * 3, r: r)] }
        let svg = SweepPlot(records: records).svg()
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 2)
        #expect(svg.contains(">384</text>") && svg.contains("shape (r)") && svg.contains("log scale"))
    }
}
