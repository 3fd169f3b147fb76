import CVulkan
import LowRankCore

/// A range of a tensor that one command reads or writes.
struct BufferAccess {
    let storage: VulkanStorage
    /// Every tensor whose elements a range over several of them holds (AdamW's batches, `storage`
    /// among them): kept alive with it, so that none of their memory is handed out again, and
    /// written by the host, while a command still reads or writes them.
    var companions: [VulkanStorage] = []
    var offset = 0
    var size: Int
    let writes: Bool

    init(_ storage: VulkanStorage, writes: Bool, offset: Int = 0, size: Int? = nil) {
        self.storage = storage
        self.writes = writes
        self.offset = offset
        self.size = size ?? storage.byteCount
    }

    var buffer: VkBuffer { storage.buffer }
    var lower: Int { storage.offset + offset }
    var upper: Int { storage.offset + offset + size }

    func overlaps(_ other: BufferAccess) -> Bool {
        buffer == other.buffer && lower < other.upper && other.lower < upper
    }
}

/// A tensor, or the window `elements` of it, bound to one binding of a kernel.
struct TensorBinding {
    var tensor: Tensor
    var writes: Bool
    var elements: Range<Int>

    /// `elements` counts in storage units: elements, or bytes of a block-quantized tensor.
    static func read(_ t: Tensor, _ elements: Range<Int>? = nil) -> TensorBinding {
        TensorBinding(tensor: t, writes: false, elements: elements ?? whole(t))
    }

    static func write(_ t: Tensor, _ elements: Range<Int>? = nil) -> TensorBinding {
        TensorBinding(tensor: t, writes: true, elements: elements ?? whole(t))
    }

    private static func whole(_ t: Tensor) -> Range<Int> { 0..<(t.dtype.isQuantized ? t.byteCount : t.shape.count) }
}

/// Device time of one dispatch, from timestamp queries.
public struct DispatchTiming: Sendable {
    public var kernel: String
    public var milliseconds: Double
    /// The op whose encoding recorded it, while the backend profiles ops.
    public var op: Op.Kind?
}

/// One command buffer with what its commands need until they finish: timestamp queries, and the
/// ranges they touch (which keeps their storage alive). A recording (`keepsCommands`) is submitted
/// again and again: its commands, ranges and counts outlive each submission.
final class Submission {
    let commandBuffer: VkCommandBuffer
    let fence: VkFence
    let queryPool: VkQueryPool?
    var keepsCommands = false
    var dispatches = 0
    /// A recording's barriers, and the accesses since its last barrier when it ends.
    var barriers = 0
    /// The host-visible bytes a recording copies its run's step scalars from.
    var scalarStage: VulkanStorage?
    var endState: (written: [BufferAccess], read: [BufferAccess]) = ([], [])
    var queriesUsed = 0
    var queryLabels: [String] = []
    var queryOps: [Op.Kind?] = []
    var pending: [BufferAccess] = []
    var inFlight = false

    init(device: VkDevice, pool: VkCommandPool, timestamps: Bool) throws {
        var allocation = VkCommandBufferAllocateInfo()
        allocation.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO
        allocation.commandPool = pool
        allocation.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY
        allocation.commandBufferCount = 1
        var buffer: VkCommandBuffer?
        try vkCheck(vkAllocateCommandBuffers(device, &allocation, &buffer), "vkAllocateCommandBuffers")
        commandBuffer = buffer!

        var fenceInfo = VkFenceCreateInfo()
        fenceInfo.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
        var fence: VkFence?
        try vkCheck(vkCreateFence(device, &fenceInfo, nil, &fence), "vkCreateFence")
        self.fence = fence!

        if timestamps {
            var queryInfo = VkQueryPoolCreateInfo()
            queryInfo.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO
            queryInfo.queryType = VK_QUERY_TYPE_TIMESTAMP
            queryInfo.queryCount = UInt32(CommandStream.timestampsPerSubmit)
            var queryPool: VkQueryPool?
            try vkCheck(vkCreateQueryPool(device, &queryInfo, nil, &queryPool), "vkCreateQueryPool")
            self.queryPool = queryPool
        } else {
            queryPool = nil
        }
    }

