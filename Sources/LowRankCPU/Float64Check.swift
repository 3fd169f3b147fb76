import LowRankCore

/// Measures every step of a plan's runs against its float64 twin (`Float64Reference`), computed
/// from the very inputs the backend was given, so each step's error is its own and not what it
/// inherited: the tool for finding the op that loses precision in a deep model
/// (`LOWRANK_CHECK=f64`). Unlike `LOWRANK_CHECK=1` it never stops a run; it records.
public final class Float64Check: PlanStepObserver {
    /// One output of one step: `max|got − exact| / max|exact|` over its elements (infinity when
    /// the backend gave a non-finite value where the exact one is finite).
    public struct Record: Sendable, CustomStringConvertible {
        public let label: String
        public let op: Op.Kind
        public let output: Int
        public let relativeError: Double

        public var description: String { "\(label) (\(op)) output \(output): \(relativeError)" }
    }

    /// The last run's records, in step order.
    public private(set) var records: [Record] = []
    /// Ops of the last run that have no float64 twin, by name.
    public private(set) var unchecked: Set<Op.Kind> = []
    /// Writes `summary` to stderr after each run.
    private let printing: Bool
    private var pending: [[Double]]?

    public init(printing: Bool = false) {
        self.printing = printing
    }

    public func runWillStart() {
        records = []
        unchecked = []
    }

    public func stepWillRun(_ step: ExecutionPlan.Step, _ op: Op, inputs: [Tensor], outputs: [Tensor]) throws {
        pending = try Float64Reference.outputs(of: op, try inputs.map(Float64Values.init)) {
            try outputs.map(Float64Values.init)
        }
        if pending == nil { unchecked.insert(op.kind) }
    }

    public func stepDidRun(_ step: ExecutionPlan.Step, _ op: Op, outputs: [Tensor]) throws {
        guard let exact = pending else { return }
        for (i, (got, want)) in zip(outputs, exact).enumerated() where !op.unspecifiedOutputs.contains(i) {
            records.append(Record(label: step.label, op: op.kind, output: i, relativeError: Self.relativeError(try got.floats(), want)))
        }
    }

    public func runDidFinish() throws {
        if printing { printToStandardError(summary) }
    }

    /// The worst record of each op, worst op first, with the number of outputs checked.
    public var worstByOp: [(op: Op.Kind, worst: Record, count: Int)] {
        Dictionary(grouping: records, by: \.op)
            .map { op, rs in (op, rs.max { $0.relativeError < $1.relativeError }!, rs.count) }
            .sorted { $0.worst.relativeError > $1.worst.relativeError }
    }

    /// A table of `worstByOp`, then the ops left unchecked.
    public var summary: String {
        var lines = ["LOWRANK_CHECK=f64: each step against float64 from its own inputs (worst relative error per op)"]
        for (op, worst, count) in worstByOp {
            lines.append("  \(op.rawValue.padding(24)) \(String(worst.relativeError).padding(24)) at \(worst.label) output \(worst.output) (\(count) outputs)")
        }
        if !unchecked.isEmpty { lines.append("  no float64 twin (not checked): " + unchecked.map(\.rawValue).sorted().joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }

    static func relativeError(_ got: [Float], _ exact: [Double]) -> Double {
        var worst = 0.0, scale = 0.0
        for (g, e) in zip(got, exact) {
            if e.isNaN && g.isNaN { continue }
            if !g.isFinite && e.isFinite { return .infinity }
            worst = max(worst, abs(Double(g) - e))
            scale = max(scale, abs(e))
        }
        return scale > 0 ? worst / scale : worst
    }
}

private extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
