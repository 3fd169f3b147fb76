@testable import LowRankVulkan
import LowRank
@testable import LowRankModels
import Testing

@Suite("Descriptor sets written once per binding tuple")
struct DescriptorSetCacheTests {
    /// Six steps of the fixture model with dropout, a warmed-up cosine schedule (so each step's
    /// dropout seed, learning rate and bias corrections differ) and clipping; `accumulating`, two
    /// micro-batches a step. Each run is on a backend of its own; `afresh`, its descriptor sets
    /// are all forgotten after every step, so that every dispatch writes its own as before the cache.
    static func train(_ shared: any Backend, accumulating: Bool, afresh: Bool) throws -> (bytes: [[UInt8]], written: [Int]) {
        let vulkan = try (shared as! VulkanBackend).sibling()
        let model = try LlamaFixtures.model(on: vulkan)
        var settings = LlamaTrainingTests.settings(steps: 6)
        settings.warmupSteps = 2
        settings.maxGradientNorm = 0.5
        if accumulating { settings.gradientAccumulationSteps = 2 }
        let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dropout: 0.1, targets: .allLinear), on: model, seed: 5)
        let trainer = try Trainer(model: model, adapter: adapter, data: try LlamaFixtures.data(model), settings: settings, output: nil)
        var written: [Int] = []
        try trainer.train { _ in
            if afresh {
                try? vulkan.synchronize()
                try? vulkan.stream.resetDescriptorSets()
            }
            written.append(vulkan.stream.descriptorSets.writtenCount)
        }
        try vulkan.synchronize()
        return ([trainer.losses.withUnsafeBytes { Array($0) }] + (try adapter.parameters.map { try $0.tensor.bytes() }), written)
    }

    /// Steps that bind the sets earlier steps wrote give the losses and adapter of steps that
    /// write their own, bit for bit, queued two ahead and with micro-batches accumulated.
    @Test(arguments: [false, true])
    func cachedSetsGiveTheStepsWrittenAfresh(accumulating: Bool) throws {
        try onBackend(.vulkan) { backend in
            let cached = try Self.train(backend, accumulating: accumulating, afresh: false)
            let afresh = try Self.train(backend, accumulating: accumulating, afresh: true)
            #expect(cached.bytes == afresh.bytes)
            #expect(afresh.written.last! > cached.written.last!)
        }
    }

    /// At its capacity the cache waits for the submissions that bind its sets and starts over: a
    /// chain of 300 dependent adds on fresh tensors (a binding tuple of its own each) with the
    /// capacity lowered to 64 writes 300 sets, submits at every 64th (and at the read), and sums
    /// exactly; synchronization validation sees no set reset while a submission binds it.
    @Test func aFullCacheStartsOver() throws {
        try onBackend(.vulkan) { shared in
            let vulkan = try (shared as! VulkanBackend).sibling(), backend: any Backend = vulkan
            vulkan.stream.descriptorSets.capacity = 64
            let one = try Tensor([Float](repeating: 1, count: 64), shape: [64], on: backend)
            var chain = try Tensor([Float](repeating: 0, count: 64), shape: [64], on: backend)
            try backend.startProfiling()
            for _ in 0..<300 { chain = try Ops.add(chain, one) }
            #expect(try chain.floats() == [Float](repeating: 300, count: 64))
            let profile = try backend.stopProfiling()
            #expect(profile.descriptorSetsWritten == 300)
            #expect(profile.submissions == 5, "\(String(describing: profile.submissions))")
        }
    }

    /// The plan's buffers are fixed and encoder scratch comes back at the same offsets: once the
    /// queue holds its two steps, a training step writes no descriptor set.
    @Test func warmStepsWriteNoDescriptorSet() throws {
        try onBackend(.vulkan) { backend in
            let written = try Self.train(backend, accumulating: false, afresh: false).written
            #expect(written[0] > 0)
            #expect(written[3...].allSatisfy { $0 == written[2] }, "sets written by step: \(written)")
        }
    }
}
