import Foundation
import LowRank

/// Prints results as an aligned table, or as JSON lines.
struct Reporter {
    let json: Bool
    private var rows: [[String]] = []

    init(json: Bool) { self.json = json }

    mutating func report(_ r: BenchResult) {
        let gflops = r.flops / (r.sample.median * 1e6)
        let gbps = r.bytes / (r.sample.median * 1e6)
        if json {
            let object: [String: Any] = [
                "suite": r.suite, "op": r.op, "variant": r.variant, "backend": r.backend, "device": r.device, "dtype": r.dtype,
                "T": r.shape.t, "d_in": r.shape.dIn, "d_out": r.shape.dOut, "r": r.shape.r,
                "ms_median": r.sample.median, "ms_min": r.sample.min, "gflops": gflops, "gbytes_per_s": gbps, "timing": r.sample.source,
                "transient_bytes": r.transientBytes as Any? ?? NSNull(),
                "weight_bits_per_parameter": r.weightBitsPerParameter as Any? ?? NSNull(),
            ]
            let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        rows.append([r.suite, r.op, r.variant, r.backend, r.dtype, "\(r.shape.t)x\(r.shape.dIn)x\(r.shape.dOut) r\(r.shape.r)",
                     String(format: "%.3f", r.sample.median), String(format: "%.3f", r.sample.min),
                     String(format: "%.2f", gflops), String(format: "%.2f", gbps),
                     r.transientBytes.map { String(format: "%.2f", Double($0) / 1048576) } ?? "-",
                     r.weightBitsPerParameter.map { String(format: "%.3f", $0) } ?? "-", r.sample.source])
    }

    func finish() {
        guard !json else { return }
        let header = ["suite", "op", "variant", "backend", "dtype", "T x d_in x d_out", "ms median", "ms min", "GFLOP/s", "GB/s", "transient MiB", "W bits/param", "timing"]
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max()! }
        for (n, row) in all.enumerated() {
            print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            if n == 0 { print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
    }
}
