import Foundation
import LowRank
@testable import LowRankModels
import Testing

/// A NaN or infinity is never a result: training, evaluation and checkpoints stop with an error
/// naming the first op (re-run op by op) or the tensor, and JSON never holds `nan`.
@Suite("Non-finite losses and weights are errors")
struct NonFiniteTests {
    static let poisoned = "model.layers.1.mlp.up_proj"

    /// The fixture model with one frozen weight all NaN.
    static func poisonedModel(on backend: any Backend = CPUBackend.shared) throws -> LlamaModel {
        let model = try LlamaFixtures.model(on: backend)
        let w = try model.weight(poisoned + ".weight")
        try w.assign([Float](repeating: .nan, count: w.shape.count))
        return model
    }

    static func namesTheFirstOp(_ error: any Error) -> Bool {
        let text = "\(error)"
        return text.contains("\(poisoned) (") && text.contains("first op whose output is not finite")
            && text.contains("\(poisoned).weight, itself not finite")
    }

    /// The step is refused before the optimizer takes it, and nothing is saved.
    @Test(arguments: BackendKind.allCases)
    func aNonFiniteLossStopsTrainingNamingTheOp(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let model = try Self.poisonedModel(on: backend)
            try withTemporaryFolder { folder in
                let trainer = try CheckpointRecoveryTests.trainer(model, output: folder)
                let before = try trainer.adapter.parameters.map { try $0.tensor.bytes() }
                #expect { try trainer.train() } throws: { Self.namesTheFirstOp($0) && "\($0)".contains("the loss of step 1 is nan") }
                #expect(trainer.step == 0)
                #expect(try trainer.adapter.parameters.map { try $0.tensor.bytes() } == before, "the failed step changed the adapter")
                let written = try FileManager.default.contentsOfDirectory(atPath: folder)
                #expect(written.isEmpty)
            }
        }
    }

    @Test func aNonFiniteLossStopsEvaluationNamingTheOp() throws {
        let model = try Self.poisonedModel()
        let data = try LlamaFixtures.data(model)
        #expect { try Evaluation(model: model, adapter: nil, data: data, batchSize: 4) } throws: {
            Self.namesTheFirstOp($0) && "\($0)".contains("rows: 0..<4 of \(data.path)")
        }
    }

    /// A trained-into-NaN adapter is not checkpointed; the error names its tensor.
    @Test func aNonFiniteAdapterIsNotCheckpointed() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let training = try AdapterTraining(model: model, adapter: try ModelAdapter(settings: CheckpointRecoveryTests.adapterSettings, on: model, seed: 1),
                                           settings: TrainingSettings(), totalSteps: nil)
        let (name, tensor) = training.adapter.parameters[1]
        try tensor.assign([Float](repeating: .infinity, count: tensor.shape.count))
        try withTemporaryFolder { folder in
            #expect { try training.writeCheckpoint(to: folder + "/checkpoint") } throws: { "\($0)".contains(name) }
            let written = try FileManager.default.contentsOfDirectory(atPath: folder)
            #expect(written.isEmpty)
        }
    }

    @Test func jsonNeverHoldsNaN() throws {
        let text = JSON.object(["loss": .number(.nan), "perplexity": .number(.infinity), "tokens": .number(3)]).serialized
        #expect(text == #"{"loss":null,"perplexity":null,"tokens":3}"#)
        #expect(try JSON.parse(Array(text.utf8))["loss"] == .null)
    }
}
