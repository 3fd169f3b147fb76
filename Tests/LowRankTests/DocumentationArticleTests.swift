import Foundation
import LowRank
import LowRankModels
import Testing

/// The Swift in the DocC catalogs runs: each test below holds the lines of one code listing
/// between `// listing: begin` and `// listing: end`, and fails when the listing (its `import`
/// lines aside) differs from them.
@Suite("DocC listings")
struct DocumentationArticleTests {
    static let sourceFile = #filePath

    /// The lines of the test's listing named `name`, without their common indentation.
    static func lines(of name: String) throws -> [String] {
        let source = String(decoding: try FileIO.read(sourceFile), as: UTF8.self).components(separatedBy: "\n")
        let begin = try #require(source.firstIndex { $0.hasSuffix("// listing: begin \(name)") })
        let end = try #require(source[begin...].firstIndex { $0.hasSuffix("// listing: end") })
        let body = source[(begin + 1)..<end]
        let indent = body.filter { !$0.isEmpty }.map { $0.prefix { $0 == " " }.count }.min() ?? 0
        return body.map { String($0.dropFirst(min(indent, $0.count))) }
    }

    /// The first ```swift listing of `article` (relative to the package root), `import` and blank
    /// lines after them dropped.
    static func listing(in article: String) throws -> [String] {
        let text = String(decoding: try FileIO.read(GoldenCases.packageRoot.appendingPathComponent(article).path), as: UTF8.self)
        let lines = text.components(separatedBy: "\n")
        let begin = try #require(lines.firstIndex(of: "```swift"))
        let end = try #require(lines[(begin + 1)...].firstIndex(of: "```"))
        return Array(lines[(begin + 1)..<end].drop { $0.hasPrefix("import ") || $0.isEmpty })
    }

    @Test func trainingAnAdapterRuns() throws {
        try withTemporaryFolder { folder in
            let (modelFolder, dataFile) = (LlamaFixtures.path("tiny-llama"), LlamaFixtures.path("data.jsonl"))
            let (adapterFolder, mergedFolder) = (folder + "/adapter", folder + "/merged")
            // listing: begin TrainingAnAdapter
            let backend = try Engine.backend()  // LOWRANK_DEVICE, else the best device found
            let checkpoint = try HuggingFaceCheckpoint(folder: modelFolder)
            let model = try LlamaModel(checkpoint: checkpoint, on: backend)
            let data = try TokenDataset(contentsOf: dataFile, vocabularySize: model.config.vocabularySize)
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 8, alpha: 16, targets: .allLinear), on: model, seed: 0)
            var settings = TrainingSettings()
            settings.learningRate = 1e-2
            settings.steps = 10
            let trainer = try Trainer(model: model, adapter: adapter, data: data, settings: settings, output: adapterFolder)
            try trainer.train { progress in print("step \(progress.step): loss \(progress.loss)") }
            let evaluation = try Evaluation(model: model, adapter: adapter, data: data, batchSize: 8)
            print("loss \(evaluation.loss), perplexity \(evaluation.perplexity)")
            let report = try checkpoint.write(merging: adapter, of: model, to: mergedFolder, dtype: .f32)
            // listing: end
            #expect(try Self.lines(of: "TrainingAnAdapter") == Self.listing(in: "Sources/LowRankModels/LowRankModels.docc/TrainingAnAdapter.md"))
            #expect(trainer.losses.count == 10 && evaluation.loss < Double(trainer.losses[0]), "\(trainer.losses) then \(evaluation.loss)")
            #expect(FileIO.exists(adapterFolder + "/" + ModelAdapter.weightsName) && report.roundingWarning == nil)
            let merged = try Evaluation(model: try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: mergedFolder), on: backend),
                                        adapter: nil, data: data, batchSize: 8)
            #expect(abs(merged.loss - evaluation.loss) / evaluation.loss < 1e-5, "\(merged.loss) vs \(evaluation.loss)")
        }
    }

    @Test func lowRankOverviewRuns() throws {
        // listing: begin LowRank
        let backend = try Engine.backend()          // LOWRANK_DEVICE, else the best device
        let x = try Tensor([1, 2, 3, 4], shape: [2, 2], on: backend)
        let y = try Ops.matmul(x, x, transposeB: true)
        print(try y.floats())                       // [5.0, 11.0, 11.0, 25.0]
        // listing: end
        #expect(try Self.lines(of: "LowRank") == Self.listing(in: "Sources/LowRank/LowRank.docc/LowRank.md"))
        #expect(try y.floats() == [5, 11, 11, 25])
    }
}