    func destroy(_ device: VkDevice) {
        if let queryPool { vkDestroyQueryPool(device, queryPool, nil) }
        vkDestroyFence(device, fence, nil)
    }

    /// Destroys a submission made after the stream's own, once it is not in flight.
    func free(_ device: VkDevice, _ pool: VkCommandPool) {
        destroy(device)
        var buffer: VkCommandBuffer? = commandBuffer
        vkFreeCommandBuffers(device, pool, 1, &buffer)
    }
}

/// Records many dispatches into a command buffer and submits them together, keeping up to two
/// submissions in flight: when one command buffer fills, it is submitted and recording goes on in
/// the other, which waits only for the submission before last. A global memory barrier goes in
/// only where a command reads or writes a range that an earlier command since the last barrier
/// wrote, or writes a range one of them read (the hazards synchronization validation checks).
/// That state survives submits: a barrier also orders against earlier submissions on the queue.
/// Descriptor sets come from `descriptorSets`, written once per binding tuple; every dispatch also
/// binds `stepScalars` at set 1 and reads it, so an update of the values waits for the commands
/// that read the old ones.
final class CommandStream {
    let device: VkDevice
    fileprivate let queue: VkQueue
    let pool: VkCommandPool
    private let timestampPeriod: Double
    private let submissions: [Submission]
    /// The submission being recorded, or recorded next.
    private var current = 0
    /// Submitted and not yet waited for, oldest first (the stream's own and recordings).
    private var inFlight: [Submission] = []
    /// The recording being captured instead of the stream's submission (`beginRecording`).
    var capture: Capture?
    /// Recordings by owner, at most `recordingsPerOwner` each, oldest first.
    var recordings: [ObjectIdentifier: [(key: [UInt64], submission: Submission)]] = [:]
    /// Dispatches per command buffer: the device starts on the first ones while the rest are recorded.
    static let dispatchesPerSubmit = 1024
    static let timestampsPerSubmit = 2048

    let descriptorSets: DescriptorSetCache
    let stepScalars: StepScalars
    var isRecording = false
    var writtenSinceBarrier: [BufferAccess] = []
    var readSinceBarrier: [BufferAccess] = []

    /// Off only in the test that proves synchronization validation catches a missing barrier.
    var insertsBarriers = true

    /// With profiling on, each dispatch is bracketed by timestamps and its time appended to `timings`.
    var profiling = false
    var timings: [DispatchTiming] = []
    /// The op being encoded, which timings name while the backend profiles ops.
    var op: Op.Kind?

    /// With a log, each dispatch appends its kernel, push constants and workgroups, and each update
    /// but the step scalars' its bytes: how tests see that a step records what the one before did.
    var log: [String]?

    /// Commands recorded and submitted since the stream was made: what `--profile` counts.
    var dispatchCount = 0
    var barrierCount = 0
    private(set) var submissionCount = 0
    /// Recordings submitted again (`replay`).
    var replayCount = 0
    /// Times the host waited for submissions to finish (several waited for at once count once).
    private(set) var waitCount = 0

    init(device: VkDevice, queue: VkQueue, queueFamily: UInt32, timestampPeriod: Double, timestamps: Bool, stepScalars: StepScalars) throws {
        self.device = device
        self.queue = queue
        self.timestampPeriod = timestampPeriod

        var poolInfo = VkCommandPoolCreateInfo()
        poolInfo.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO
        poolInfo.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT.rawValue
        poolInfo.queueFamilyIndex = queueFamily
        var pool: VkCommandPool?
        try vkCheck(vkCreateCommandPool(device, &poolInfo, nil, &pool), "vkCreateCommandPool")
        self.pool = pool!
        descriptorSets = DescriptorSetCache(device: device)
        self.stepScalars = stepScalars
        submissions = try (0..<2).map { _ in try Submission(device: device, pool: pool!, timestamps: timestamps) }
    }

