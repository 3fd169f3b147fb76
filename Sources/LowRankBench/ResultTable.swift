import Foundation

/// Results as an aligned text table, the roofline share of each beside its time.
public struct ResultTable {
    public private(set) var records: [BenchRecord] = []

    public init() {}

    public mutating func append(_ record: BenchRecord) { records.append(record) }

    public func render() -> String {
        let header = ["suite", "op", "variant", "backend", "dtype", "T x d_in x d_out", "ms median", "±IQR", "ms min",
                      "GFLOP/s", "GB/s", "roofline", "transient MiB", "W bits/param"]
        let rows = records.map { r in
            [r.suite, r.op, r.variant, r.backend, r.dtype, r.shape.description, String(format: "%.3f", r.msMedian),
             String(format: "%.0f%%", r.spreadPercent), String(format: "%.3f", r.msMin), String(format: "%.2f", r.gflops),
             String(format: "%.2f", r.gbytesPerSecond), String(format: "%.0f%% ", 100 * r.rooflineShare) + r.bound,
             r.transientBytes.map { String(format: "%.2f", Double($0) / 1048576) } ?? "-",
             r.weightBitsPerParameter.map { String(format: "%.3f", $0) } ?? "-"]
        }
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max()! }
        var lines: [String] = []
        for (n, row) in all.enumerated() {
            lines.append(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            if n == 0 { lines.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        return lines.joined(separator: "\n")
    }
}
