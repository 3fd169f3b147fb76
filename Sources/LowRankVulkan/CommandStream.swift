import CVulkan
import LowRankCore

/// A range of a tensor that one command reads or writes.
struct BufferAccess {
    let storage: VulkanStorage
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

/// Records many dispatches into one command buffer and submits them together. A global memory
/// barrier goes in only where a command reads or writes a range that an earlier command since the
/// last barrier wrote, or writes a range one of them read (the hazards synchronization validation
/// checks). That state survives submits: a barrier also orders against earlier submissions.
final class CommandStream {
    private let device: VkDevice
    fileprivate let queue: VkQueue
    private let pool: VkCommandPool
    fileprivate let commandBuffer: VkCommandBuffer
    fileprivate let fence: VkFence
    private let descriptorPool: VkDescriptorPool
    private let queryPool: VkQueryPool?
    private let timestampPeriod: Double
    static let setsPerSubmit = 1024
    static let descriptorsPerSubmit = 8192
    static let timestampsPerSubmit = 2048

    private(set) var isRecording = false
    private var descriptorsUsed = 0
    private var setsUsed = 0
    private var queriesUsed = 0
    private var queryLabels: [String] = []
    private var writtenSinceBarrier: [BufferAccess] = []
    private var readSinceBarrier: [BufferAccess] = []
    /// Every range the unsubmitted commands touch, which also keeps their storage alive until done.
    private var pending: [BufferAccess] = []

    /// Off only in the test that proves synchronization validation catches a missing barrier.
    var insertsBarriers = true

    /// With profiling on, each dispatch is bracketed by timestamps and its time appended to `timings`.
    var profiling = false
    var timings: [DispatchTiming] = []
    /// The op being encoded, which timings name while the backend profiles ops.
    var op: Op.Kind?
    private var queryOps: [Op.Kind?] = []

    /// Commands recorded and submitted since the stream was made: what `--profile` counts.
    private(set) var dispatchCount = 0
    private(set) var barrierCount = 0
    private(set) var submissionCount = 0

    init(device: VkDevice, queue: VkQueue, queueFamily: UInt32, timestampPeriod: Double, timestamps: Bool) throws {
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

        var size = VkDescriptorPoolSize(type: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount: UInt32(Self.descriptorsPerSubmit))
        var descriptorInfo = VkDescriptorPoolCreateInfo()
        descriptorInfo.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
        descriptorInfo.maxSets = UInt32(Self.setsPerSubmit)
        descriptorInfo.poolSizeCount = 1
        var descriptorPool: VkDescriptorPool?
        try withUnsafePointer(to: &size) { s in
            descriptorInfo.pPoolSizes = s
            try vkCheck(vkCreateDescriptorPool(device, &descriptorInfo, nil, &descriptorPool), "vkCreateDescriptorPool")
        }
        self.descriptorPool = descriptorPool!

        if timestamps {
            var queryInfo = VkQueryPoolCreateInfo()
            queryInfo.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO
            queryInfo.queryType = VK_QUERY_TYPE_TIMESTAMP
            queryInfo.queryCount = UInt32(Self.timestampsPerSubmit)
            var queryPool: VkQueryPool?
            try vkCheck(vkCreateQueryPool(device, &queryInfo, nil, &queryPool), "vkCreateQueryPool")
            self.queryPool = queryPool
        } else {
            queryPool = nil
        }
    }

    func destroy() {
        if isRecording { try? submitAndWait() }
        if let queryPool { vkDestroyQueryPool(device, queryPool, nil) }
        vkDestroyDescriptorPool(device, descriptorPool, nil)
        vkDestroyFence(device, fence, nil)
        vkDestroyCommandPool(device, pool, nil)
    }

    var hasTimestamps: Bool { queryPool != nil }

    /// Whether unsubmitted commands touch `storage` (only writes, with `writesOnly`).
    func touches(_ storage: VulkanStorage, writesOnly: Bool = false) -> Bool {
        let probe = BufferAccess(storage, writes: false)
        return pending.contains { $0.overlaps(probe) && (!writesOnly || $0.writes) }
    }

    private func begin() throws {
        guard !isRecording else { return }
        var info = VkCommandBufferBeginInfo()
        info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        info.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT.rawValue
        try vkCheck(vkBeginCommandBuffer(commandBuffer, &info), "vkBeginCommandBuffer")
        if let queryPool, profiling { vkCmdResetQueryPool(commandBuffer, queryPool, 0, UInt32(Self.timestampsPerSubmit)) }
        isRecording = true
    }

