/// Memory a backend holds for one tensor. Backends subclass it; the core only moves it around.
public protocol TensorStorage: AnyObject, Sendable {
    var byteCount: Int { get }
}

/// Bytes in use on one memory heap, now and at the high-water mark.
public struct MemoryStatistics: Sendable, Codable {
    public var heap: String
    public var currentBytes: Int
    public var peakBytes: Int
    public var reservedBytes: Int

    public init(heap: String, currentBytes: Int, peakBytes: Int, reservedBytes: Int) {
        self.heap = heap
        self.currentBytes = currentBytes
        self.peakBytes = peakBytes
        self.reservedBytes = reservedBytes
    }
}

/// The two bounds of a device's roofline, as its own probe kernels measured them: streaming
/// memory bandwidth and f32 multiply-add throughput.
public struct DevicePeaks: Sendable, Codable {
    public var bytesPerSecond: Double
    public var flopsPerSecond: Double
    /// How each was measured, in words.
    public var method: String

    public init(bytesPerSecond: Double, flopsPerSecond: Double, method: String) {
        self.bytesPerSecond = bytesPerSecond
        self.flopsPerSecond = flopsPerSecond
        self.method = method
    }
}

/// Something that holds tensors and runs ops on them: the CPU, or one Vulkan device.
/// Ops reach a backend already validated by `Op.outputs(for:)`; a backend only checks what depends
/// on the device (features, limits).
public protocol Backend: AnyObject, Sendable {
    /// Stable identifier: "cpu", "vulkan:0".
    var identifier: String { get }
    /// Human-readable device name.
    var deviceName: String { get }
    /// The driver and library versions results depend on ("OpenBLAS 0.3.21 ...", "NVIDIA 550.54").
    var driverDescription: String { get }

    func makeStorage(byteCount: Int) throws -> any TensorStorage
    func write(_ bytes: UnsafeRawBufferPointer, to storage: any TensorStorage, offset: Int) throws
    func read(_ storage: any TensorStorage, offset: Int, into bytes: UnsafeMutableRawBufferPointer) throws
    /// Runs `op`. Outputs are allocated by the caller with the shapes `op.outputs(for:)` gave.
    func run(_ op: Op, inputs: [Tensor], outputs: [Tensor]) throws
    /// Runs `op` with its dropout seeds mixed with a run's `seed` (`Op.reseeded`), as a plan runs
    /// each step: a GPU records `op` as it is and reads `seed` from a buffer, so that every step
    /// records the same commands.
    func run(_ op: Op, reseededBy seed: UInt32, inputs: [Tensor], outputs: [Tensor]) throws
    /// Runs `body`, one repeat of the ops `owner` runs again and again on the same shapes (a
    /// plan's run, an optimizer's step): the backend may keep what those ops allocate for
    /// themselves (a GPU encoder's scratch) for the next repeat, which then binds the same memory,
    /// until `releaseRepeats(of:)`. `replayable` says that nothing but what it lists differs
    /// between repeats: a GPU then records the commands once per set of input tensors and submits
    /// them again on later repeats without calling `body`.
    func run(repeating owner: ObjectIdentifier, replayable: ReplayableRepeat?, _ body: () throws -> Void) throws
    /// Frees what `run(repeating:_:)` kept for `owner`.
    func releaseRepeats(of owner: ObjectIdentifier)
    /// The bytes `run(repeating:_:)` keeps for a repeat of `steps` (each an op with its operands'
    /// and results' descriptors), known without running them: a GPU encoder's scratch, as its
    /// allocator rounds it; 0 where ops free what they allocate as they end.
    func repeatScratchBytes(_ steps: [(op: Op, inputs: [TensorDescriptor], outputs: [TensorDescriptor])]) throws -> Int
    /// Waits until every op issued so far has finished.
    func synchronize() throws
    func memoryStatistics() -> [MemoryStatistics]
    /// Starts a new high-water mark for `memoryStatistics()` from what is in use now.
    func resetPeakMemory()
    /// Runs probe kernels (a streaming copy, then independent multiply-add chains or the best
    /// matmul the backend has) for about a second and reports what they reached.
    func measurePeaks() throws -> DevicePeaks
    /// Why this backend cannot run `op` on inputs like these (a kernel it lacks, a limit or a
    /// feature of the device), or nil when it can. A graph runs such an op on its fallback backend.
    func unsupportedReason(_ op: Op, inputs: [TensorDescriptor]) -> String?
    /// Runs `body` and returns the seconds of device work it issued: timestamps where the device
    /// has them, else the monotonic clock around it with the backend synchronized on both sides.
    func deviceSeconds(_ body: () throws -> Void) throws -> Double
    /// Starts the work issued so far without waiting for it (a GPU submits the commands it
    /// recorded); reads still wait for what they read.
    func commit() throws
    /// Starts counting and timing every op this backend runs, by kind (and on a GPU its dispatches,
    /// barriers and submissions), until `stopProfiling()` returns them. Off, it costs nothing.
    func startProfiling() throws
    /// Waits for the work issued so far and returns what ran since `startProfiling()`.
    func stopProfiling() throws -> BackendProfile
}

extension Backend {
    public func run(_ op: Op, reseededBy seed: UInt32, inputs: [Tensor], outputs: [Tensor]) throws {
        try run(op.reseeded(seed), inputs: inputs, outputs: outputs)
    }

    public func run(repeating owner: ObjectIdentifier, replayable: ReplayableRepeat?, _ body: () throws -> Void) throws {
        try body()
    }

    public func releaseRepeats(of owner: ObjectIdentifier) {}

    public func repeatScratchBytes(_ steps: [(op: Op, inputs: [TensorDescriptor], outputs: [TensorDescriptor])]) throws -> Int { 0 }

    public func unsupportedReason(_ op: Op, inputs: [TensorDescriptor]) -> String? { nil }

    public func commit() throws {}

    public func startProfiling() throws {
        throw LowRankError(.unsupported, "\(identifier) does not profile its ops")
    }

    public func stopProfiling() throws -> BackendProfile {
        throw LowRankError(.unsupported, "\(identifier) does not profile its ops")
    }

    public func deviceSeconds(_ body: () throws -> Void) throws -> Double {
        try wallSeconds(body)
    }

    /// The monotonic clock around `body`, synchronized before and after.
    public func wallSeconds(_ body: () throws -> Void) throws -> Double {
        try synchronize()
        let clock = ContinuousClock(), start = clock.now
        try body()
        try synchronize()
        return (clock.now - start).inSeconds
    }
}

/// What differs between the repeats of a replayable run (`Backend.run(repeating:replayable:_:)`):
/// which tensors its inputs are, its dropout seed, and the values of the AdamW step it ends with
/// (`ExecutionPlan.run(_:seed:replay:then:)`), which a GPU reads from its step scalars, so that a
/// training step with its optimizer is one recording.
public struct ReplayableRepeat {
    public var inputs: [Tensor]
    public var seed: UInt32
    /// The step the run ends with, and who takes it: a recording of the run with it is not one
    /// without it, nor one of another optimizer's.
    public var adamW: (options: MultiTensorAdamWOptions, optimizer: ObjectIdentifier)?

    public init(inputs: [Tensor], seed: UInt32, adamW: (options: MultiTensorAdamWOptions, optimizer: ObjectIdentifier)? = nil) {
        (self.inputs, self.seed, self.adamW) = (inputs, seed, adamW)
    }
}