    func destroy() {
        try? submitAndWait()
        for s in submissions { s.destroy(device) }
        // Before the backend returns its blocks: a recording holds the storage it binds.
        forgetRecordings()
        descriptorSets.destroy()
        stepScalars.destroy()
        vkDestroyCommandPool(device, pool, nil)
    }

    var hasTimestamps: Bool { submissions[0].queryPool != nil }

    private func begin() throws {
        guard !isRecording else { return }
        let s = submissions[current]
        if s.inFlight { try wait(s) }
        var info = VkCommandBufferBeginInfo()
        info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        info.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT.rawValue
        try vkCheck(vkBeginCommandBuffer(s.commandBuffer, &info), "vkBeginCommandBuffer")
        if let queryPool = s.queryPool, profiling { vkCmdResetQueryPool(s.commandBuffer, queryPool, 0, UInt32(Self.timestampsPerSubmit)) }
        isRecording = true
    }

    /// The submission commands go into: the recording being captured, else the stream's.
    private var target: Submission { capture?.submission ?? submissions[current] }
    var commandBuffer: VkCommandBuffer { target.commandBuffer }

    /// Inserts a barrier first if `accesses` conflict with commands since the last one.
    func order(_ accesses: [BufferAccess]) {
        let hazard = accesses.contains { a in
            writtenSinceBarrier.contains { $0.overlaps(a) } || (a.writes && readSinceBarrier.contains { $0.overlaps(a) })
        }
        if hazard && insertsBarriers { barrier() }
        for a in accesses {
            if a.writes { writtenSinceBarrier.append(a) } else { readSinceBarrier.append(a) }
        }
        target.pending.append(contentsOf: accesses)
    }

    /// Records a global barrier between every command before it (in this command buffer and those
    /// submitted earlier) and every command after.
    func barrier() {
        let stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT.rawValue | VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue
        var barrier = VkMemoryBarrier()
        barrier.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
        barrier.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue
        barrier.dstAccessMask = VK_ACCESS_SHADER_READ_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue
            | VK_ACCESS_TRANSFER_READ_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue
        vkCmdPipelineBarrier(commandBuffer, stages, stages, 0, 1, &barrier, 0, nil, 0, nil)
        barrierCount += 1
        writtenSinceBarrier.removeAll(keepingCapacity: true)
        readSinceBarrier.removeAll(keepingCapacity: true)
    }

    /// Records one dispatch; `bindings` are the pipeline's storage buffers in binding order.
    func dispatch<Push: BitwiseCopyable>(_ pipeline: Pipeline, _ bindings: [BufferAccess], push: Push,
                                         groups: (UInt32, UInt32, UInt32)) throws {
        precondition(bindings.count == pipeline.bindings, "\(pipeline.name): \(bindings.count) bindings for \(pipeline.bindings)")
        precondition(MemoryLayout<Push>.size <= PipelineStore.pushConstantBytes, "\(pipeline.name): push constants exceed 128 bytes")
        // A recording is one command buffer, whose sets stay written.
        if capture == nil {
            let filling = submissions[current]
            if filling.dispatches >= Self.dispatchesPerSubmit || (profiling && filling.queriesUsed + 2 > Self.timestampsPerSubmit) {
                try submit()
            }
            if descriptorSets.isFull { try resetDescriptorSets() }
        }
        try begin()
        // A value that changes within a recording is not the recording's to replay.
        if try flushStepScalars() { capture?.broken = true }
        order(bindings + [stepScalars.access])
        let s = target
        var sets: [VkDescriptorSet?] = [try descriptorSets.set(pipeline.setLayout, bindings), stepScalars.set]
        s.dispatches += 1

        vkCmdBindPipeline(commandBuffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.handle)
        vkCmdBindDescriptorSets(commandBuffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout, 0, 2, &sets, 0, nil)
        withUnsafeBytes(of: push) {
            vkCmdPushConstants(commandBuffer, pipeline.layout, VK_SHADER_STAGE_COMPUTE_BIT.rawValue, 0, UInt32($0.count), $0.baseAddress)
            log?.append("\(pipeline.name) \(Array($0)) \(groups)")
        }
        let timed = profiling && s.queryPool != nil
        if timed { vkCmdWriteTimestamp(commandBuffer, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, s.queryPool, UInt32(s.queriesUsed)) }
        vkCmdDispatch(commandBuffer, groups.0, groups.1, groups.2)
        dispatchCount += 1
        if timed {
            vkCmdWriteTimestamp(commandBuffer, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s.queryPool, UInt32(s.queriesUsed + 1))
            s.queriesUsed += 2
            s.queryLabels.append(pipeline.name)
            s.queryOps.append(op)
        }
    }

