import Glibc

/// Host memory for large, file-sized things (a tensor, a staging copy of one). Swift's own
/// allocator traps when the host cannot give the memory; this is an out-of-memory error instead, so
/// a process embedding the engine (a Python interpreter) outlives a checkpoint too large for it.
// The pointer is immutable after init; whoever writes the bytes orders those writes (one owner at a time).
public final class HostBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int

    public init(byteCount: Int, for what: String) throws {
        pointer = try Self.allocate(byteCount: byteCount, for: what)
        self.byteCount = byteCount
    }

    deinit { free(pointer) }

    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: pointer, count: byteCount) }

    /// `byteCount` bytes aligned to 64 (for SIMD loads), owned by the caller (`free`), or an
    /// out-of-memory error naming `what` they were for.
    public static func allocate(byteCount: Int, for what: String) throws -> UnsafeMutableRawPointer {
        var memory: UnsafeMutableRawPointer?
        guard byteCount >= 0, posix_memalign(&memory, 64, Swift.max(byteCount, 1)) == 0, let memory else {
            throw LowRankError(.outOfMemory, "cannot allocate \(byteCount) bytes of host memory for \(what)")
        }
        return memory
    }
}
