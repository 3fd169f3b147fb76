import CVulkan
import Glibc
import LowRankCore
import Synchronization

/// One Vulkan device as a backend. Ops are recorded into a command stream and run when their
/// results are read (or the stream fills up); `synchronize()` runs what is pending.
// Safe to share: the Vulkan handles are immutable identifiers and the command stream is used only under `lock`.
public final class VulkanBackend: Backend, MatmulPrecisionSetting, @unchecked Sendable {
    public let info: VulkanDeviceInfo
    public let instance: VulkanInstance
    public var identifier: String { "vulkan:\(info.index)" }
    public var deviceName: String { info.name }

    let device: VkDevice
    let allocator: VulkanAllocator
    let pipelines: PipelineStore
    let stream: CommandStream
    /// The most bytes one storage-buffer binding covers (`maxStorageBufferRange`); larger tensors are
    /// bound as several windows. Tests lower it to exercise the splitting on small shapes.
    let maxBindingBytes: Int
    /// Ops this backend declines, as if it had no kernel for them: how tests
    /// exercise a graph's fallback to the CPU.
    let disabledOps: Set<Op.Kind>
    /// The cooperative-matrix GEMM's tiling here, or why there is none (`MatmulPath`).
    public let coopmat: Result<CoopmatTile, CoopmatUnavailable>
    var coopmatTile: CoopmatTile? { try? coopmat.get() }
    private let precision: Mutex<MatmulPrecision>
    /// Whether f32 matmul operands may use cooperative matrices; from `LOWRANK_MATMUL_PRECISION` at first.
    public var matmulPrecision: MatmulPrecision {
        get { precision.withLock { $0 } }
        set { precision.withLock { $0 = newValue } }
    }
    let matmulPathCounts = Mutex<[MatmulPath: Int]>([:])
    private let coopmatEnabled = Mutex(true)
    /// Whether matmuls may take the cooperative-matrix path where `MatmulPath` would choose it; off,
    /// every matmul runs on the scalar kernel (how `lowrank-bench --suite matmul` compares the paths).
    public var cooperativeMatricesEnabled: Bool {
        get { coopmatEnabled.withLock { $0 } }
        set { coopmatEnabled.withLock { $0 = newValue } }
    }
    private let computeUnits = Mutex(32)
    /// The compute units split-K fills (`SplitK.count`). Vulkan's core API does not report them
    /// (ggml-vulkan reads vendor extensions and does not split without them); this assumes a mid-sized
    /// GPU's 32. Tests set it to reach the split at small shapes.
    var splitKCores: Int {
        get { computeUnits.withLock { $0 } }
        set { computeUnits.withLock { $0 = newValue } }
    }
    private let quadSharing = Mutex<Bool?>(nil)
    /// Whether the scalar matmul shares A's values across subgroup quads (`MatmulKernel.quadSharedA`): by
    /// default where quad permutes are cheap (`VulkanDeviceInfo.hasCheapQuadPermutes`); tests set it to run
    /// those variants on other devices.
    var matmulSharesAInQuads: Bool {
        get { quadSharing.withLock { $0 } ?? info.hasCheapQuadPermutes }
        set { quadSharing.withLock { $0 = newValue } }
    }
    /// Host-visible memory that transfers go through when tensors are not host-visible.
    private let staging: VulkanAllocator?
    let lock = Mutex(())
    let profiler = OpProfiler()
    /// The encoder scratch kept for each owner of repeated ops (`run(repeating:_:)`), and that of
    /// the repeat being encoded; under `lock`.
    private var keptScratch: [ObjectIdentifier: RepeatScratch] = [:]
    /// By thread: ops another thread runs meanwhile (on a backend shared between threads) neither
    /// take a repeat's scratch nor join its recording.
    private var repeatScratch: [pthread_t: RepeatScratch] = [:]
    private var capturingThread: pthread_t?
    /// By thread, while `repeatScratchBytes` encodes ops to size their scratch: where operands and
    /// scratch are made; nothing is dispatched.
    private var sizing: [pthread_t: PlanningBackend] = [:]
    private let replays = Mutex(true)
    /// Whether replayable repeats replay their recordings; off, each is encoded afresh (how tests
    /// compare the two).
    var replaysRepeats: Bool {
        get { replays.withLock { $0 } }
        set { replays.withLock { $0 = newValue } }
    }
    /// The command counts when profiling started; read and written under `lock`.
    private var profileStart = (dispatches: 0, barriers: 0, submissions: 0, waits: 0, descriptorSets: 0)

