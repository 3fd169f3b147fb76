import Foundation

/// What the backends of a run did per step, from their profiles over `steps` steps: the table
/// `--profile` prints and the object a run records.
public struct StepProfile: Sendable {
    public var steps: Int
    public var backends: [BackendProfile]

    public init(steps: Int, backends: [BackendProfile]) {
        self.steps = steps
        self.backends = backends
    }

    /// Every backend's op kinds, the largest total time first.
    private var rows: [(backend: String, op: Op.Kind, totals: OpTotals)] {
        backends.flatMap { b in b.ops.map { (b.backend, $0.key, $0.value) } }
            .sorted { ($0.totals.seconds, $1.op.rawValue) > ($1.totals.seconds, $0.op.rawValue) }
    }

    private var totalSeconds: Double { backends.reduce(0) { $0 + $1.ops.values.reduce(0) { $0 + $1.seconds } } }

    private func perStep(_ n: Int) -> Double { Double(n) / Double(max(steps, 1)) }

    /// A short table: per step, each backend's command counts, then each op kind's calls,
    /// dispatches, time and share of the time.
    public var table: String {
        var lines = ["profile over \(steps) step\(steps == 1 ? "" : "s"), per step:"]
        for b in backends {
            var counts = ["\(format(perStep(b.ops.values.reduce(0) { $0 + $1.calls }))) ops"]
            if let d = b.dispatches, let barriers = b.barriers, let s = b.submissions {
                counts += ["\(format(perStep(d))) dispatches", "\(format(perStep(barriers))) barriers", "\(format(perStep(s))) submissions"]
            }
            if let waits = b.waits { counts.append("\(format(perStep(waits))) host waits") }
            if let written = b.descriptorSetsWritten { counts.append("\(format(perStep(written))) descriptor sets written") }
            lines.append("  \(b.backend): " + counts.joined(separator: ", ") + "; op time from \(b.timing)")
        }
        let total = totalSeconds
        lines.append("  " + pad("op", 30) + pad("backend", 10) + pad("calls", 9) + pad("dispatches", 12) + pad("ms", 11) + "share")
        for row in rows {
            let share = total > 0 ? String(format: "%.1f%%", 100 * row.totals.seconds / total) : "-"
            lines.append("  " + pad(row.op.rawValue, 30) + pad(row.backend, 10) + pad(format(perStep(row.totals.calls)), 9)
                         + pad(format(perStep(row.totals.dispatches)), 12) + pad(String(format: "%.3f", row.totals.seconds * 1e3 / Double(max(steps, 1))), 11) + share)
        }
        return lines.joined(separator: "\n")
    }

    /// The same per step, as JSON: `{"steps", "backends": [{"backend", "timing", "dispatches", "barriers",
    /// "submissions", "waits", "descriptor_sets_written"}], "ops": [{"op", "backend", "calls", "dispatches", "seconds", "share"}]}`.
    public var json: JSON {
        let total = totalSeconds
        let backendObjects: [JSON] = backends.map { b in
            var o: [String: JSON] = ["backend": .string(b.backend), "timing": .string(b.timing),
                                     "ops": .number(perStep(b.ops.values.reduce(0) { $0 + $1.calls }))]
            for (key, value) in [("dispatches", b.dispatches), ("barriers", b.barriers), ("submissions", b.submissions), ("waits", b.waits),
                                 ("descriptor_sets_written", b.descriptorSetsWritten)] {
                if let value { o[key] = .number(perStep(value)) }
            }
            return .object(o)
        }
        let ops: [JSON] = rows.map { row in
            .object(["op": .string(row.op.rawValue), "backend": .string(row.backend), "calls": .number(perStep(row.totals.calls)),
                     "dispatches": .number(perStep(row.totals.dispatches)), "seconds": .number(row.totals.seconds / Double(max(steps, 1))),
                     "share": .number(total > 0 ? row.totals.seconds / total : 0)])
        }
        return .object(["steps": .number(Double(steps)), "backends": .array(backendObjects), "ops": .array(ops)])
    }

    private func format(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v) }
    private func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count) }
}