    /// Records writing `bytes` (a whole number of 4-byte words) into `destination`, in the command
    /// buffer itself (`vkCmdUpdateBuffer`), so that nothing waits for earlier commands. A recording
    /// writes the same bytes on every replay: they must depend only on what its key fixes (AdamW's
    /// table of the tensors' offsets).
    func update(_ destination: BufferAccess, with bytes: UnsafeRawBufferPointer) throws {
        log?.append("update \(Array(bytes))")
        try record(destination, bytes)
    }

    /// Waits for every submission and starts the descriptor-set cache over, forgetting the
    /// recordings that bind its sets.
    func resetDescriptorSets() throws {
        try submitAndWait()
        try descriptorSets.reset()
        forgetRecordings()
    }

    /// Records an update of the step scalars' changed words, if any; whether there was one.
    func flushStepScalars() throws -> Bool {
        guard let (access, bytes) = stepScalars.pendingUpdate() else { return false }
        try bytes.withUnsafeBytes { try record(access, $0) }
        stepScalars.didRecordUpdate()
        return true
    }

    private func record(_ destination: BufferAccess, _ bytes: UnsafeRawBufferPointer) throws {
        precondition(bytes.count % 4 == 0 && bytes.count <= destination.size, "updates are whole words within the destination")
        try begin()
        order([destination])
        // vkCmdUpdateBuffer takes at most 65536 bytes at a time.
        for start in stride(from: 0, to: bytes.count, by: 65536) {
            let n = min(65536, bytes.count - start)
            vkCmdUpdateBuffer(commandBuffer, destination.buffer, VkDeviceSize(destination.lower + start), VkDeviceSize(n), bytes.baseAddress! + start)
        }
    }

    /// Records a buffer-to-buffer copy.
    func copy(from source: BufferAccess, to destination: BufferAccess) throws {
        // A staged upload's data would be stale in a replay.
        capture?.broken = true
        try begin()
        order([source, destination])
        var region = VkBufferCopy(srcOffset: VkDeviceSize(source.lower), dstOffset: VkDeviceSize(destination.lower),
                                  size: VkDeviceSize(source.size))
        vkCmdCopyBuffer(commandBuffer, source.buffer, destination.buffer, 1, &region)
    }

    /// Submits what was recorded without waiting; recording goes on in the other command buffer.
    func submit() throws {
        // Whatever needs the commands recorded so far ends a capture: that recording is not kept.
        if capture != nil {
            capture?.broken = true
            return try endRecording()
        }
        guard isRecording else { return }
        isRecording = false
        let s = submissions[current]
        try end(s)
        try enqueue(s)
        current = (current + 1) % submissions.count
    }