    /// Opens device `index` of `instance.devices`; `bindingLimit` lowers the bytes one binding may
    /// cover below the device's `maxStorageBufferRange` (for tests of the splitting), and
    /// `disabledOps` names ops to decline (for tests of the fallback).
    public convenience init(instance: VulkanInstance, index: Int, bindingLimit: Int? = nil, disabledOps: Set<Op.Kind> = []) throws {
        try self.init(instance: instance, index: index, bindingLimit: bindingLimit, disabledOps: disabledOps, shaders: .shared)
    }

    /// As the public init, with the shader compiler (and so the cache folder) given: how tests
    /// reach a cache of their own; `stagedTransfers` moves every transfer through staging memory
    /// even where tensors are host-visible (how tests reach a discrete GPU's path on lavapipe).
    init(instance: VulkanInstance, index: Int, bindingLimit: Int? = nil, disabledOps: Set<Op.Kind> = [], shaders: ShaderCompiler,
         stagedTransfers: Bool = false) throws {
        guard instance.devices.indices.contains(index) else {
            throw LowRankError(.deviceUnavailable, "there is no Vulkan device \(index)",
                               context: [("available", instance.devices.map { "\($0.index): \($0.name)" }.joined(separator: "; "))])
        }
        self.instance = instance
        info = instance.devices[index]
        maxBindingBytes = min(bindingLimit ?? .max, info.limits.maxStorageBufferRange)
        coopmat = CoopmatTile.choose(for: info)
        precision = Mutex(try MatmulPrecision.fromEnvironment() ?? .highest)
        self.disabledOps = disabledOps
        let physical = instance.physicalDevices[index]

        var familyCount: UInt32 = 0
        vkGetPhysicalDeviceQueueFamilyProperties(physical, &familyCount, nil)
        var families = [VkQueueFamilyProperties](repeating: VkQueueFamilyProperties(), count: Int(familyCount))
        vkGetPhysicalDeviceQueueFamilyProperties(physical, &familyCount, &families)
        // Prefer a compute queue without graphics (an async-compute family), else any compute queue.
        let compute = families.indices.filter { families[$0].queueFlags & VK_QUEUE_COMPUTE_BIT.rawValue != 0 }
        guard let family = compute.first(where: { families[$0].queueFlags & VK_QUEUE_GRAPHICS_BIT.rawValue == 0 }) ?? compute.first else {
            throw LowRankError(.deviceUnavailable, "\(info.name) has no compute queue")
        }
        let timestamps = families[family].timestampValidBits > 0

        let supported = DeviceFeatureSet(physicalDevice: physical)
        guard supported.v11.storageBuffer16BitAccess != 0 else {
            throw LowRankError(.unsupported, "\(info.name) lacks 16-bit storage buffers, which every kernel's f16/bf16 path uses")
        }
        var v11 = VkPhysicalDeviceVulkan11Features()
        v11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES
        v11.storageBuffer16BitAccess = 1
        var v12 = VkPhysicalDeviceVulkan12Features()
        v12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES
        v12.shaderFloat16 = supported.v12.shaderFloat16
        v12.shaderInt8 = supported.v12.shaderInt8
        v12.storageBuffer8BitAccess = supported.v12.storageBuffer8BitAccess
        v12.vulkanMemoryModel = supported.v12.vulkanMemoryModel
        // Cooperative matrices when the device has them (the coopmat GEMMs; MatmulPath chooses).
        var cooperativeMatrix = VkPhysicalDeviceCooperativeMatrixFeaturesKHR()
        cooperativeMatrix.sType = cvk_structure_type_cooperative_matrix_features
        cooperativeMatrix.cooperativeMatrix = supported.cooperativeMatrix.cooperativeMatrix
        var fullSubgroups = VkPhysicalDeviceSubgroupSizeControlFeatures()
        fullSubgroups.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES
        fullSubgroups.computeFullSubgroups = 1
        let usesCooperativeMatrices = (try? coopmat.get()) != nil
        // Full subgroups wherever the device has them, for every kernel that asks (`Kernel.requiresFullSubgroups`);
        // the cooperative-matrix path is only chosen on devices that have them.
        let enablesFullSubgroups = info.features.fullSubgroups
        let extensions = (usesCooperativeMatrices ? [VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME] : [])
            + (enablesFullSubgroups ? [DeviceFeatureSet.subgroupSizeControlExtension] : [])
        var supportedFeatures = VkPhysicalDeviceFeatures2()
        supportedFeatures.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        vkGetPhysicalDeviceFeatures2(physical, &supportedFeatures)
        var features = VkPhysicalDeviceFeatures2()
        features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        features.features.shaderInt16 = supportedFeatures.features.shaderInt16
        guard supportedFeatures.features.shaderInt16 != 0 else {
            throw LowRankError(.unsupported, "\(info.name) lacks shaderInt16, which the bf16 conversions use")
        }

        var priority: Float = 1
        var created: VkDevice?
        let name = info.name
        try withUnsafeMutablePointer(to: &v11) { p11 in
            try withUnsafeMutablePointer(to: &v12) { p12 in
                try withUnsafeMutablePointer(to: &cooperativeMatrix) { pcm in
                    try withUnsafeMutablePointer(to: &fullSubgroups) { pfs in
                        try withUnsafeMutablePointer(to: &features) { pf in
                            try withUnsafePointer(to: &priority) { pp in
                                var queueInfo = VkDeviceQueueCreateInfo()
                                queueInfo.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
                                queueInfo.queueFamilyIndex = UInt32(family)
                                queueInfo.queueCount = 1
                                queueInfo.pQueuePriorities = pp
                                try withUnsafePointer(to: &queueInfo) { pq in
                                    try withCStringArray(extensions) { extensionNames in
                                        p11.pointee.pNext = UnsafeMutableRawPointer(p12)
                                        if usesCooperativeMatrices {
                                            p12.pointee.pNext = UnsafeMutableRawPointer(pcm)
                                            pcm.pointee.pNext = enablesFullSubgroups ? UnsafeMutableRawPointer(pfs) : nil
                                        } else if enablesFullSubgroups {
                                            p12.pointee.pNext = UnsafeMutableRawPointer(pfs)
                                        }
                                        pf.pointee.pNext = UnsafeMutableRawPointer(p11)
                                        var deviceInfo = VkDeviceCreateInfo()
                                        deviceInfo.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                                        deviceInfo.pNext = UnsafeRawPointer(pf)
                                        deviceInfo.queueCreateInfoCount = 1
                                        deviceInfo.pQueueCreateInfos = pq
                                        deviceInfo.enabledExtensionCount = UInt32(extensions.count)
                                        deviceInfo.ppEnabledExtensionNames = extensionNames
                                        try vkCheck(vkCreateDevice(physical, &deviceInfo, nil, &created), "vkCreateDevice(\(name))")
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        device = created!
        var queue: VkQueue?
        vkGetDeviceQueue(device, UInt32(family), 0, &queue)

        let memory = MemoryChoice(physical: physical, staged: stagedTransfers)
        allocator = VulkanAllocator(device: device, memoryTypeIndex: memory.deviceType, hostVisible: memory.deviceIsHostVisible,
                                    heapName: memory.deviceIsHostVisible ? "device (host-visible)" : "device", info: info)
        if !memory.deviceIsHostVisible, let stagingType = memory.stagingType {
            staging = VulkanAllocator(device: device, memoryTypeIndex: stagingType, hostVisible: true, heapName: "staging", info: info)
        } else {
            staging = nil
        }
        pipelines = try PipelineStore(device: device, info: info, compiler: shaders)
        let stepScalars = try StepScalars(device: device, storage: try allocator.allocate(StepScalars.byteCount), layout: pipelines.stepScalarsLayout)
        stream = try CommandStream(device: device, queue: queue!, queueFamily: UInt32(family),
                                   timestampPeriod: info.limits.timestampPeriodNanoseconds, timestamps: timestamps, stepScalars: stepScalars)
    }

    deinit {
        stream.destroy()
        pipelines.destroy()
        _ = vkDeviceWaitIdle(device)
        // Every tensor holds its backend, so none is alive here and the blocks are all free.
        allocator.destroyBlocks()
        staging?.destroyBlocks()
        vkDestroyDevice(device, nil)
    }

    // MARK: Backend

    public func makeStorage(byteCount: Int) throws -> any TensorStorage {
        try allocator.allocate(byteCount)
    }

    func vulkan(_ storage: any TensorStorage) throws -> VulkanStorage {
        guard let s = storage as? VulkanStorage, s.allocator === allocator else {
            throw LowRankError(.invalidArgument, "a tensor of another backend was passed to \(identifier)")
        }
        return s
    }

    public func write(_ bytes: UnsafeRawBufferPointer, to storage: any TensorStorage, offset: Int) throws {
        let s = try vulkan(storage)
        precondition(offset + bytes.count <= s.byteCount, "write past the end of a tensor")
        try lock.withLock { _ in
            if let mapped = s.mapped {
                // Recorded commands that touch this tensor must see its old contents.
                try stream.finish(touching: s)
                (mapped + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            } else {
                try upload(bytes, to: s, offset: offset)
            }
        }
    }

    /// The most staging bytes uploads hold before one waits for them to be copied.
    static let stagingBudget = 64 << 20

    /// Copies `bytes` in through staging memory with copies recorded into the stream, which orders
    /// them after the commands before and before those after: nothing waits unless the uploads not
    /// yet copied would hold more than `stagingBudget` (a staging range is freed when its
    /// submission completes).
    private func upload(_ bytes: UnsafeRawBufferPointer, to s: VulkanStorage, offset: Int) throws {
        guard let staging else { throw LowRankError(.unsupported, "\(info.name) has no host-visible memory to stage transfers through") }
        var done = 0
        while done < bytes.count {
            let n = min(Self.stagingBudget, bytes.count - done)
            if staging.counter.statistics.currentBytes + n > Self.stagingBudget { try stream.submitAndWait() }
            let stage = try staging.allocate(n)
            stage.mapped!.copyMemory(from: bytes.baseAddress! + done, byteCount: n)
            try stream.copy(from: BufferAccess(stage, writes: false, size: n), to: BufferAccess(s, writes: true, offset: offset + done, size: n))
            done += n
        }
    }

    public func read(_ storage: any TensorStorage, offset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
        let s = try vulkan(storage)
        precondition(offset + bytes.count <= s.byteCount, "read past the end of a tensor")
        try lock.withLock { _ in
            if let mapped = s.mapped {
                try stream.finish(touching: s, writesOnly: true)
                bytes.baseAddress!.copyMemory(from: mapped + offset, byteCount: bytes.count)
            } else {
                try transfer(bytes.count) { stage, done, n in
                    try stream.copy(from: BufferAccess(s, writes: false, offset: offset + done, size: n),
                                    to: BufferAccess(stage, writes: true, size: n))
                    try stream.submitAndWait()
                    (bytes.baseAddress! + done).copyMemory(from: stage.mapped!, byteCount: n)
                }
            }
        }
    }

    /// Moves `count` bytes through staging memory in chunks of at most 64 MiB.
    private func transfer(_ count: Int, _ chunk: (VulkanStorage, Int, Int) throws -> Void) throws {
        guard let staging else { throw LowRankError(.unsupported, "\(info.name) has no host-visible memory to stage transfers through") }
        let stage = try staging.allocate(min(count, 64 << 20))
        var done = 0
        while done < count {
            let n = min(stage.byteCount, count - done)
            try chunk(stage, done, n)
            done += n
        }
    }

    public func commit() throws {
        try lock.withLock { _ in try stream.submit() }
    }

    public func synchronize() throws {
        try lock.withLock { _ in try stream.submitAndWait() }
    }

    public func memoryStatistics() -> [MemoryStatistics] {
        [allocator.counter.statistics] + (staging.map { [$0.counter.statistics] } ?? [])
    }

    /// Starts a new high-water mark for `memoryStatistics()`.
    public func resetPeakMemory() { allocator.counter.resetPeak() }

    /// Per-dispatch device times from timestamp queries, while enabled.
    public var profiling: Bool {
        get { lock.withLock { _ in stream.profiling } }
        set { lock.withLock { _ in stream.profiling = newValue } }
    }

    public var supportsTimestamps: Bool { stream.hasTimestamps }

    /// The sum of the dispatch times `body` records, from timestamp queries; the wall clock where
    /// the queue has no timestamps.
    public func deviceSeconds(_ body: () throws -> Void) throws -> Double {
        guard supportsTimestamps else { return try wallSeconds(body) }
        return try dispatchTimings(body).reduce(0) { $0 + $1.milliseconds } / 1e3
    }

    /// The device time of each dispatch `body` records (the queue must have timestamps).
    public func dispatchTimings(_ body: () throws -> Void) throws -> [DispatchTiming] {
        try synchronize()
        _ = drainTimings()
        profiling = true
        defer { profiling = false }
        try body()
        try synchronize()
        return drainTimings()
    }

    public func unsupportedReason(_ op: Op, inputs: [TensorDescriptor]) -> String? {
        if disabledOps.contains(op.kind) { return "\(op.name) is disabled on this backend" }
        switch op {
        case .attention: return attentionProblem(headDim: inputs[0].shape[2])
        case .attentionBackward: return attentionProblem(headDim: AttentionBackwardOperands(inputs).q.shape[2])
        case .cachedAttention: return attentionProblem(headDim: inputs[0].shape[2])
        case .embeddingBackward(let vocabulary):
            let bytes = max(vocabulary * inputs[1].shape[1] * DType.f32.byteSize, inputs[1].byteCount)
            return bytes > maxBindingBytes ? "its gradient of \(bytes) bytes exceeds one binding (\(maxBindingBytes) bytes); the CPU backend sums the rows" : nil
        default:
            return nil
        }
    }

    /// Returns and forgets the dispatch timings collected so far (run `synchronize()` first).
    public func drainTimings() -> [DispatchTiming] {
        lock.withLock { _ in defer { stream.timings.removeAll() }; return stream.timings }
    }

    public func run(_ op: Op, inputs: [Tensor], outputs: [Tensor]) throws {
        // An op without dropout reads no run seed: it leaves the one set, so that the optimizer
        // step ending a plan's recorded run changes no step scalar within the recording.
        try run(op, reseededBy: op.drawsDropout ? 0 : nil, inputs: inputs, outputs: outputs)
    }

    /// Records `op` as it is, its kernels mixing `seed` from the step scalars into its dropout seeds.
    public func run(_ op: Op, reseededBy seed: UInt32, inputs: [Tensor], outputs: [Tensor]) throws {
        try run(op, reseededBy: Optional(seed), inputs: inputs, outputs: outputs)
    }

    /// `seed` nil: the op reads none.
    private func run(_ op: Op, reseededBy seed: UInt32?, inputs: [Tensor], outputs: [Tensor]) throws {
        try lock.withLock { _ in
            // Another thread's op ends a capture: that recording is not kept.
            if let capturing = capturingThread, capturing != pthread_self() {
                try stream.submit()
                capturingThread = nil
            }
            if let seed { stream.stepScalars.runSeed = seed }
            repeatScratch[pthread_self()]?.opBegins()
            do {
                if profiler.isOn { try encodeProfiled(op, inputs, outputs) } else { try encode(op, inputs, outputs) }
            } catch let error as LowRankError {
                throw error.adding("op", op.name).adding("device", identifier)
            }
        }
    }

    /// Counts `op`'s dispatches and names the op in their timestamps.
    private func encodeProfiled(_ op: Op, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let before = stream.dispatchCount
        stream.op = op.kind
        defer { stream.op = nil }
        try encode(op, inputs, outputs)
        profiler.add(op.kind, OpTotals(calls: 1, dispatches: stream.dispatchCount - before))
    }

    public func startProfiling() throws {
        try lock.withLock { _ in
            // Timestamps start in a fresh command buffer; work issued before is not counted.
            try stream.submitAndWait()
            stream.timings.removeAll()
            profileStart = (stream.dispatchCount, stream.barrierCount, stream.submissionCount, stream.waitCount, stream.descriptorSets.writtenCount)
            stream.profiling = supportsTimestamps
            profiler.start()
        }
    }

    /// The op kinds' device times are their dispatches' timestamps, summed.
    public func stopProfiling() throws -> BackendProfile {
        try lock.withLock { _ in
            try stream.submitAndWait()
            stream.profiling = false
            var ops = profiler.stop()
            for timing in stream.timings {
                if let kind = timing.op { ops[kind, default: OpTotals()].seconds += timing.milliseconds / 1e3 }
            }
            stream.timings.removeAll()
            let start = profileStart
            return BackendProfile(backend: identifier, ops: ops, dispatches: stream.dispatchCount - start.dispatches,
                                  barriers: stream.barrierCount - start.barriers, submissions: stream.submissionCount - start.submissions,
                                  waits: stream.waitCount - start.waits,
                                  descriptorSetsWritten: stream.descriptorSets.writtenCount - start.descriptorSets, timing: supportsTimestamps ? "timestamps" : "none")
        }
    }

    /// Records `op`. Kernels live in `Shaders/`; each op family's binding is in `VulkanBackend+<Family>.swift`.
    private func encode(_ op: Op, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        switch op {
        case .matmul(let o): try encodeMatmul(o, inputs, outputs[0])
        case .add: try encodeElementwise(.add, inputs, outputs[0])
        case .mul: try encodeElementwise(.mul, inputs, outputs[0])
        case .scale(let factor): try encodeElementwise(.scale, inputs, outputs[0], factor: factor)
        case .cast: try encodeCast(inputs[0], outputs[0])
        case .scaleRows: try encodeElementwise(.scaleRows, inputs, outputs[0])
        case .rowSumOfSquares: try encodeRowReduce(inputs[0], outputs[0], root: false)
        case .rowL2Norm: try encodeRowReduce(inputs[0], outputs[0], root: true)
        case .loraForward(let o): try encodeLoRAForward(o, LoRAForwardOperands(inputs, o), outputs)
        case .loraBackward(let o): try encodeLoRABackward(o, LoRABackwardOperands(inputs), outputs)
        case .doraNorm(let scale): try encodeDoRANorm(scale: scale, DoRANormOperands(inputs), outputs)
        case .doraForward(let o): try encodeDoRAForward(o, DoRAForwardOperands(inputs, o), DoRAForwardResults(outputs, o))
        case .doraBackward(let o): try encodeDoRABackward(o, DoRABackwardOperands(inputs, o), DoRABackwardResults(outputs, o))
        case .doraCompose(let scale): try encodeDoRACompose(scale: scale, inputs, outputs[0])
        case .activation(let f): try encodeActivation(f, x: inputs[0], outputs)
        case .activationBackward(let f): try encodeActivation(f, x: inputs[0], gradient: inputs[1], outputs)
        case .gatedActivation(let f): try encodeActivation(f, x: inputs[0], up: inputs[1], outputs)
        case .gatedActivationBackward(let f): try encodeActivation(f, x: inputs[0], gradient: inputs[2], up: inputs[1], outputs)
        case .meanSquaredError: try encodeMeanSquaredError(inputs, outputs[0])
        case .meanSquaredErrorBackward: try encodeMeanSquaredErrorBackward(inputs, outputs[0])
        case .clipCoefficient(let maxNorm): try encodeElementwise(.clipCoefficient, inputs, outputs[0], factor: maxNorm)
        case .transpose(let axes): try encodeTranspose(axes, inputs[0], outputs[0])
        case .embedding: try encodeEmbedding(inputs, outputs[0])
        case .rmsNorm(let epsilon): try encodeRMSNorm(epsilon, inputs, outputs)
        case .rmsNormBackward: try encodeRMSNormBackward(RMSNormBackwardOperands(inputs), outputs)
        case .rope(let inverse): try encodeRoPE(inverse: inverse, inputs, outputs)
        case .attention(let o): try encodeAttention(o, inputs, outputs)
        case .attentionBackward(let o): try encodeAttentionBackward(o, AttentionBackwardOperands(inputs), outputs)
        case .cachedAttention(let scale): try encodeCachedAttention(scale: scale, CachedAttentionOperands(inputs), outputs)
        case .crossEntropy(let ignoreIndex): try encodeCrossEntropy(ignoreIndex, inputs, outputs)
        case .crossEntropyBackward(let ignoreIndex): try encodeCrossEntropyBackward(ignoreIndex, CrossEntropyBackwardOperands(inputs), outputs[0])
        case .linearCrossEntropy(let o): try encodeLinearCrossEntropy(o, inputs, outputs)
        case .linearCrossEntropyBackward(let o, let weightGradient):
            try encodeLinearCrossEntropyBackward(o, weightGradient: weightGradient, LinearCrossEntropyBackwardOperands(inputs), outputs)
        case .adamW(let o): try encodeAdamW(o, inputs, outputs)
        case .multiTensorAdamW(let o): try encodeMultiTensorAdamW(o, inputs, outputs)
        case .embeddingBackward:
            if let reason = unsupportedReason(op, inputs: inputs.map(\.descriptor)) { throw LowRankError(.unsupported, reason) }
            try encodeEmbeddingBackward(inputs[0], inputs[1], outputs[0])
        }
    }

    /// Records one kernel over `bindings`, each a whole tensor or a window of one.
    func dispatch<K: Kernel>(_ kernel: K, specialization: [UInt32] = [], _ bindings: [TensorBinding], push: K.Push,
                             groups: (Int, Int, Int)) throws {
        if sizing[pthread_self()] != nil { return }
        try dispatch(kernel, specialization: specialization, accesses: try bindings.map(access), push: push, groups: groups)
    }

    /// The range of a buffer that `binding` covers.
    func access(_ binding: TensorBinding) throws -> BufferAccess {
        let size = binding.tensor.dtype.byteSize
        let bytes = binding.elements.count * size
        // Callers split ops into windows that fit; one that does not is a bug in that split.
        guard bytes <= maxBindingBytes else {
            throw LowRankError(.unsupported, "a kernel would bind \(bytes) bytes of \(binding.tensor.descriptor), more than one binding can address on \(info.name)",
                               context: [("maxStorageBufferRange", "\(maxBindingBytes)")])
        }
        return BufferAccess(try vulkan(binding.tensor.storage), writes: binding.writes, offset: binding.elements.lowerBound * size, size: bytes)
    }

    /// Records one kernel over buffer ranges, each within one binding's reach.
    func dispatch<K: Kernel>(_ kernel: K, specialization: [UInt32] = [], accesses: [BufferAccess], push: K.Push,
                             groups: (Int, Int, Int)) throws {
        let limits = info.limits.maxWorkgroupCount
        guard groups.0 <= limits[0], groups.1 <= limits[1], groups.2 <= limits[2] else {
            throw LowRankError(.unsupported, "\(K.shader.rawValue) needs \(groups) workgroups, more than the device's \(limits)")
        }
        guard groups.0 > 0, groups.1 > 0, groups.2 > 0 else { return }
        try stream.dispatch(try pipelines.pipeline(for: kernel, specialization: specialization, bindings: accesses.count), accesses, push: push,
                            groups: (UInt32(groups.0), UInt32(groups.1), UInt32(groups.2)))
    }

    /// Workgroup size of the kernels with one invocation per element (elementwise, compose, dequantize).
    var elementWorkgroupSize: Int { min(256, info.limits.maxWorkgroupInvocations) }

    /// Records such a kernel over `count` elements, in consecutive windows of `window` elements
    /// (one window when nil); `each` gives a window's bindings and push constants. The workgroup
    /// size is the kernel's specialization constant 0.
    func dispatchPerElement<K: Kernel>(_ kernel: K, count: Int, window: Int?,
                                       _ each: (Range<Int>) -> (bindings: [TensorBinding], push: K.Push)) throws {
        let size = elementWorkgroupSize, step = window ?? max(count, 1)
        for start in stride(from: 0, to: count, by: step) {
            let elements = start..<min(start + step, count)
            let (bindings, push) = each(elements)
            try dispatch(kernel, specialization: [UInt32(size)], bindings, push: push,
                         groups: (min((elements.count + size - 1) / size, 65535), 1, 1))
        }
    }

    /// One workgroup per row, rows past 65535 folded into the y dimension (the kernels index rows
    /// as `x + y·numWorkGroups.x`).
    func rowGroups(_ rows: Int) -> (Int, Int, Int) { (min(rows, 65535), (rows + 65534) / 65535, 1) }

    /// Units (elements, or rows of `unit` elements) per window when an op over `tensors` is split
    /// so that every window fits one binding, or nil when one window holds them all. Windows start
    /// on 256-byte boundaries (the strictest `minStorageBufferOffsetAlignment` Vulkan allows) in
    /// every tensor, and in any f32 companion with one value per unit (a row's factor).
    func windowElements(_ tensors: [Tensor], unit: Int = 1) -> Int? {
        guard tensors.contains(where: { $0.byteCount > maxBindingBytes }) else { return nil }
        let widest = tensors.map(\.dtype.byteSize).max() ?? 1
        let step = tensors.map { 256 / gcd(256, unit * $0.dtype.byteSize) }.reduce(64, lcm)
        return max(step, maxBindingBytes / (widest * unit) / step * step)
    }

    /// A device tensor for an op's intermediate results: within a repeat (a plan's run, an
    /// optimizer's step) its owner's (`RepeatScratch`), else a transient one.
    func scratch(_ shape: Shape, _ dtype: DType = .f32) throws -> Tensor {
        let make = { try Tensor(empty: shape, dtype: dtype, on: self.sizing[pthread_self()] ?? self) }
        return try repeatScratch[pthread_self()].map { try $0.tensor(shape, dtype, make: make) } ?? make()
    }

    /// A replayable repeat is recorded (`CommandStream.beginRecording`) on its first run with a
    /// set of inputs and replayed after, except while profiling (which times each dispatch of a
    /// repeat encoded afresh) or with `replaysRepeats` off.
    public func run(repeating owner: ObjectIdentifier, replayable: ReplayableRepeat?, _ body: () throws -> Void) throws {
        let replayed = try lock.withLock { _ -> Bool in
            let scratch = keptScratch[owner] ?? RepeatScratch()
            keptScratch[owner] = scratch
            // One recording at a time: another thread's capture is not this one's to join.
            guard let replayable, replaysRepeats, !stream.profiling, !profiler.isOn, stream.capture == nil else {
                repeatScratch[pthread_self()] = scratch
                return false
            }
            let key = try recordingKey(replayable)
            stream.stepScalars.runSeed = replayable.seed
            if let adamW = replayable.adamW { try stream.stepScalars.setAdamW(adamW.options) }
            if try stream.replay(owner, key: key) { return true }
            let stage = try (staging ?? allocator).allocate(stream.stepScalars.setBytes)
            try stream.beginRecording(owner, key: key, scalarStage: stage.mapped == nil ? nil : stage)
            capturingThread = pthread_self()
            repeatScratch[pthread_self()] = scratch
            return false
        }
        guard !replayed else { return }
        do {
            try body()
        } catch {
            lock.withLock { _ in
                repeatScratch[pthread_self()] = nil
                if capturingThread == pthread_self() { try? stream.endRecording(keep: false) }
                capturingThread = nil
            }
            throw error
        }
        try lock.withLock { _ in
            repeatScratch[pthread_self()] = nil
            if capturingThread == pthread_self() { try stream.endRecording() }
            capturingThread = nil
        }
    }

    /// What a recording's commands depend on beyond its owner: the memory of each input, the
    /// optimizer step it ends with, and the settings that choose kernels.
    private func recordingKey(_ r: ReplayableRepeat) throws -> [UInt64] {
        let memory = try r.inputs.flatMap { t in
            let s = try vulkan(t.storage)
            return [s.block.serial, UInt64(s.offset), UInt64(s.byteCount)]
        }
        let step: [UInt64] = r.adamW.map { [UInt64(UInt(bitPattern: $0.optimizer)), $0.options.guarded ? 1 : 0, UInt64($0.options.tensorCount)] } ?? [0]
        return memory + step + [UInt64(bitPattern: Int64(matmulPrecision.hashValue)), cooperativeMatricesEnabled ? 1 : 0, UInt64(splitKCores),
                                 matmulSharesAInQuads ? 1 : 0]
    }

    /// Each step encoded as a repeat encodes it, into a `RepeatScratch` of its own, over tensors
    /// that hold nothing and with nothing dispatched: what that scratch keeps, as the allocator
    /// rounds each tensor.
    public func repeatScratchBytes(_ steps: [(op: Op, inputs: [TensorDescriptor], outputs: [TensorDescriptor])]) throws -> Int {
        try lock.withLock { _ in
            let operands = PlanningBackend(planningFor: self), scratch = RepeatScratch()
            (sizing[pthread_self()], repeatScratch[pthread_self()]) = (operands, scratch)
            defer { (sizing[pthread_self()], repeatScratch[pthread_self()]) = (nil, nil) }
            for step in steps {
                let tensors = { (descriptors: [TensorDescriptor]) in try descriptors.map { try Tensor(empty: $0.shape, dtype: $0.dtype, on: operands) } }
                scratch.opBegins()
                try encode(step.op, try tensors(step.inputs), try tensors(step.outputs))
            }
            return allocatedBytes(scratch.kept)
        }
    }

    /// The bytes the allocator takes for `tensors`.
    private func allocatedBytes(_ tensors: [Tensor]) -> Int {
        let unit = allocationAlignment
        return tensors.reduce(0) { $0 + max(unit, ($1.byteCount + unit - 1) / unit * unit) }
    }

    /// The scratch kept for `owner`'s repeats as the allocator counts it: what `repeatScratchBytes`
    /// sizes before they run.
    func keptScratchBytes(of owner: ObjectIdentifier) -> Int {
        lock.withLock { _ in allocatedBytes(keptScratch[owner]?.kept ?? []) }
    }

    public func releaseRepeats(of owner: ObjectIdentifier) {
        lock.withLock { _ in
            keptScratch[owner] = nil
            try? stream.forgetRecordings(of: owner)
        }
    }
}

/// Which memory types hold tensors and staging buffers.
private struct MemoryChoice {
    var deviceType: UInt32 = 0
    var deviceIsHostVisible = false
    var stagingType: UInt32?

    init(physical: VkPhysicalDevice, staged: Bool) {
        var memory = VkPhysicalDeviceMemoryProperties()
        vkGetPhysicalDeviceMemoryProperties(physical, &memory)
        let types = withUnsafeBytes(of: memory.memoryTypes) { Array($0.bindMemory(to: VkMemoryType.self).prefix(Int(memory.memoryTypeCount))) }
        let heaps = withUnsafeBytes(of: memory.memoryHeaps) { Array($0.bindMemory(to: VkMemoryHeap.self).prefix(Int(memory.memoryHeapCount))) }
        let local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue
        let visible = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue
        let largestLocal = heaps.filter { $0.flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT.rawValue != 0 }.map(\.size).max() ?? 0
        // Device-local and host-visible memory is used directly only when its heap is the device's
        // main one (unified memory, lavapipe, resizable BAR), not a 256 MiB BAR window.
        if !staged, let direct = types.indices.first(where: {
            types[$0].propertyFlags & (local | visible) == local | visible && heaps[Int(types[$0].heapIndex)].size >= largestLocal / 2
        }) {
            deviceType = UInt32(direct)
            deviceIsHostVisible = true
            return
        }
        deviceType = UInt32(types.indices.first { types[$0].propertyFlags & local != 0 } ?? 0)
        let cached = VK_MEMORY_PROPERTY_HOST_CACHED_BIT.rawValue
        stagingType = (types.indices.first { types[$0].propertyFlags & (visible | cached) == visible | cached }
            ?? types.indices.first { types[$0].propertyFlags & visible == visible }).map(UInt32.init)
    }
}

private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
private func lcm(_ a: Int, _ b: Int) -> Int { a / gcd(a, b) * b }
