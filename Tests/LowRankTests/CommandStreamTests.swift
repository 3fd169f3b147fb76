@testable import LowRankVulkan
import LowRank
import Testing

@Suite("Command stream")
struct CommandStreamTests {
    /// A chain of 3000 dependent adds, each one dispatch, and beside it 3000 independent scales:
    /// the stream submits a command buffer every 1024 sets and records on while it runs (two in
    /// flight), orders each add after the last across those submissions (synchronization
    /// validation sees them), and a value read in the middle waits for what wrote it. The sums are
    /// exact in f32, so the results are the arithmetic's.
    @Test func recordsOnWhileSubmissionsRun() throws {
        try onBackend(.vulkan) { backend in
            let vulkan = backend as! VulkanBackend
            let one = try Tensor([Float](repeating: 1, count: 64), shape: [64], on: backend)
            var chain = try Tensor([Float](repeating: 0, count: 64), shape: [64], on: backend)
            var scaled: [Tensor] = []
            try backend.startProfiling()
            for i in 1...3000 {
                chain = try Ops.add(chain, one)
                if i % 3 == 0 { scaled.append(try Ops.scale(one, by: Float(i))) }
                if i == 1500 { #expect(try chain.floats() == [Float](repeating: 1500, count: 64)) }
            }
            #expect(try chain.floats() == [Float](repeating: 3000, count: 64))
            let profile = try backend.stopProfiling()
            #expect(profile.dispatches == 4000)
            // 2000 dispatches before the read (a full command buffer, then the rest at the read), and 2000 after.
            #expect(profile.submissions == 4, "\(String(describing: profile.submissions))")
            for (k, t) in scaled.enumerated() { #expect(try t.floats()[0] == Float(3 * (k + 1))) }
            #expect(!vulkan.stream.isRecording)
        }
    }
}
