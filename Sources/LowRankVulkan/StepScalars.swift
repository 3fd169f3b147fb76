import CVulkan
import LowRankCore

/// What changes from one training step to the next, which kernels read from this buffer (set 1 of
/// every pipeline, `Shaders/step_scalars.glsl`) rather than from push constants, so that a step's
/// commands are the same every step: the run's dropout seed, and AdamW's bias correction and
/// per-tensor rates. A recording copies them from host-visible bytes of its own first. The host sets the values; before its next dispatch the command stream records
/// an update of the bytes that changed (`pendingUpdate`), ordered after the commands that read the
/// old ones like any other write.
final class StepScalars {
    /// The buffer's size: `vkCmdUpdateBuffer`'s most.
    static let byteCount = 65536
    /// Where `adamw_rates` starts.
    private static let ratesOffset = 8
    /// The most tensors one AdamW op can take its rates from here.
    static let maxTensors = (byteCount - ratesOffset) / MemoryLayout<SIMD2<Float>>.stride

    private let device: VkDevice
    private let pool: VkDescriptorPool
    /// Released by `destroy()`, before the backend returns its blocks to the driver.
    private var storage: VulkanStorage?
    /// Binds the buffer at set 1, binding 0.
    let set: VkDescriptorSet
    /// The values as the host set them, from offset 0.
    private var host = [UInt8](repeating: 0, count: ratesOffset)
    /// The values as the recorded updates leave the buffer; empty before the first.
    private var recorded: [UInt8] = []

    init(device: VkDevice, storage: VulkanStorage, layout: VkDescriptorSetLayout) throws {
        self.device = device
        self.storage = storage
        var size = VkDescriptorPoolSize(type: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount: 1)
        var poolInfo = VkDescriptorPoolCreateInfo()
        poolInfo.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
        poolInfo.maxSets = 1
        poolInfo.poolSizeCount = 1
        var pool: VkDescriptorPool?
        try withUnsafePointer(to: &size) { s in
            poolInfo.pPoolSizes = s
            try vkCheck(vkCreateDescriptorPool(device, &poolInfo, nil, &pool), "vkCreateDescriptorPool")
        }
        self.pool = pool!
        var setLayout: VkDescriptorSetLayout? = layout
        var allocation = VkDescriptorSetAllocateInfo()
        allocation.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO
        allocation.descriptorPool = pool
        allocation.descriptorSetCount = 1
        var set: VkDescriptorSet?
        try withUnsafePointer(to: &setLayout) { l in
            allocation.pSetLayouts = l
            try vkCheck(vkAllocateDescriptorSets(device, &allocation, &set), "vkAllocateDescriptorSets")
        }
        self.set = set!
        var info = VkDescriptorBufferInfo(buffer: storage.buffer, offset: VkDeviceSize(storage.offset), range: VkDeviceSize(Self.byteCount))
        var write = VkWriteDescriptorSet()
        write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
        write.dstSet = set
        write.dstBinding = 0
        write.descriptorCount = 1
        write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
        withUnsafePointer(to: &info) { i in
            write.pBufferInfo = i
            vkUpdateDescriptorSets(device, 1, &write, 0, nil)
        }
    }

    func destroy() {
        vkDestroyDescriptorPool(device, pool, nil)
        storage = nil
    }

    /// The seed a plan's run mixes into its ops' dropout seeds (`Op.reseeded`): 0 outside a run.
    var runSeed: UInt32 {
        get { host.withUnsafeBytes { $0.load(as: UInt32.self) } }
        set { store(newValue, at: Self.runSeedBytes.lowerBound) }
    }

    /// Sets the values of the AdamW step `o`.
    func setAdamW(_ o: MultiTensorAdamWOptions) throws {
        try setAdamW(bias2Root: o.adamW.stepScalars.bias2Root, rates: (0..<o.tensorCount).map { o.options($0).stepScalars })
    }

    /// Sets AdamW's values: `bias2Root` (√(1 − β₂ᵗ)) and each tensor's (1 − lr·λ, −lr/(1 − β₁ᵗ)).
    private func setAdamW(bias2Root: Float, rates: [AdamWStepScalars]) throws {
        guard rates.count <= Self.maxTensors else {
            throw LowRankError(.unsupported, "one AdamW op updates at most \(Self.maxTensors) tensors on Vulkan; this one has \(rates.count)",
                               context: [("tensors", "\(rates.count)")])
        }
        store(bias2Root, at: 4)
        let end = Self.ratesOffset + rates.count * MemoryLayout<SIMD2<Float>>.stride
        if host.count < end { host += [UInt8](repeating: 0, count: end - host.count) }
        for (i, r) in rates.enumerated() {
            store(SIMD2(r.decay, r.negativeStep), at: Self.ratesOffset + i * MemoryLayout<SIMD2<Float>>.stride)
        }
    }

    private func store<T: BitwiseCopyable>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value) { v in host.replaceSubrange(offset..<(offset + v.count), with: v) }
    }

    /// The whole buffer, as every dispatch reads it.
    var access: BufferAccess { BufferAccess(storage!, writes: false) }

    /// `run_seed`'s bytes.
    static let runSeedBytes = 0..<4

    /// How many bytes from offset 0 the host has set: what a recording copies before its commands.
    var setBytes: Int { host.count }

    /// Writes the host's first `count` bytes to `destination`.
    func copySet(_ count: Int, to destination: UnsafeMutableRawPointer) {
        host.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress!, byteCount: count) }
    }

    /// The bytes `range` of the buffer.
    func access(_ range: Range<Int>, writes: Bool) -> BufferAccess {
        BufferAccess(storage!, writes: writes, offset: range.lowerBound, size: range.count)
    }

    /// After a command the stream did not record from `pendingUpdate()` set the host's bytes
    /// `range` (a recording's copy of its run's seed).
    func markRecorded(_ range: Range<Int>) {
        guard recorded.count >= range.upperBound else { return }
        recorded.replaceSubrange(range, with: host[range])
    }

    /// The words the host changed since the last recorded update, with their new bytes, or nil.
    func pendingUpdate() -> (access: BufferAccess, bytes: ArraySlice<UInt8>)? {
        let common = min(recorded.count, host.count)
        guard let first = (0..<common).first(where: { host[$0] != recorded[$0] }) ?? (host.count > common ? common : nil) else { return nil }
        let last = host.count > common ? host.count : (0..<common).last { host[$0] != recorded[$0] }! + 1
        let (lower, upper) = (first / 4 * 4, (last + 3) / 4 * 4)
        return (BufferAccess(storage!, writes: true, offset: lower, size: upper - lower), host[lower..<upper])
    }

    /// After the stream recorded `pendingUpdate()`.
    func didRecordUpdate() { recorded = host }
}
