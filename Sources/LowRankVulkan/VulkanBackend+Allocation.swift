extension VulkanBackend {
    /// Every tensor's allocation is a multiple of this many bytes (at least 256, the device's
    /// storage-buffer offset alignment when larger), so that planning counts what the device takes.
    public var allocationAlignment: Int { allocator.alignment }
}
