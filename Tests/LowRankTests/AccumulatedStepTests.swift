import LowRank
@testable import LowRankModels
import Testing

@Suite("Accumulated steps with their micro-batches' losses read after the step")
struct AccumulatedStepTests {
    /// A micro-batch whose loss is not finite (a frozen weight poisoned after the first step):
    /// the error names the step and the op, the device skipped the optimizer step, so the adapter
    /// and the optimizer are those after step 1, and once the weight is mended the next step is
    /// the second step of a run that never failed, bit for bit.
    @Test(arguments: BackendKind.allCases)
    func aNonFiniteMicroBatchLossSkipsTheStep(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let trainer = { try CheckpointRecoveryTests.trainer(model, output: nil, steps: 2) { $0.saveEvery = nil; $0.gradientAccumulationSteps = 2 } }
            let adapterBytes = { (t: Trainer) in try t.adapter.parameters.map { try $0.tensor.bytes() } }
            let unbroken = try trainer()
            try unbroken.trainStep()
            try unbroken.trainStep()
            let expected = (unbroken.losses, try adapterBytes(unbroken))

            let broken = try trainer()
            try broken.trainStep()
            let afterOne = try adapterBytes(broken)
            let weight = try model.weight(NonFiniteTests.poisoned + ".weight"), kept = try weight.floats()
            try weight.assign([Float](repeating: .nan, count: kept.count))
            #expect { try broken.trainStep() } throws: { NonFiniteTests.namesTheFirstOp($0) && "\($0)".contains("the loss of step 2 is nan") }
            #expect(broken.step == 1 && broken.training.optimizer.step == 1 && !broken.training.hasPendingGradients)
            #expect(try adapterBytes(broken) == afterOne, "the failed step changed the adapter")
            try weight.assign(kept)
            try broken.trainStep()
            let adapter = try adapterBytes(broken)
            #expect(broken.losses == expected.0 && adapter == expected.1)
        }
    }
}