    /// Ends `s`'s command buffer, every device write made visible to the host, which reads mapped
    /// memory after the wait.
    func end(_ s: Submission) throws {
        var barrier = VkMemoryBarrier()
        barrier.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
        barrier.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue
        barrier.dstAccessMask = VK_ACCESS_HOST_READ_BIT.rawValue
        vkCmdPipelineBarrier(s.commandBuffer,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT.rawValue | VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue,
                             VK_PIPELINE_STAGE_HOST_BIT.rawValue, 0, 1, &barrier, 0, nil, 0, nil)
        try vkCheck(vkEndCommandBuffer(s.commandBuffer), "vkEndCommandBuffer")
    }

    /// Submits `s` to the queue.
    func enqueue(_ s: Submission) throws {
        try vkCheck(queueSubmit(s), "vkQueueSubmit")
        s.inFlight = true
        inFlight.append(s)
        submissionCount += 1
    }

    /// Waits for `s`, collects its timestamps and frees what it held (a recording keeps it).
    /// `counted`: one wait of its own, not one of several waited for at once.
    func wait(_ s: Submission, counted: Bool = true) throws {
        var fences: [VkFence?] = [s.fence]
        try vkCheck(vkWaitForFences(device, 1, &fences, VkBool32(VK_TRUE), UInt64.max), "vkWaitForFences")
        if counted { waitCount += 1 }
        try vkCheck(vkResetFences(device, 1, &fences), "vkResetFences")
        s.inFlight = false
        inFlight.removeAll { $0 === s }
        guard !s.keepsCommands else { return }
        if s.queriesUsed > 0, let queryPool = s.queryPool {
            var stamps = [UInt64](repeating: 0, count: s.queriesUsed)
            try vkCheck(vkGetQueryPoolResults(device, queryPool, 0, UInt32(s.queriesUsed), stamps.count * 8, &stamps, 8,
                                              VK_QUERY_RESULT_64_BIT.rawValue | VK_QUERY_RESULT_WAIT_BIT.rawValue),
                        "vkGetQueryPoolResults")
            for (i, label) in s.queryLabels.enumerated() {
                let ticks = stamps[2 * i + 1] &- stamps[2 * i]
                timings.append(DispatchTiming(kernel: label, milliseconds: Double(ticks) * timestampPeriod / 1e6, op: s.queryOps[i]))
            }
        }
        s.queriesUsed = 0
        s.queryLabels.removeAll(keepingCapacity: true)
        s.queryOps.removeAll(keepingCapacity: true)
        s.dispatches = 0
        s.pending.removeAll(keepingCapacity: true)
    }

    /// Waits until no command recorded or running touches `storage` (writes it, with `writesOnly`):
    /// submits the recorded ones if they do, and waits for the submissions up to the newest that does.
    func finish(touching storage: VulkanStorage, writesOnly: Bool = false) throws {
        let probe = BufferAccess(storage, writes: false)
        let touching = { (s: Submission) in s.pending.contains { $0.overlaps(probe) && (!writesOnly || $0.writes) } }
        if isRecording && touching(target) { try submit() }
        let order = inFlight
        guard let newest = order.lastIndex(where: touching) else { return }
        try wait(all: order[...newest].filter(\.inFlight))
    }

    /// Submits what was recorded and waits for every submission, oldest first; a no-op when
    /// nothing is recorded or running.
    func submitAndWait() throws {
        try submit()
        try wait(all: inFlight.filter(\.inFlight))
    }

    /// Waits for `submissions`, oldest first: one host wait.
    private func wait(all submissions: [Submission]) throws {
        guard !submissions.isEmpty else { return }
        waitCount += 1
        for s in submissions { try wait(s, counted: false) }
    }
}

extension CommandStream {
    fileprivate func queueSubmit(_ s: Submission) -> VkResult {
        let buffers: [VkCommandBuffer?] = [s.commandBuffer]
        return buffers.withUnsafeBufferPointer { b in
            var info = VkSubmitInfo()
            info.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
            info.commandBufferCount = 1
            info.pCommandBuffers = b.baseAddress
            return vkQueueSubmit(queue, 1, &info, s.fence)
        }
    }
}
