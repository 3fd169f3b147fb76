@testable import LowRankVulkan
import LowRank
import LowRankModels
import Testing

@Suite("Command stream")
struct CommandStreamTests {
    /// A chain of 3000 dependent adds, each one dispatch, and beside it 3000 independent scales:
    /// the stream submits a command buffer every 1024 dispatches and records on while it runs (two in
    /// flight), orders each add after the last across those submissions (synchronization
    /// validation sees them), and a value read in the middle waits for what wrote it. The sums are
    /// exact in f32, so the results are the arithmetic's. (On a backend of its own, which no other
    /// test's work shares.)
    @Test func recordsOnWhileSubmissionsRun() throws {
        try onBackend(.vulkan) { shared in
            let vulkan = try (shared as! VulkanBackend).sibling(), backend: any Backend = vulkan
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

    /// Through staging memory (a discrete GPU's path, forced on this device), uploads are copies
    /// recorded into the stream: 50 small uploads and the adds that read them go in one
    /// submission, made when the sum is read. An upload larger than the staging budget waits for
    /// its earlier parts to be copied, and arrives whole.
    @Test func uploadsAreRecordedCopies() throws {
        try onBackend(.vulkan) { backend in
            let staged = try (backend as! VulkanBackend).sibling(stagedTransfers: true)
            var sum = try Tensor([Float](repeating: 0, count: 256), shape: [256], on: staged)
            try staged.startProfiling()
            for i in 0..<50 { sum = try Ops.add(sum, try Tensor([Float](repeating: Float(i), count: 256), shape: [256], on: staged)) }
            #expect(try staged.stopProfiling().submissions == 1)
            #expect(try sum.floats() == [Float](repeating: 1225, count: 256))

            let count = VulkanBackend.stagingBudget / 4 + 1000
            let values = (0..<count).map { Float($0 % 4099) }
            let large = try Tensor(values, shape: [count], on: staged)
            #expect(try Ops.scale(large, by: 2).floats() == values.map { 2 * $0 })
        }
    }

    /// Two steps of the default job with every transfer staged: the same losses and adapter, bit
    /// for bit, as with tensors written and read in place.
    @Test func stagedTrainingIsTheSame() throws {
        try onBackend(.vulkan) { backend in
            let staged = try (backend as! VulkanBackend).sibling(stagedTransfers: true)
            let run = { (device: any Backend) throws -> ([Float], [[UInt8]]) in
                let model = try DefaultJob.model(on: device)
                let adapter = try ModelAdapter(settings: try DefaultJob.adapterSettings, on: model, seed: 0)
                var settings = DefaultJob.trainingSettings
                settings.steps = 2
                let trainer = try Trainer(model: model, adapter: adapter, data: try DefaultJob.data(), settings: settings, output: nil)
                try trainer.train()
                return (trainer.losses, try adapter.parameters.map { try $0.tensor.bytes() })
            }
            let (direct, stagedRun) = (try run(backend), try run(staged))
            #expect(direct.0 == stagedRun.0 && direct.1 == stagedRun.1)
        }
    }
}
