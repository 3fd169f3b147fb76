@testable import LowRankVulkan
import LowRank
@testable import LowRankModels
import Testing

@Suite("A plan's runs reuse its memory")
struct PlanMemoryTests {
    /// From the third run on (each of the two input slots filled once), a training plan's run
    /// with dropout, LoRA or DoRA, packed or not, allocates no device memory: its inputs go into
    /// the plan's slots and its encoders' scratch is the plan's, of the bytes sized before the first
    /// run (`ExecutionPlan.repeatScratchBytes`); and it gives the losses and
    /// gradients of runs on a plan made afresh for each batch, bit for bit.
    @Test(arguments: [false, true], [false, true])
    func warmRunsAllocateNothing(dora: Bool, packed: Bool) throws {
        try onBackend(.vulkan) { shared in
            let vulkan = try (shared as! VulkanBackend).sibling()
            let model = try LlamaFixtures.model(on: vulkan)
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dropout: 0.1, dora: dora, targets: .allLinear),
                                           on: model, seed: 5)
            let rows = (0..<5).map { r in (0..<8).map { Int32(($0 * 7 + r * 3) % 64) } }
            // Packed: each row two sequences, of 3 and 5 tokens.
            let batches = (0..<5).map { i in
                TokenBatch([rows[i], rows[(i + 2) % 5]], sequenceLengths: packed ? [[3, 5], [3, 5]] : nil)
            }
            let plan = try CausalLMPlan(model: model, adapter: adapter, batch: 2, sequence: 8, training: true, packed: packed)
            var reused: [[UInt8]] = []
            for (i, batch) in batches.enumerated() {
                try vulkan.synchronize()
                vulkan.resetPeakMemory()
                let before = vulkan.memoryStatistics()[0].currentBytes
                let result = try plan.run(batch, seed: UInt32(i))
                try vulkan.synchronize()
                if i >= 2 { #expect(vulkan.memoryStatistics()[0].peakBytes == before, "run \(i + 1) allocated device memory") }
                reused.append(try ([result.loss] + result.gradients).flatMap { try $0.bytes() })
            }
            // The scratch the runs keep is what the plan sized before any ran.
            #expect(vulkan.keptScratchBytes(of: ObjectIdentifier(plan.plan)) == (try plan.plan.repeatScratchBytes()))
            #expect(try plan.plan.repeatScratchBytes() > 0)
            for (i, batch) in batches.enumerated() {
                let fresh = try CausalLMPlan(model: model, adapter: adapter, batch: batch.rows, sequence: 8, training: true, packed: packed)
                let result = try fresh.run(batch, seed: UInt32(i))
                #expect(try ([result.loss] + result.gradients).flatMap { try $0.bytes() } == reused[i], "run \(i + 1)")
            }
        }
    }
}
