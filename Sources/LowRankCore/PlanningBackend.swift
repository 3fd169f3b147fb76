/// A backend that holds and computes nothing, for knowing a run's memory before loading it: its
/// tensors are descriptors with a byte count, writes are dropped, ops run as no-ops, and every
/// byte handed out is counted. A graph over its tensors plans as it would on `device` (whose
/// `unsupportedReason` it asks), so `plannedBytes` and the counted bytes are what that run
/// would take, without a weight file or a device allocation. Reading a value back is an error:
/// nothing computed here is a result.
public final class PlanningBackend: Backend, Sendable {
    public let identifier = "planning"
    public var deviceName: String { "planning for \(device?.deviceName ?? "any device")" }
    public let driverDescription = "allocates and computes nothing; counts bytes"
    /// The backend whose op support the plan follows; nil for one that runs every op.
    public let device: (any Backend)?
    /// The device allocator's unit: each tensor is counted as a multiple of it, as it would take there.
    public let allocationAlignment: Int
    private let usage = MemoryCounter(heap: "planned")

    public init(planningFor device: (any Backend)? = nil, allocationAlignment: Int = 1) {
        self.device = device
        self.allocationAlignment = max(1, allocationAlignment)
    }

    public func makeStorage(byteCount: Int) throws -> any TensorStorage {
        let counted = max(allocationAlignment, (byteCount + allocationAlignment - 1) / allocationAlignment * allocationAlignment)
        usage.allocated(counted)
        return PlannedStorage(byteCount: byteCount) { [usage] _ in usage.freed(counted) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, to storage: any TensorStorage, offset: Int) throws {}

    public func read(_ storage: any TensorStorage, offset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
        throw LowRankError(.unsupported, "a planning backend holds no values to read; plan with it, run on a device")
    }

    public func run(_ op: Op, inputs: [Tensor], outputs: [Tensor]) throws {}
    public func synchronize() throws {}
    public func memoryStatistics() -> [MemoryStatistics] { [usage.statistics] }
    public func resetPeakMemory() { usage.resetPeak() }

    public func measurePeaks() throws -> DevicePeaks {
        throw LowRankError(.unsupported, "a planning backend has no speed to measure")
    }

    public func unsupportedReason(_ op: Op, inputs: [TensorDescriptor]) -> String? {
        device?.unsupportedReason(op, inputs: inputs)
    }

    public func repeatScratchBytes(_ steps: [(op: Op, inputs: [TensorDescriptor], outputs: [TensorDescriptor])]) throws -> Int {
        try device?.repeatScratchBytes(steps) ?? 0
    }
}

/// A tensor's byte count and nothing else.
private final class PlannedStorage: TensorStorage, Sendable {
    let byteCount: Int
    private let onFree: @Sendable (Int) -> Void

    init(byteCount: Int, onFree: @escaping @Sendable (Int) -> Void) {
        self.byteCount = byteCount
        self.onFree = onFree
    }

    deinit { onFree(byteCount) }
}
