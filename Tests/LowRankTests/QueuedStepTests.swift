import Foundation
import LowRank
@testable import LowRankModels
import Testing

@Suite("Training steps queued ahead of their loss")
struct QueuedStepTests {
    /// Five steps of the fixture model with dropout, clipping and a checkpoint after steps 2 and 4:
    /// `train()`, which queues a step before reading the last one's loss, gives the losses, the
    /// adapter and the checkpoints of `trainStep()` taken one at a time, bit for bit.
    @Test(arguments: BackendKind.allCases)
    func queuedStepsAreTheStepsOneAtATime(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let run = { (queued: Bool) throws -> [[UInt8]] in
                var settings = LlamaTrainingTests.settings(steps: 5, saveEvery: 2)
                settings.maxGradientNorm = 0.5
                let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dropout: 0.1, targets: .allLinear), on: model, seed: 5)
                return try withTemporaryFolder { folder in
                    let trainer = try Trainer(model: model, adapter: adapter, data: try LlamaFixtures.data(model), settings: settings, output: folder)
                    let checkpoint = { try ["adapter_model", "optimizer"].map { try FileIO.read(folder + "/checkpoint-4/\($0).safetensors") } }
                    var saved: [[UInt8]] = []
                    if queued {
                        // Read while step 5 is reported, before the last checkpoint replaces checkpoint-4.
                        try trainer.train { if $0.step == 5 { saved = (try? checkpoint()) ?? [] } }
                    } else {
                        while trainer.step < trainer.totalSteps {
                            try trainer.trainStep()
                            if trainer.step == 4 { try trainer.saveCheckpoint() }
                        }
                        saved = try checkpoint()
                    }
                    return [trainer.losses.withUnsafeBytes { Array($0) }] + saved + (try adapter.parameters.map { try $0.tensor.bytes() })
                }
            }
            #expect(try run(true) == run(false))
        }
    }

    /// A NaN loss found while the next step is queued: the error names the op, as one step at a
    /// time, and neither step reached the adapter.
    @Test(arguments: BackendKind.allCases)
    func aNonFiniteLossStopsTheQueue(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let model = try NonFiniteTests.poisonedModel(on: backend)
            let trainer = try CheckpointRecoveryTests.trainer(model, output: nil, steps: 4) { $0.saveEvery = nil }
            let before = try trainer.adapter.parameters.map { try $0.tensor.bytes() }
            #expect { try trainer.train() } throws: { NonFiniteTests.namesTheFirstOp($0) && "\($0)".contains("the loss of step 1 is nan") }
            #expect(trainer.step == 0 && trainer.training.optimizer.step == 0)
            #expect(try trainer.adapter.parameters.map { try $0.tensor.bytes() } == before, "a queued step changed the adapter")
        }
    }
}