    /// Inserts a barrier first if `accesses` conflict with commands since the last one.
    private func order(_ accesses: [BufferAccess]) {
        let hazard = accesses.contains { a in
            writtenSinceBarrier.contains { $0.overlaps(a) } || (a.writes && readSinceBarrier.contains { $0.overlaps(a) })
        }
        if hazard && insertsBarriers {
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
        for a in accesses {
            if a.writes { writtenSinceBarrier.append(a) } else { readSinceBarrier.append(a) }
        }
        pending.append(contentsOf: accesses)
    }

    /// Records one dispatch; `bindings` are the pipeline's storage buffers in binding order.
    func dispatch<Push: BitwiseCopyable>(_ pipeline: Pipeline, _ bindings: [BufferAccess], push: Push,
                                         groups: (UInt32, UInt32, UInt32)) throws {
        precondition(bindings.count == pipeline.bindings, "\(pipeline.name): \(bindings.count) bindings for \(pipeline.bindings)")
        precondition(MemoryLayout<Push>.size <= PipelineStore.pushConstantBytes, "\(pipeline.name): push constants exceed 128 bytes")
        if setsUsed + 1 > Self.setsPerSubmit || descriptorsUsed + bindings.count > Self.descriptorsPerSubmit
            || (profiling && queriesUsed + 2 > Self.timestampsPerSubmit) {
            try submitAndWait()
        }
        try begin()
        order(bindings)

        var set: VkDescriptorSet?
        var setLayout: VkDescriptorSetLayout? = pipeline.setLayout
        var allocation = VkDescriptorSetAllocateInfo()
        allocation.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO
        allocation.descriptorPool = descriptorPool
        allocation.descriptorSetCount = 1
        try withUnsafePointer(to: &setLayout) { layout in
            allocation.pSetLayouts = layout
            try vkCheck(vkAllocateDescriptorSets(device, &allocation, &set), "vkAllocateDescriptorSets")
        }
        setsUsed += 1
        descriptorsUsed += bindings.count

        let infos = bindings.map { b in
            // Ranges are whole 4-byte words so that 16-bit and 8-bit tensors of odd length bind cleanly.
            VkDescriptorBufferInfo(buffer: b.buffer, offset: VkDeviceSize(b.lower),
                                   range: VkDeviceSize(max(4, (b.size + 3) / 4 * 4)))
        }
        infos.withUnsafeBufferPointer { infoPointer in
            var writes = (0..<bindings.count).map { i in
                var w = VkWriteDescriptorSet()
                w.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
                w.dstSet = set
                w.dstBinding = UInt32(i)
                w.descriptorCount = 1
                w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                w.pBufferInfo = infoPointer.baseAddress! + i
                return w
            }
            vkUpdateDescriptorSets(device, UInt32(writes.count), &writes, 0, nil)
        }

        vkCmdBindPipeline(commandBuffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.handle)
        vkCmdBindDescriptorSets(commandBuffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout, 0, 1, &set, 0, nil)
        withUnsafeBytes(of: push) {
            vkCmdPushConstants(commandBuffer, pipeline.layout, VK_SHADER_STAGE_COMPUTE_BIT.rawValue, 0, UInt32($0.count), $0.baseAddress)
        }
        let timed = profiling && queryPool != nil
        if timed { vkCmdWriteTimestamp(commandBuffer, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queryPool, UInt32(queriesUsed)) }
        vkCmdDispatch(commandBuffer, groups.0, groups.1, groups.2)
        dispatchCount += 1
        if timed {
            vkCmdWriteTimestamp(commandBuffer, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queryPool, UInt32(queriesUsed + 1))
            queriesUsed += 2
            queryLabels.append(pipeline.name)
            queryOps.append(op)
        }
    }

    /// Records writing `bytes` (a whole number of 4-byte words) into `destination`, in the command
    /// buffer itself (`vkCmdUpdateBuffer`), so that nothing waits for earlier commands.
    func update(_ destination: BufferAccess, with bytes: UnsafeRawBufferPointer) throws {
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
        try begin()
        order([source, destination])
        var region = VkBufferCopy(srcOffset: VkDeviceSize(source.lower), dstOffset: VkDeviceSize(destination.lower),
                                  size: VkDeviceSize(source.size))
        vkCmdCopyBuffer(commandBuffer, source.buffer, destination.buffer, 1, &region)
    }

    private func collectTimings() throws {
        guard queriesUsed > 0, let queryPool else { return }
        var stamps = [UInt64](repeating: 0, count: queriesUsed)
        try vkCheck(vkGetQueryPoolResults(device, queryPool, 0, UInt32(queriesUsed), stamps.count * 8, &stamps, 8,
                                          VK_QUERY_RESULT_64_BIT.rawValue | VK_QUERY_RESULT_WAIT_BIT.rawValue),
                    "vkGetQueryPoolResults")
        for (i, label) in queryLabels.enumerated() {
            let ticks = stamps[2 * i + 1] &- stamps[2 * i]
            timings.append(DispatchTiming(kernel: label, milliseconds: Double(ticks) * timestampPeriod / 1e6, op: queryOps[i]))
        }
    }

    /// Submits what was recorded and waits for it; a no-op when nothing was.
    func submitAndWait() throws {
        guard isRecording else { return }
        isRecording = false
        // Make every device write visible to the host, which reads mapped memory after the wait.
        var barrier = VkMemoryBarrier()
        barrier.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
        barrier.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue
        barrier.dstAccessMask = VK_ACCESS_HOST_READ_BIT.rawValue
        vkCmdPipelineBarrier(commandBuffer,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT.rawValue | VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue,
                             VK_PIPELINE_STAGE_HOST_BIT.rawValue, 0, 1, &barrier, 0, nil, 0, nil)
        try vkCheck(vkEndCommandBuffer(commandBuffer), "vkEndCommandBuffer")
        try vkCheck(submit(), "vkQueueSubmit")
        submissionCount += 1
        var fences: [VkFence?] = [fence]
        try vkCheck(vkWaitForFences(device, 1, &fences, VkBool32(VK_TRUE), UInt64.max), "vkWaitForFences")
        try vkCheck(vkResetFences(device, 1, &fences), "vkResetFences")
        try collectTimings()
        queriesUsed = 0
        queryLabels.removeAll(keepingCapacity: true)
        queryOps.removeAll(keepingCapacity: true)
        try vkCheck(vkResetDescriptorPool(device, descriptorPool, 0), "vkResetDescriptorPool")
        setsUsed = 0
        descriptorsUsed = 0
        pending.removeAll(keepingCapacity: true)
    }
}

extension CommandStream {
    fileprivate func submit() -> VkResult {
        let buffers: [VkCommandBuffer?] = [commandBuffer]
        return buffers.withUnsafeBufferPointer { b in
            var info = VkSubmitInfo()
            info.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
            info.commandBufferCount = 1
            info.pCommandBuffers = b.baseAddress
            return vkQueueSubmit(queue, 1, &info, fence)
        }
    }
}
