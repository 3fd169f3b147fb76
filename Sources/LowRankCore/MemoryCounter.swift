import Synchronization

/// Current and peak bytes of one heap; backends count what they hand out here.
public final class MemoryCounter: Sendable {
    public let heap: String
    private let state = Mutex((current: 0, peak: 0, reserved: 0))

    public init(heap: String) { self.heap = heap }

    public func allocated(_ bytes: Int) {
        state.withLock { s in
            s.current += bytes
            s.peak = max(s.peak, s.current)
        }
    }

    public func freed(_ bytes: Int) { state.withLock { $0.current -= bytes } }

    /// Bytes taken from the system (blocks), which may exceed what tensors use.
    public func reserved(_ delta: Int) { state.withLock { $0.reserved += delta } }

    /// Starts a new high-water mark from what is in use now.
    public func resetPeak() { state.withLock { $0.peak = $0.current } }

    public var statistics: MemoryStatistics {
        state.withLock { MemoryStatistics(heap: heap, currentBytes: $0.current, peakBytes: $0.peak, reservedBytes: $0.reserved) }
    }
}
