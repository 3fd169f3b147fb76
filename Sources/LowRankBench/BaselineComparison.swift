import Foundation

/// The results of a run set against a baseline run of the same cases: a result whose median time
/// grew by more than the threshold is a regression.
public struct BaselineComparison: Sendable {
    public struct Change: Sendable {
        public var key: String
        public var baselineMs, currentMs: Double
        /// Relative change of the median time: +0.2 is 20% slower.
        public var change: Double { currentMs / baselineMs - 1 }
    }

    public var threshold: Double
    public var regressions: [Change] = []
    public var improvements: [Change] = []
    public var unchanged: [Change] = []
    /// Results of this run with no counterpart in the baseline, and the reverse.
    public var new: [String] = []
    public var missing: [String] = []

    /// Matches results by `BenchRecord.key` (a key measured twice in a file counts once: its last
    /// line). `threshold` is relative: 0.1 flags medians more than 10% slower.
    public init(current: [BenchRecord], baseline: [BenchRecord], threshold: Double) {
        self.threshold = threshold
        let before = Dictionary(baseline.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
        let now = Dictionary(current.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
        var seen = Set<String>()
        for key in current.map(\.key) where seen.insert(key).inserted {
            guard let old = before[key] else { new.append(key); continue }
            let c = Change(key: key, baselineMs: old.msMedian, currentMs: now[key]!.msMedian)
            if c.change > threshold { regressions.append(c) } else if c.change < -threshold { improvements.append(c) } else { unchanged.append(c) }
        }
        missing = baseline.map(\.key).filter { now[$0] == nil }
    }

    /// The report printed after a run with `--compare`.
    public var summary: String {
        let percent = { (x: Double) in (x >= 0 ? "+" : "") + String(Int((x * 100).rounded())) + "%" }
        var lines = ["compared with the baseline (threshold \(Int((threshold * 100).rounded()))%): \(regressions.count) regressions, "
                     + "\(improvements.count) improvements, \(unchanged.count) within the threshold, \(new.count) new, \(missing.count) missing"]
        for (title, changes) in [("REGRESSION", regressions), ("improvement", improvements)] {
            for c in changes {
                lines.append("  \(title) \(percent(c.change)): \(c.key): \(format(c.baselineMs)) ms -> \(format(c.currentMs)) ms")
            }
        }
        lines += new.map { "  new (not in the baseline): \($0)" } + missing.map { "  missing (not measured now): \($0)" }
        return lines.joined(separator: "\n")
    }

    private func format(_ ms: Double) -> String { String(format: ms >= 100 ? "%.1f" : "%.3f", ms) }

    /// Parses `10%`, or a number: a percent from 1 up (`10`), a fraction below it (`0.1`).
    public static func threshold(parsing text: String) -> Double? {
        let trimmed = text.hasSuffix("%") ? String(text.dropLast()) : text
        guard let value = Double(trimmed), value >= 0 else { return nil }
        return text.hasSuffix("%") || value >= 1 ? value / 100 : value
    }
}
