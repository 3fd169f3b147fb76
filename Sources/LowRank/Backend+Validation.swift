extension Backend {
    /// Waits for the work queued so far, then returns (and forgets) the validation layer's
    /// messages since the last call: none on the CPU backend or without validation. The messages
    /// are the instance's, so another backend's work on it can show here too.
    public func drainValidationMessages() throws -> [String] {
        guard let vulkan = self as? VulkanBackend, vulkan.instance.validationEnabled else { return [] }
        try vulkan.synchronize()
        return vulkan.instance.validationLog.drain()
    }
}
