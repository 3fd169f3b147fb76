import Foundation
import LowRank
@testable import LowRankModels
import Testing

/// `resume()` continues only the run a checkpoint was made by: any setting the steps depend on,
/// the data, the adapter or the model differing is refused, naming it.
@Suite("Resume refuses a checkpoint of another run")
struct ResumeRefusalTests {
    static let changes: [(setting: String, change: @Sendable (inout TrainingSettings) -> Void)] = [
        ("learning_rate", { $0.learningRate *= 2 }),
        ("schedule", { $0.schedule = .linear }),
        ("warmup_steps", { $0.warmupSteps = 2 }),
        ("total_steps", { $0.steps = 5 }),
        ("max_grad_norm", { $0.maxGradientNorm = nil }),
        ("weight_decay", { $0.weightDecay = 0 }),
        ("batch_size", { $0.batchSize = 3 }),
        ("seed", { $0.seed = 8 }),
        ("shuffle", { $0.shuffle = false }),
    ]

    static func refusal(_ make: () throws -> Trainer) throws -> String {
        let trainer = try make()
        var message = ""
        #expect { try trainer.resume() } throws: { message = "\($0)"; return true }
        #expect(trainer.step == 0)
        return message
    }

    @Test func anotherSettingIsRefusedByName() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        try withTemporaryFolder { folder in
            try CheckpointRecoveryTests.twoSteps(model, into: folder)
            for (setting, change) in Self.changes {
                let message = try Self.refusal { try CheckpointRecoveryTests.trainer(model, output: folder, change: change) }
                #expect(message.contains("made with \(setting) "), "\(setting): \(message)")
            }
            // The same settings resume.
            #expect(try CheckpointRecoveryTests.trainer(model, output: folder).resume() == 2)
        }
    }

    /// Other data of the same row count, data cut by another --seq-len, another adapter and
    /// another model (the same architecture with another norm weight).
    @Test func otherDataAdapterOrModelIsRefusedByName() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let rows = try LlamaFixtures.data(model).rows
        let vocabulary = model.config.vocabularySize
        try withTemporaryFolder { folder in
            try CheckpointRecoveryTests.twoSteps(model, into: folder)
            var edited = rows
            edited[0][1] = (edited[0][1] + 1) % Int32(vocabulary)
            let sameCount = try TokenDataset(rows: edited, vocabularySize: vocabulary)
            #expect(try Self.refusal { try CheckpointRecoveryTests.trainer(model, output: folder, data: sameCount) }.contains("made with data_digest "))
            let shorter = try TokenDataset(rows: rows.map { Array($0.prefix(rows.map(\.count).max()! - 1)) }, vocabularySize: vocabulary)
            #expect(try Self.refusal { try CheckpointRecoveryTests.trainer(model, output: folder, data: shorter) }.contains("made with tokens "))
            let otherAdapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 4, targets: .names(["q_proj", "down_proj"])), on: model, seed: 3)
            let message = try Self.refusal {
                try Trainer(model: model, adapter: otherAdapter, data: try LlamaFixtures.data(model), settings: LlamaTrainingTests.settings(steps: 4, saveEvery: 1), output: folder)
            }
            #expect(message.contains("made with adapter "), "\(message)")
            try model.weight("model.norm.weight").assign(try model.weight("model.norm.weight").floats().map { $0 * 2 })
            #expect(try Self.refusal { try CheckpointRecoveryTests.trainer(model, output: folder) }.contains("made with model "))
        }
    }
}
