import CVulkan
import LowRankCore

/// The storage-buffer range one descriptor binds. Its block is named by serial, not by `VkBuffer`,
/// so a handle the driver hands out again after a block is destroyed never finds that block's sets.
struct BoundRange: Equatable {
    let block: UInt64
    let offset: Int
    /// Whole 4-byte words, so that 16-bit and 8-bit tensors of odd length bind cleanly.
    let size: Int

    init(_ b: BufferAccess) {
        block = b.storage.block.serial
        offset = b.lower
        size = max(4, (b.size + 3) / 4 * 4)
    }
}

/// Descriptor sets written once per distinct binding tuple and bound again by every dispatch with
/// the same one. An execution plan's buffers are fixed (and encoder scratch comes back at the same
/// offsets), so from a plan's second run on its dispatches allocate and write no descriptor. A set
/// is never written again once bound: one in use by a submission is bound as it is by the next.
/// Tuples that do not recur (ops on fresh tensors) fill the pools; at `capacity` sets the stream
/// waits for its submissions and calls `reset()`, which starts the cache over (tests lower it to
/// reach that reset).
final class DescriptorSetCache {
    /// A written set and what it binds.
    private struct Entry {
        let setLayout: VkDescriptorSetLayout
        let ranges: [BoundRange]
        let set: VkDescriptorSet

        func binds(_ setLayout: VkDescriptorSetLayout, _ bindings: [BufferAccess]) -> Bool {
            guard self.setLayout == setLayout, ranges.count == bindings.count else { return false }
            for i in ranges.indices where ranges[i] != BoundRange(bindings[i]) { return false }
            return true
        }
    }

    static let setsPerPool = 1024
    static let descriptorsPerPool = 16384

    private let device: VkDevice
    private var pools: [VkDescriptorPool] = []
    /// The pool sets come from; those before it are full.
    private var filling = 0
    /// Entries by `key(_:_:)`, so that a dispatch whose set is cached builds nothing to find it.
    private var sets: [Int: [Entry]] = [:]
    private var count = 0
    /// Sets allocated and written since the stream was made: how tests see that replayed steps write none.
    private(set) var writtenCount = 0
    var capacity = 16384

    init(device: VkDevice) { self.device = device }

    var isFull: Bool { count >= capacity }

    /// The layout and ranges mixed word by word (multiply and xor-shift).
    private static func key(_ setLayout: VkDescriptorSetLayout, _ bindings: [BufferAccess]) -> Int {
        var h = UInt64(UInt(bitPattern: Int(bitPattern: setLayout)))
        for b in bindings {
            let range = BoundRange(b)
            mix(&h, range.block)
            mix(&h, UInt64(range.offset))
            mix(&h, UInt64(range.size))
        }
        return Int(bitPattern: UInt(h))
    }

    private static func mix(_ h: inout UInt64, _ word: UInt64) {
        h = (h ^ word) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
    }

    /// The set binding `bindings` in order with `setLayout`, written on first use.
    func set(_ setLayout: VkDescriptorSetLayout, _ bindings: [BufferAccess]) throws -> VkDescriptorSet {
        let key = Self.key(setLayout, bindings)
        if let hit = sets[key]?.first(where: { $0.binds(setLayout, bindings) }) { return hit.set }
        let set = try allocate(setLayout)
        let ranges = bindings.map(BoundRange.init)
        let infos = zip(bindings, ranges).map { b, r in
            VkDescriptorBufferInfo(buffer: b.buffer, offset: VkDeviceSize(r.offset), range: VkDeviceSize(r.size))
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
        sets[key, default: []].append(Entry(setLayout: setLayout, ranges: ranges, set: set))
        count += 1
        writtenCount += 1
        return set
    }

    /// From the pool being filled, or the next (made when there is none) once it is out of sets or descriptors.
    private func allocate(_ setLayout: VkDescriptorSetLayout) throws -> VkDescriptorSet {
        if filling < pools.count, let set = try allocate(setLayout, from: pools[filling]) { return set }
        if filling < pools.count { filling += 1 }
        if filling == pools.count { pools.append(try makePool()) }
        guard let set = try allocate(setLayout, from: pools[filling]) else {
            throw LowRankError(.outOfMemory, "an empty descriptor pool cannot hold one descriptor set")
        }
        return set
    }

    /// Nil when `pool` is exhausted.
    private func allocate(_ setLayout: VkDescriptorSetLayout, from pool: VkDescriptorPool) throws -> VkDescriptorSet? {
        var set: VkDescriptorSet?
        var layout: VkDescriptorSetLayout? = setLayout
        var allocation = VkDescriptorSetAllocateInfo()
        allocation.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO
        allocation.descriptorPool = pool
        allocation.descriptorSetCount = 1
        let result = withUnsafePointer(to: &layout) { l in
            allocation.pSetLayouts = l
            return vkAllocateDescriptorSets(device, &allocation, &set)
        }
        if result == VK_ERROR_OUT_OF_POOL_MEMORY || result == VK_ERROR_FRAGMENTED_POOL { return nil }
        try vkCheck(result, "vkAllocateDescriptorSets")
        return set!
    }

    private func makePool() throws -> VkDescriptorPool {
        var size = VkDescriptorPoolSize(type: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount: UInt32(Self.descriptorsPerPool))
        var info = VkDescriptorPoolCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
        info.maxSets = UInt32(Self.setsPerPool)
        info.poolSizeCount = 1
        var pool: VkDescriptorPool?
        try withUnsafePointer(to: &size) { s in
            info.pPoolSizes = s
            try vkCheck(vkCreateDescriptorPool(device, &info, nil, &pool), "vkCreateDescriptorPool")
        }
        return pool!
    }

    /// Forgets every set; only while no recorded or submitted command binds one.
    func reset() throws {
        for pool in pools { try vkCheck(vkResetDescriptorPool(device, pool, 0), "vkResetDescriptorPool") }
        sets.removeAll(keepingCapacity: true)
        count = 0
        filling = 0
    }

    func destroy() {
        for pool in pools { vkDestroyDescriptorPool(device, pool, nil) }
        pools.removeAll()
        sets.removeAll()
    }
}
