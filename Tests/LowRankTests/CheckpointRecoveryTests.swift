import Foundation
import LowRank
@testable import LowRankModels
import Testing

/// A run killed at any point of writing or replacing a checkpoint: each intermediate state left on
/// disk, and the next start recovering it so that the resumed run ends bit for bit where an
/// unbroken one does.
@Suite("Checkpoint recovery after a kill")
struct CheckpointRecoveryTests {
    static let adapterSettings = try! AdapterSettings(rank: 2, alpha: 4, dropout: 0.1, targets: .names(["q_proj", "down_proj"]))

    static func trainer(_ model: LlamaModel, output: String?, steps: Int = 4, change: (inout TrainingSettings) -> Void = { _ in },
                        data: TokenDataset? = nil) throws -> Trainer {
        var settings = LlamaTrainingTests.settings(steps: steps, saveEvery: 1)
        change(&settings)
        return try Trainer(model: model, adapter: try ModelAdapter(settings: adapterSettings, on: model, seed: 3),
                           data: try data ?? LlamaFixtures.data(model), settings: settings, output: output)
    }

    /// An output folder after two steps with a checkpoint each: checkpoint-2 and the losses.
    static func twoSteps(_ model: LlamaModel, into folder: String) throws {
        let run = try trainer(model, output: folder)
        for _ in 0..<2 {
            try run.trainStep()
            try run.saveCheckpoint()
        }
    }

    /// Starts again on `folder`, resumes, trains to the end, and checks the adapter against an
    /// unbroken run's, bit for bit; returns the step it resumed at.
    static func resumeAndFinish(_ model: LlamaModel, _ folder: String, unbroken: Trainer) throws -> Int? {
        let run = try trainer(model, output: folder)
        let resumed = try run.resume()
        try run.train()
        #expect(run.losses == unbroken.losses)
        for ((name, got), (_, want)) in zip(run.adapter.parameters, unbroken.adapter.parameters) {
            #expect(try got.bytes() == want.bytes(), "\(name) differs after recovering and resuming")
        }
        return resumed
    }

    static func names(_ folder: String) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: folder).sorted() }

    /// Each state a kill can leave, made from a clean output folder, and the step the next start
    /// must resume at.
    static let crashPoints: [(name: String, resumesAt: Int, make: @Sendable (String) throws -> Void)] = [
        // A second kill while a resumed run replaced its final checkpoint, cut short in removing the
        // old one: its state file without its adapter (the old code then failed on every --resume).
        ("old final half removed beside a complete .partial", 2, { folder in
            let c = folder + "/checkpoint-2"
            try FileManager.default.copyItem(atPath: c, toPath: c + ".partial")
            for file in ["adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors"] { try FileManager.default.removeItem(atPath: c + "/" + file) }
        }),
        // Killed after the old one was gone and before the rename: only the complete .partial
        // (the old code ignored it and restarted at step 0).
        ("only a complete .partial", 2, { folder in
            try FileManager.default.moveItem(atPath: folder + "/checkpoint-2", toPath: folder + "/checkpoint-2.partial")
        }),
        // Killed between replaceFolder's renames: the old checkpoint set aside, the new one complete.
        ("set aside, with the new one still .partial", 2, { folder in
            let c = folder + "/checkpoint-2"
            try FileManager.default.copyItem(atPath: c, toPath: c + ".partial")
            try FileManager.default.moveItem(atPath: c, toPath: c + ".partial.old")
        }),
        // Killed between the renames with the staged folder already removed by hand: the aside comes back.
        ("only set aside", 2, { folder in
            try FileManager.default.moveItem(atPath: folder + "/checkpoint-2", toPath: folder + "/checkpoint-2.partial.old")
        }),
        // Killed while writing the next one: an incomplete .partial (no state file) and a
        // half-written file in it and beside it.
        ("incomplete .partial and .tmp files", 2, { folder in
            let p = folder + "/checkpoint-3.partial"
            try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: false)
            try FileManager.default.copyItem(atPath: folder + "/checkpoint-2/adapter_model.safetensors", toPath: p + "/adapter_model.safetensors")
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: p + "/optimizer.safetensors.4242.tmp"))
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: folder + "/adapter_model.safetensors.4242.tmp"))
        }),
        // Killed while removing an older checkpoint after writing a newer one.
        ("older checkpoint half removed", 2, { folder in
            let old = folder + "/checkpoint-1"
            try FileManager.default.copyItem(atPath: folder + "/checkpoint-2", toPath: old)
            try FileManager.default.removeItem(atPath: old + "/adapter_config.json")
        }),
    ]

    @Test(arguments: 0..<crashPoints.count)
    func nextStartRecovers(_ index: Int) throws {
        let point = Self.crashPoints[index]
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let unbroken = try Self.trainer(model, output: nil)
        try unbroken.train()
        try withTemporaryFolder { folder in
            try Self.twoSteps(model, into: folder)
            try point.make(folder)
            #expect(try Self.resumeAndFinish(model, folder, unbroken: unbroken) == point.resumesAt, "\(point.name)")
            #expect(try Self.names(folder) == ["adapter_config.json", "adapter_model.safetensors", "checkpoint-4", "loss.svg"], "\(point.name)")
            #expect(try Self.names(folder + "/checkpoint-4") == ["adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"])
        }
    }

    /// A checkpoint written over one of the same step (a resumed run at its end) goes through the
    /// .partial and leaves nothing else behind.
    @Test func replacingACheckpointLeavesOnlyIt() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        try withTemporaryFolder { folder in
            try Self.twoSteps(model, into: folder)
            let before = try Data(contentsOf: URL(fileURLWithPath: folder + "/checkpoint-2/adapter_model.safetensors"))
            let run = try Self.trainer(model, output: folder)
            #expect(try run.resume() == 2)
            try run.saveCheckpoint()
            #expect(try Self.names(folder) == ["checkpoint-2"])
            #expect(try Data(contentsOf: URL(fileURLWithPath: folder + "/checkpoint-2/adapter_model.safetensors")) == before)
        }
    }

    /// The C ABI's checkpoint folder is any folder: one that holds something else is not replaced.
    @Test func aFolderThatIsNotACheckpointIsNotReplaced() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let training = try AdapterTraining(model: model, adapter: try ModelAdapter(settings: Self.adapterSettings, on: model, seed: 1),
                                           settings: TrainingSettings(), totalSteps: nil)
        try withTemporaryFolder { folder in
            try Data([7]).write(to: URL(fileURLWithPath: folder + "/notes.txt"))
            #expect { try training.writeCheckpoint(to: folder) } throws: { "\($0)".contains("not a checkpoint") }
            #expect(try Self.names(folder) == ["notes.txt"])
        }
    }
}
