import COpenBLAS
import Dispatch
import Glibc
import LowRankCore
import Synchronization

/// Host memory for one tensor, 64-byte aligned for SIMD loads.
// The pointer never changes; the bytes behind it are written only by ops the plan orders.
final class CPUStorage: TensorStorage, @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int
    private let onFree: @Sendable (Int) -> Void

    /// Fails, rather than trapping as Swift's allocator does, when the host cannot give the
    /// memory: a process embedding the engine (a Python interpreter) must outlive a shape too large.
    init(byteCount: Int, onFree: @escaping @Sendable (Int) -> Void) throws {
        let memory = try HostBuffer.allocate(byteCount: byteCount, for: "a tensor; use smaller shapes")
        memset(memory, 0, byteCount)
        pointer = memory
        self.byteCount = byteCount
        self.onFree = onFree
    }

    deinit {
        free(pointer)
        onFree(byteCount)
    }
}

/// Runs every op on the host: OpenBLAS sgemm for products, Swift SIMD loops for the rest, on all
/// cores where the work is large enough to pay for the fork.
public final class CPUBackend: Backend, MatmulPrecisionSetting, Sendable {
    public let identifier = "cpu"
    public let deviceName: String
    public let threads: Int
    /// Tensors and the f32 temporaries ops work in, so that peaks include an op's transients.
    let usage = MemoryCounter(heap: "host")
    let profiler = OpProfiler()

    private let precision: Mutex<MatmulPrecision>
    /// `medium` runs products with a bfloat16 weight in bfloat16 (`CPUBackend+BFloat16Products.swift`)
    /// where the CPU has AVX-512 BF16; `highest` and `high` keep every product in f32. From
    /// `LOWRANK_MATMUL_PRECISION` at first (`Engine.backend` reports a bad value), else `defaultMatmulPrecision`.
    public var matmulPrecision: MatmulPrecision {
        get { precision.withLock { $0 } }
        set { precision.withLock { $0 = newValue } }
    }

    /// `medium`: a bfloat16 model's frozen products as PyTorch computes that model (activations
    /// rounded to bfloat16, f32 sums), and at the bf16 kernel's speed; f16, quantized and f32 weights
    /// compute as under `highest`.
    public static let defaultMatmulPrecision = MatmulPrecision.medium

    public init(threads: Int? = nil, matmulPrecision: MatmulPrecision? = nil) {
        let cores = threads ?? ProcessInfoCores.active
        self.threads = Swift.max(1, cores)
        precision = Mutex(matmulPrecision ?? (try? MatmulPrecision.fromEnvironment()) ?? Self.defaultMatmulPrecision)
        // One pool of threads: `sgemm` splits its products over this backend's threads itself, so
        // OpenBLAS's own workers, which spin between calls, never start.
        OpenBLASThreads.useOne()
        deviceName = "CPU (OpenBLAS, \(self.threads) threads)"
    }

    public func makeStorage(byteCount: Int) throws -> any TensorStorage {
        let storage = try CPUStorage(byteCount: byteCount) { [usage] n in
            usage.freed(n)
            usage.reserved(-n)
        }
        usage.allocated(byteCount)
        usage.reserved(byteCount)
        return storage
    }

