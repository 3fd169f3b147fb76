@testable import LowRankVulkan
import LowRank
@testable import LowRankModels
import Testing

@Suite("Training steps replaying their plan's recorded commands")
struct RecordedStepTests {
    /// A trainer of the fixture model with dropout, a warmed-up cosine schedule and clipping, so
    /// that each step's dropout seed, learning rate and bias corrections differ.
    static func trainer(on vulkan: VulkanBackend, steps: Int, dora: Bool, accumulation: Int = 1) throws -> Trainer {
        let model = try LlamaFixtures.model(on: vulkan)
        var settings = LlamaTrainingTests.settings(steps: steps)
        settings.warmupSteps = 2
        settings.maxGradientNorm = 0.5
        settings.gradientAccumulationSteps = accumulation
        let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dropout: 0.1, dora: dora, targets: .allLinear),
                                       on: model, seed: 5)
        return try Trainer(model: model, adapter: adapter, data: try LlamaFixtures.data(model), settings: settings, output: nil)
    }

    /// Five steps on a backend of their own that replays recorded runs or encodes each afresh.
    static func train(_ shared: any Backend, dora: Bool, accumulation: Int, replays: Bool) throws -> (bytes: [[UInt8]], replays: Int) {
        let vulkan = try (shared as! VulkanBackend).sibling()
        vulkan.replaysRepeats = replays
        let trainer = try Self.trainer(on: vulkan, steps: 5, dora: dora, accumulation: accumulation)
        try trainer.train()
        try vulkan.synchronize()
        return ([trainer.losses.withUnsafeBytes { Array($0) }] + (try trainer.adapter.parameters.map { try $0.tensor.bytes() }), vulkan.stream.replayCount)
    }

    /// Under validation and synchronization validation, steps queued two ahead as `Trainer` runs
    /// them (LoRA and DoRA, one batch a step or two or three micro-batches accumulated, their
    /// losses unread until the step) give the losses and adapter of steps encoded afresh, bit for
    /// bit, when their plan's runs replay the commands recorded by the first run on each input slot.
    @Test(arguments: [false, true], [1, 2, 3])
    func replayedStepsAreTheStepsEncodedAfresh(dora: Bool, accumulation: Int) throws {
        try onBackend(.vulkan) { backend in
            let replayed = try Self.train(backend, dora: dora, accumulation: accumulation, replays: true)
            let afresh = try Self.train(backend, dora: dora, accumulation: accumulation, replays: false)
            #expect(replayed.bytes == afresh.bytes)
            #expect(afresh.replays == 0)
            // Every run after the first on each of the two slots, of each batch shape planned.
            let runs = 5 * accumulation
            #expect(replayed.replays >= runs - 4, "\(replayed.replays) of \(runs) runs replayed")
        }
    }

    /// A training step (forward, backward, clipping and AdamW, warming up) is one submission once
    /// both input slots are recorded: nothing encoded afresh, its rate and bias corrections copied
    /// from the recording's stage, its loss read after the next step is queued.
    @Test func aReplayedTrainingStepIsOneSubmission() throws {
        try onBackend(.vulkan) { shared in
            let vulkan = try (shared as! VulkanBackend).sibling()
            let trainer = try Self.trainer(on: vulkan, steps: 6, dora: false)
            let batch = try trainer.data.batch(trainer.rows(forStep: 0))
            var submissions: [Int] = [], logged: [Int] = [], waiting: AdapterTraining.QueuedStep?
            for _ in 0..<6 {
                let before = vulkan.stream.submissionCount
                vulkan.stream.log = []
                let queued = try trainer.training.queueStep(on: batch)
                submissions.append(vulkan.stream.submissionCount - before)
                logged.append(vulkan.stream.log!.count)
                if let waiting { _ = try trainer.training.complete(waiting) }
                waiting = queued
            }
            _ = try trainer.training.complete(waiting!)
            #expect(submissions[2...].allSatisfy { $0 == 1 } && logged[2...].allSatisfy { $0 == 0 }, "submissions \(submissions), commands logged \(logged) per step")
            #expect(vulkan.stream.replayCount == 4 && trainer.training.step == 6 && trainer.training.optimizer.step == 6)
        }
    }

    /// An accumulated step's micro-batches are queued without the host waiting for anything: their
    /// losses are read once, after the optimizer step is queued. From the third step on (both
    /// input slots recorded, every sum allocated) a micro-batch replays its plan's recording, and
    /// its weighting is encoded after it and submitted with what follows: two submissions a
    /// micro-batch (the last one's weighting, the averaging and AdamW in the second), one wait a step.
    @Test func accumulatedMicroBatchesAreNotWaitedFor() throws {
        try onBackend(.vulkan) { shared in
            let vulkan = try (shared as! VulkanBackend).sibling()
            let trainer = try Self.trainer(on: vulkan, steps: 5, dora: false, accumulation: 2)
            let batch = try trainer.data.batch(trainer.rows(forStep: 0))
            var waits: [Int] = [], stepWaits: [Int] = [], submissions: [Int] = []
            for _ in 0..<5 {
                let (waited, submitted) = (vulkan.stream.waitCount, vulkan.stream.submissionCount)
                for _ in 0..<2 { try trainer.training.queueMicroBatch(batch) }
                waits.append(vulkan.stream.waitCount - waited)
                try trainer.training.applyAccumulated()
                submissions.append(vulkan.stream.submissionCount - submitted)
                stepWaits.append(vulkan.stream.waitCount - waited)
            }
            #expect(waits[2...].allSatisfy { $0 == 0 }, "host waits while micro-batches were queued, per step: \(waits)")
            #expect(submissions[2...].allSatisfy { $0 == 2 * 2 } && stepWaits[2...].allSatisfy { $0 == 1 }, "submissions \(submissions), waits \(stepWaits) per step")
            #expect(trainer.training.step == 5 && trainer.training.optimizer.step == 5)
        }
    }

    /// A checkpoint restored after steps were recorded is what the replayed steps update: its
    /// moments are written into the tensors the recordings bind, so the steps after it are those
    /// of the run that never left it.
    @Test func recordedStepsContinueFromARestoredCheckpoint() throws {
        try onBackend(.vulkan) { shared in
            let vulkan = try (shared as! VulkanBackend).sibling()
            let trainer = try Self.trainer(on: vulkan, steps: 6, dora: false)
            let training = trainer.training
            let batches = try (0..<6).map { try trainer.data.batch(trainer.rows(forStep: $0)) }
            try withTemporaryFolder { folder in
                for b in batches[0..<2] { try training.step(on: b) }
                try training.writeCheckpoint(to: folder + "/checkpoint-2")
                for b in batches[2...] { try training.step(on: b) }
                let unbroken = (training.losses, try training.adapter.parameters.map { try $0.tensor.bytes() })
                try training.restore(fromCheckpoint: folder + "/checkpoint-2", state: try AdapterTraining.checkpointState(in: folder + "/checkpoint-2"))
                let replays = vulkan.stream.replayCount
                for b in batches[2...] { try training.step(on: b) }
                #expect(vulkan.stream.replayCount == replays + 4)
                let adapter = try training.adapter.parameters.map { try $0.tensor.bytes() }
                #expect(training.losses == unbroken.0 && adapter == unbroken.1)
            }
        }
    }

    /// A replayed run records no dispatch: the host's work is the step scalars' update and the
    /// submission.
    @Test func aReplayedRunRecordsNoDispatch() throws {
        try onBackend(.vulkan) { shared in
            let vulkan = try (shared as! VulkanBackend).sibling()
            let model = try LlamaFixtures.model(on: vulkan)
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dropout: 0.1, targets: .allLinear), on: model, seed: 5)
            let plan = try CausalLMPlan(model: model, adapter: adapter, batch: 1, sequence: 8, training: true)
            let batch = TokenBatch([(0..<8).map { Int32($0 * 5 % 64) }])
            var logged: [Int] = []
            for run in 0..<4 {
                vulkan.stream.log = []
                _ = try plan.run(batch, seed: UInt32(run)).loss.floats()
                logged.append(vulkan.stream.log!.count)
            }
            #expect(logged[0] > 0 && logged[1] == logged[0] && logged[2...].allSatisfy { $0 == 0 }, "commands logged per run: \(logged)")
            #expect(vulkan.stream.replayCount == 2)
        }
    }
}
