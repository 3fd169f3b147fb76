import Foundation
import LowRank
import LowRankModels
import Testing

@Suite("Validation during training")
struct TrainingValidationTests {
    /// Validation every 2 steps of 5 (and at the last) records the loss an `Evaluation` of the adapter
    /// as it then was gives; the best step's checkpoint survives newer ones, holds that very adapter,
    /// and every later trainer state names it; loss.svg draws the validation series; a resumed run
    /// takes the recorded losses back.
    @Test(arguments: BackendKind.allCases)
    func validationRecordsLossesAndKeepsTheBestCheckpoint(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let data = try LlamaFixtures.data(model)
            // One token repeated: its loss falls, then rises (best at step 4 of 5 on both backends), so the best checkpoint is not the last.
            let held = try TokenDataset(rows: [Array(repeating: 3, count: 12)], path: "held-out", vocabularySize: model.config.vocabularySize)
            var settings = LlamaTrainingTests.settings(steps: 5)
            settings.learningRate = 0.2
            try withTemporaryFolder { folder in
                let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, targets: .names(["q_proj", "v_proj"])), on: model, seed: 1)
                var reported: [Int: Double] = [:], expected: [Int: Double] = [:]
                do {
                    let trainer = try Trainer(model: model, adapter: adapter, data: data, settings: settings, output: folder)
                    trainer.validation = try TrainingValidation(data: held, every: 2, batchSize: 2, model: model, adapter: adapter)
                    try trainer.train { progress in
                        guard let v = progress.validation else { return }
                        reported[progress.step] = v.loss
                        expected[progress.step] = try? Evaluation(model: model, adapter: adapter, data: held, batchSize: 2).loss
                    }
                    let validation = try #require(trainer.validation)
                    #expect(validation.losses.map(\.step) == [2, 4, 5])
                    #expect(reported == expected)
                    let best = try #require(validation.best)
                    print("validation on \(kind): \(validation.losses), best step \(best.step)")
                    #expect(best.loss == validation.losses.map(\.loss).min())
                    #expect(best.step < 5)
                    let state = try AdapterTraining.checkpointState(in: folder + "/checkpoint-5")
                    #expect(state["best_checkpoint"] == .string("checkpoint-\(best.step)"))
                    #expect(state["best_validation_loss"]?.number == best.loss)
                    #expect(state["validation_losses"]?.array?.count == 3)
                    let checkpoints = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("checkpoint-") }.sorted()
                    #expect(checkpoints == Set(["checkpoint-\(best.step)", "checkpoint-5"]).sorted())
                    let bestAdapter = try ModelAdapter(contentsOf: folder + "/checkpoint-\(best.step)", on: model)
                    #expect(try Evaluation(model: model, adapter: bestAdapter, data: held, batchSize: 2).loss == best.loss)
                    let svg = String(decoding: try FileIO.read(folder + "/loss.svg"), as: UTF8.self)
                    #expect(svg.contains("validation: best"))
                }
                let resumed = try Trainer(model: model, adapter: try ModelAdapter(settings: adapter.settings, on: model, seed: 1),
                                          data: data, settings: settings, output: folder)
                resumed.validation = try TrainingValidation(data: held, every: 2, batchSize: 2, model: model, adapter: resumed.adapter)
                #expect(try resumed.resume() == 5)
                #expect(resumed.validation?.losses.map(\.step) == [2, 4, 5])
            }
        }
    }

    /// `lowrank train --valid-data --eval-every` names the best checkpoint, and that checkpoint's
    /// state agrees; `--eval-every` alone is refused; text data on a model folder without
    /// tokenizer.json is an error naming the file and line.
    @Test func commandLine() throws {
        try withTemporaryFolder { folder in
            let data = LlamaFixtures.path("data.jsonl")
            let train = ["train", "--model", LlamaFixtures.path("tiny-llama"), "--data", data, "--adapter-out", folder,
                         "--steps", "3", "--batch-size", "2", "--device", "cpu", "--valid-data", data]
            let run = try LowrankBinary.run(train + ["--eval-every", "2"])
            #expect(run.status == 0)
            let named = try #require(run.output.split(separator: "\n").first { $0.hasPrefix("best validation loss") }, "\(run.output)")
            let step = try #require(named.split(separator: "checkpoint-").last.flatMap { Int($0) })
            let state = try AdapterTraining.checkpointState(in: folder + "/checkpoint-\(step)")
            #expect(state["best_checkpoint"] == .string("checkpoint-\(step)"))
            #expect(try LowrankBinary.run(Array(train.dropLast(2)) + ["--eval-every", "2"]).status != 0)

            let text = folder + "/text.jsonl"
            try FileIO.writeAtomically(text, text: "{\"input_ids\": [1, 2, 3]}\n{\"text\": \"hello\"}\n")
            let eval = try LowrankBinary.run(["eval", "--model", LlamaFixtures.path("tiny-llama"), "--data", text, "--device", "cpu", "--json"])
            #expect(eval.status != 0)
            #expect(eval.output.contains("needs a tokenizer") && eval.output.contains("line: 2"), "\(eval.output)")
        }
    }
}