    public func write(_ bytes: UnsafeRawBufferPointer, to storage: any TensorStorage, offset: Int) throws {
        let s = try host(storage)
        precondition(offset + bytes.count <= s.byteCount, "write past the end of a tensor")
        (s.pointer + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    }

    public func read(_ storage: any TensorStorage, offset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
        let s = try host(storage)
        precondition(offset + bytes.count <= s.byteCount, "read past the end of a tensor")
        bytes.baseAddress!.copyMemory(from: s.pointer + offset, byteCount: bytes.count)
    }

    public func synchronize() throws {}

    public func memoryStatistics() -> [MemoryStatistics] {
        [usage.statistics]
    }

    public func resetPeakMemory() { usage.resetPeak() }

    public func run(_ op: Op, inputs: [Tensor], outputs: [Tensor]) throws {
        try profiler.measure(op.kind) { try execute(op, inputs, outputs) }
    }

    public func startProfiling() { profiler.start() }

    /// Each op kind's wall time (ops run synchronously here).
    public func stopProfiling() -> BackendProfile { BackendProfile(backend: identifier, ops: profiler.stop(), timing: "wall clock") }

    private func execute(_ op: Op, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        switch op {
        case .matmul(let o): try matmul(o, inputs, outputs[0])
        case .add: try elementwise(inputs, outputs[0], +)
        case .mul: try elementwise(inputs, outputs[0], *)
        case .scale(let factor): try scale(inputs[0], factor, outputs[0])
        case .scaleRows: try scaleRows(inputs[0], inputs[1], outputs[0])
        case .rowSumOfSquares: try rowReduce(inputs[0], outputs[0], root: false)
        case .rowL2Norm: try rowReduce(inputs[0], outputs[0], root: true)
        case .cast: try cast(inputs[0], outputs[0])
        case .loraForward(let o): try loraForward(o, LoRAForwardOperands(inputs, o), outputs)
        case .loraBackward(let o): try loraBackward(o, LoRABackwardOperands(inputs), outputs)
        case .doraNorm(let scale): try doraNorm(scale: scale, DoRANormOperands(inputs), outputs)
        case .doraForward(let o): try doraForward(o, DoRAForwardOperands(inputs, o), DoRAForwardResults(outputs, o))
        case .doraBackward(let o): try doraBackward(o, DoRABackwardOperands(inputs, o), DoRABackwardResults(outputs, o))
        case .doraCompose(let scale): try doraCompose(scale: scale, inputs, outputs[0])
        case .activation(let f): try activation(f, inputs[0], outputs[0])
        case .activationBackward(let f): try activationBackward(f, inputs[0], inputs[1], outputs[0])
        case .gatedActivation(let f): try gatedActivation(f, gate: inputs[0], up: inputs[1], outputs[0])
        case .gatedActivationBackward(let f): try gatedActivationBackward(f, gate: inputs[0], up: inputs[1], inputs[2], outputs[0], outputs[1])
        case .meanSquaredError: try meanSquaredError(inputs[0], inputs[1], outputs[0])
        case .meanSquaredErrorBackward: try meanSquaredErrorBackward(inputs[0], inputs[1], inputs[2], outputs[0])
        case .clipCoefficient(let maxNorm): try clipCoefficient(inputs[0], maxNorm, outputs[0])
        case .transpose(let axes): try transpose(axes, inputs[0], outputs[0])
        case .embedding: try embedding(inputs[0], inputs[1], outputs[0])
        case .embeddingBackward: try embeddingBackward(inputs[0], inputs[1], outputs[0])
        case .rmsNorm(let epsilon) where inputs.count == 3:
            // The sum rounded into its dtype first, as `add` then `rms_norm` would see it.
            try elementwise([inputs[0], inputs[2]], outputs[2], +)
            try rmsNorm(epsilon, outputs[2], inputs[1], outputs)
        case .rmsNorm(let epsilon): try rmsNorm(epsilon, inputs[0], inputs[1], outputs)
        case .rmsNormBackward: try rmsNormBackward(RMSNormBackwardOperands(inputs), outputs)
        case .rope(let inverse): try rope(inverse: inverse, inputs, outputs)
        case .attention(let o): try attention(o, inputs, outputs)
        case .attentionBackward(let o): try attentionBackward(o, AttentionBackwardOperands(inputs), outputs)
        case .cachedAttention(let scale): try cachedAttention(scale: scale, CachedAttentionOperands(inputs), outputs)
        case .crossEntropy(let ignoreIndex): try crossEntropy(ignoreIndex, inputs[0], inputs[1], outputs)
        case .crossEntropyBackward(let ignoreIndex): try crossEntropyBackward(ignoreIndex, CrossEntropyBackwardOperands(inputs), outputs[0])
        case .linearCrossEntropy(let o): try linearCrossEntropy(o, inputs, outputs)
        case .linearCrossEntropyBackward(let o, let weightGradient):
            try linearCrossEntropyBackward(o, weightGradient: weightGradient, LinearCrossEntropyBackwardOperands(inputs), outputs)
        case .adamW(let o): try adamW(o, inputs, outputs)
        case .multiTensorAdamW(let o): try multiTensorAdamW(o, inputs, outputs)
        }
    }

    func host(_ storage: any TensorStorage) throws -> CPUStorage {
        guard let s = storage as? CPUStorage else {
            throw LowRankError(.invalidArgument, "a tensor of another backend was passed to the CPU backend")
        }
        return s
    }

    func pointer(_ t: Tensor) -> UnsafeMutableRawPointer { (t.storage as! CPUStorage).pointer }

    /// Splits `0..<count` into one contiguous range per thread when there is enough work:
    /// `minimumPerThread` items each at least (the grain), so that a thread's share outweighs
    /// waking it, and never more parts than threads, so that 2 cores and 64 both get one range each.
    func parallelFor(_ count: Int, minimumPerThread: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
        let parts = Swift.min(threads, Swift.max(1, count / minimumPerThread))
        if parts <= 1 { body(0..<count); return }
        let chunk = (count + parts - 1) / parts
        // The ranges are disjoint, so the raw pointers the body captures are never shared between threads.
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: parts) { p in
                let lo = p * chunk, hi = Swift.min(count, lo + chunk)
                if lo < hi { shared.value(lo..<hi) }
            }
        }
    }

    /// `parallelFor` over rows of `columns` elements, with a grain of about `elementsPerThread` elements.
    func parallelForRows(_ rows: Int, columns: Int, elementsPerThread: Int = 1 << 14, _ body: (Range<Int>) -> Void) {
        parallelFor(rows, minimumPerThread: Swift.max(1, elementsPerThread / Swift.max(columns, 1)), body)
    }
}

/// Carries a non-Sendable closure into `concurrentPerform`, safe only as `parallelFor` uses it:
/// each thread gets a disjoint range.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// OpenBLAS's thread count is one while CPU backends exist (`CPUBackend.init`): their products split
/// over the backend's own threads. The float64 decompositions of adapter initialisation (SVD, QR,
/// CorDA's inverse, its check and its covariances), which run once and outside any step, take every core for their call.
/// Concurrent calls share one widening: the first in sets every core, the last out restores the
/// count it found, so callers overlapping on different threads cannot leave OpenBLAS widened.
public enum OpenBLASThreads {
    /// Callers inside `allCores`, and the thread count the first of them found.
    private static let widened = Mutex<(callers: Int, before: Int32)>((0, 1))

    /// The threads OpenBLAS runs a call on now.
    public static var current: Int { Int(openblas_get_num_threads()) }

    /// One thread from now on, or once the widened calls in flight end.
    static func useOne() {
        widened.withLock {
            if $0.callers == 0 { openblas_set_num_threads(1) } else { $0.before = 1 }
        }
    }

    public static func allCores<R>(_ body: () throws -> R) rethrows -> R {
        widened.withLock {
            if $0.callers == 0 {
                $0.before = openblas_get_num_threads()
                openblas_set_num_threads(Int32(ProcessInfoCores.active))
            }
            $0.callers += 1
        }
        defer {
            widened.withLock {
                $0.callers -= 1
                if $0.callers == 0 { openblas_set_num_threads($0.before) }
            }
        }
        return try body()
    }
}

enum ProcessInfoCores {
    static var active: Int {
        let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return n > 0 ? n : 1
    }
}
