import Synchronization

/// One op kind's share of what a backend ran while profiling.
public struct OpTotals: Sendable, Equatable {
    public var calls = 0
    /// Kernel dispatches its calls recorded (a GPU backend's; 0 on the CPU).
    public var dispatches = 0
    /// Device time (timestamps around its dispatches) or wall time (the CPU).
    public var seconds = 0.0

    public init(calls: Int = 0, dispatches: Int = 0, seconds: Double = 0) {
        (self.calls, self.dispatches, self.seconds) = (calls, dispatches, seconds)
    }

    static func + (a: OpTotals, b: OpTotals) -> OpTotals {
        OpTotals(calls: a.calls + b.calls, dispatches: a.dispatches + b.dispatches, seconds: a.seconds + b.seconds)
    }
}

/// What a backend ran between `Backend.startProfiling()` and `stopProfiling()`.
public struct BackendProfile: Sendable {
    public var backend: String
    public var ops: [Op.Kind: OpTotals]
    /// The command counts of a GPU backend (nil on the CPU): kernel dispatches, pipeline barriers
    /// between them, and queue submissions.
    public var dispatches: Int?
    public var barriers: Int?
    public var submissions: Int?
    /// Host waits for submitted work to finish (a GPU's; nil on the CPU).
    public var waits: Int?
    /// Descriptor sets a GPU backend allocated and wrote (nil on the CPU): none in a step whose
    /// dispatches bind what earlier steps' did, as a plan's do.
    public var descriptorSetsWritten: Int?
    /// How `OpTotals.seconds` was measured: "timestamps", "wall clock", or "none" (a queue
    /// without timestamps).
    public var timing: String

    public init(backend: String, ops: [Op.Kind: OpTotals], dispatches: Int? = nil, barriers: Int? = nil, submissions: Int? = nil,
                waits: Int? = nil, descriptorSetsWritten: Int? = nil, timing: String) {
        (self.backend, self.ops, self.dispatches, self.barriers, self.submissions, self.timing) = (backend, ops, dispatches, barriers, submissions, timing)
        self.waits = waits
        self.descriptorSetsWritten = descriptorSetsWritten
    }
}

/// Each op kind's calls, dispatches and time while profiling is on: a backend keeps one and
/// reports into it from `run`. Off, `run` pays one relaxed atomic load.
public final class OpProfiler: Sendable {
    private let on = Atomic<Bool>(false)
    private let totals = Mutex<[Op.Kind: OpTotals]>([:])

    public init() {}

    public var isOn: Bool { on.load(ordering: .relaxed) }

    /// Starts from nothing.
    public func start() {
        totals.withLock { $0 = [:] }
        on.store(true, ordering: .relaxed)
    }

    /// Stops and returns what was collected.
    public func stop() -> [Op.Kind: OpTotals] {
        on.store(false, ordering: .relaxed)
        return totals.withLock { $0 }
    }

    public func add(_ kind: Op.Kind, _ t: OpTotals) {
        totals.withLock { $0[kind, default: OpTotals()] = $0[kind, default: OpTotals()] + t }
    }

    /// Runs `body`, counted as one call of `kind` and timed by the wall clock when profiling is on.
    public func measure(_ kind: Op.Kind, _ body: () throws -> Void) rethrows {
        guard isOn else { return try body() }
        let clock = ContinuousClock(), start = clock.now
        try body()
        add(kind, OpTotals(calls: 1, seconds: (clock.now - start).inSeconds))
    }
}
