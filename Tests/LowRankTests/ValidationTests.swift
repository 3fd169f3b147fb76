@testable import LowRankVulkan
import LowRank
import Testing

@Suite("Vulkan validation")
struct ValidationTests {
    /// The suite's guarantee against missing barriers rests on synchronization validation seeing
    /// them (lavapipe runs dispatches in order, so results alone cannot): drop the barriers and
    /// check that a read-after-write hazard is reported. The backend and its instance are the
    /// test's own: on the shared backend, another test's synchronize could submit the write before
    /// the read is recorded (no hazard left to see), and the other tests would run without
    /// barriers meanwhile; on the shared instance, a concurrent test could drain the hazard's
    /// message from the log (and fail on it) before this one reads it.
    @Test func synchronizationValidationCatchesAMissingBarrier() throws {
        let backend: VulkanBackend
        do {
            let identifier = try Engine.resolve(.vulkan(index: nil), validation: true)
            backend = try VulkanBackend(instance: try VulkanInstance.isolated(validation: true),
                                        index: Int(identifier.dropFirst("vulkan:".count))!)
        } catch {
            try Test.cancel("no Vulkan device with validation here: \(error)")
        }
        #expect(backend.instance.validationEnabled)
        let a = try Tensor(randomValues(64, seed: 1), shape: [64], on: backend)
        try backend.synchronize()
        _ = backend.instance.validationLog.drain()
        backend.stream.insertsBarriers = false
        defer { backend.stream.insertsBarriers = true }
        let b = try Ops.scale(a, by: 2)   // writes b
        let c = try Ops.add(b, a)         // reads b with no barrier in between
        _ = try c.floats()
        let messages = backend.instance.validationLog.drain()
        #expect(messages.contains { $0.contains("SYNC-HAZARD-READ-AFTER-WRITE") || $0.contains("SYNC-HAZARD") },
                "expected a synchronization hazard, got: \(messages)")
    }
}
