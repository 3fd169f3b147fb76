import CVulkan
import LowRankCore
import Synchronization

/// One tensor's range inside a block of device memory.
final class VulkanStorage: TensorStorage, Sendable {
    let block: VulkanAllocator.Block
    let offset: Int
    let byteCount: Int
    /// The range actually reserved (rounded up to the allocator's granularity).
    let reservedBytes: Int
    let allocator: VulkanAllocator

    init(block: VulkanAllocator.Block, offset: Int, byteCount: Int, reservedBytes: Int, allocator: VulkanAllocator) {
        self.block = block
        self.offset = offset
        self.byteCount = byteCount
        self.reservedBytes = reservedBytes
        self.allocator = allocator
    }

    var buffer: VkBuffer { block.buffer }
    var mapped: UnsafeMutableRawPointer? { block.mapped.map { $0 + offset } }

    deinit { allocator.release(self) }
}

/// Suballocates tensors from a few large `VkDeviceMemory` blocks, each bound to one storage buffer.
/// First fit over a sorted free list, coalescing on release; a request larger than a block gets a
/// block of its own.
// Safe to share: `device` is an immutable handle and the blocks are only touched under `state`.
final class VulkanAllocator: @unchecked Sendable {
    // The handles are immutable; `free` is read and written only under the allocator's `state` lock.
    final class Block: @unchecked Sendable {
        let memory: VkDeviceMemory
        let buffer: VkBuffer
        let size: Int
        let mapped: UnsafeMutableRawPointer?
        /// Unique among the blocks of this process, unlike a destroyed buffer's handle (`BoundRange`).
        let serial: UInt64
        /// Sorted, non-adjacent free ranges.
        var free: [Range<Int>]
        private static let serials = Atomic<UInt64>(0)

        init(memory: VkDeviceMemory, buffer: VkBuffer, size: Int, mapped: UnsafeMutableRawPointer?) {
            serial = Self.serials.add(1, ordering: .relaxed).newValue
            self.memory = memory
            self.buffer = buffer
            self.size = size
            self.mapped = mapped
            free = [0..<size]
        }
    }

    let device: VkDevice
    let memoryTypeIndex: UInt32
    /// Host-visible and coherent memory is mapped once and written directly (lavapipe, integrated GPUs).
    let hostVisible: Bool
    let blockSize: Int
    let alignment: Int
    let maxAllocation: Int
    let counter: MemoryCounter
    private let state = Mutex<[Block]>([])

    init(device: VkDevice, memoryTypeIndex: UInt32, hostVisible: Bool, heapName: String, info: VulkanDeviceInfo) {
        self.device = device
        self.memoryTypeIndex = memoryTypeIndex
        self.hostVisible = hostVisible
        maxAllocation = info.limits.maxMemoryAllocationSize
        blockSize = min(256 << 20, maxAllocation)
        alignment = max(info.limits.minStorageBufferOffsetAlignment, 256)
        counter = MemoryCounter(heap: heapName)
    }

    /// Returns every block to the driver; only once no tensor of this allocator is alive.
    func destroyBlocks() {
        state.withLock { blocks in
            blocks.forEach(destroy)
            blocks.removeAll()
        }
    }

    func allocate(_ byteCount: Int) throws -> VulkanStorage {
        let size = max(alignment, (byteCount + alignment - 1) / alignment * alignment)
        guard size <= maxAllocation else {
            throw LowRankError(.outOfMemory, "a tensor of \(byteCount) bytes exceeds the device's largest allocation (\(maxAllocation) bytes)")
        }
        return try state.withLock { blocks in
            for block in blocks {
                if let offset = take(size, from: block) { return storage(block, offset, byteCount, size) }
            }
            let block = try makeBlock(max(size, blockSize))
            blocks.append(block)
            let offset = take(size, from: block)!
            return storage(block, offset, byteCount, size)
        }
    }

    private func storage(_ block: Block, _ offset: Int, _ byteCount: Int, _ reserved: Int) -> VulkanStorage {
        counter.allocated(reserved)
        return VulkanStorage(block: block, offset: offset, byteCount: byteCount, reservedBytes: reserved, allocator: self)
    }

    private func take(_ size: Int, from block: Block) -> Int? {
        guard let i = block.free.firstIndex(where: { $0.count >= size }) else { return nil }
        let range = block.free[i]
        if range.count == size { block.free.remove(at: i) } else { block.free[i] = (range.lowerBound + size)..<range.upperBound }
        return range.lowerBound
    }

    func release(_ storage: VulkanStorage) {
        counter.freed(storage.reservedBytes)
        state.withLock { blocks in
            let block = storage.block
            let range = storage.offset..<(storage.offset + storage.reservedBytes)
            let i = block.free.firstIndex { $0.lowerBound > range.lowerBound } ?? block.free.endIndex
            block.free.insert(range, at: i)
            // Coalesce with the neighbours.
            if i + 1 < block.free.count, block.free[i].upperBound == block.free[i + 1].lowerBound {
                block.free[i] = block.free[i].lowerBound..<block.free[i + 1].upperBound
                block.free.remove(at: i + 1)
            }
            if i > 0, block.free[i - 1].upperBound == block.free[i].lowerBound {
                block.free[i - 1] = block.free[i - 1].lowerBound..<block.free[i].upperBound
                block.free.remove(at: i)
            }
            // A dedicated block (larger than the standard size) goes back to the driver once empty.
            if block.size > blockSize, block.free == [0..<block.size], let b = blocks.firstIndex(where: { $0 === block }) {
                blocks.remove(at: b)
                destroy(block)
            }
        }
    }

    private func makeBlock(_ size: Int) throws -> Block {
        var info = VkBufferCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
        info.size = VkDeviceSize(size)
        info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT.rawValue | VK_BUFFER_USAGE_TRANSFER_SRC_BIT.rawValue
            | VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue
        info.sharingMode = VK_SHARING_MODE_EXCLUSIVE
        var buffer: VkBuffer?
        try vkCheck(vkCreateBuffer(device, &info, nil, &buffer), "vkCreateBuffer(\(size) bytes)")
        var requirements = VkMemoryRequirements()
        vkGetBufferMemoryRequirements(device, buffer, &requirements)
        var allocation = VkMemoryAllocateInfo()
        allocation.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
        allocation.allocationSize = requirements.size
        allocation.memoryTypeIndex = memoryTypeIndex
        var memory: VkDeviceMemory?
        let result = vkAllocateMemory(device, &allocation, nil, &memory)
        if result != VK_SUCCESS {
            vkDestroyBuffer(device, buffer, nil)
            let inUse = counter.statistics
            throw LowRankError(.outOfMemory,
                               "the device could not allocate a block of \(size) bytes (\(inUse.currentBytes) bytes in use); free tensors or use smaller shapes",
                               context: [("heap", counter.heap), ("VkResult", "\(result.rawValue)")])
        }
        try vkCheck(vkBindBufferMemory(device, buffer, memory, 0), "vkBindBufferMemory")
        var mapped: UnsafeMutableRawPointer?
        if hostVisible { try vkCheck(vkMapMemory(device, memory, 0, VkDeviceSize(VK_WHOLE_SIZE), 0, &mapped), "vkMapMemory") }
        counter.reserved(size)
        return Block(memory: memory!, buffer: buffer!, size: size, mapped: mapped)
    }

    private func destroy(_ block: Block) {
        counter.reserved(-block.size)
        vkDestroyBuffer(device, block.buffer, nil)
        vkFreeMemory(device, block.memory, nil)
    }
}
