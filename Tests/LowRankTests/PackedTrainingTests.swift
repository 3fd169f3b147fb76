import Foundation
import LowRank
import LowRankModels
import Testing

/// `--pack`: sequences packed best-fit decreasing into rows (`TokenDataset.packed(into:)`), each
/// position's RoPE position and attention restarting at its sequence, and no label predicting
/// across a boundary, so the loss and the adapter's gradients are those of the sequences unpacked.
@Suite("Packed training rows")
struct PackedTrainingTests {
    /// Best-fit decreasing: longest first, each into the row with the least room that holds it.
    /// Lengths 5, 9, 3, 7, 2, 8 into rows of 10: 9 | 8 2 | 7 3 | 5. The batch's labels stop at each
    /// sequence's last token, positions and starts restart, padding continues the last sequence.
    @Test func packsBestFitDecreasing() throws {
        let lengths = [5, 9, 3, 7, 2, 8]
        let rows = lengths.enumerated().map { i, n in (0..<n).map { Int32(10 * i + $0) } }
        let data = try TokenDataset(rows: rows, vocabularySize: 100)
        let packed = try data.packed(into: 10)
        #expect(packed.sequenceLengths == [[9], [8, 2], [7, 3], [5]])
        #expect(packed.rows == [rows[1], rows[5] + rows[4], rows[3] + rows[2], rows[0]])
        #expect(packed.predictedTokens == data.predictedTokens)
        #expect(data.positions(batchSize: 2) == (48, 34))
        #expect(packed.positions(batchSize: 4) == (40, 34))

        let batch = packed.batch([1, 3])
        #expect(batch.sequence == 10 && batch.predictedTokens == 7 + 1 + 4)
        let starts: [Int32] = Array(repeating: 0, count: 8) + [8, 8] + Array(repeating: 10, count: 10)
        #expect(batch.sequenceStarts == starts)
        let positions: [Int32] = Array(0..<8) + [0, 1] + Array(0..<10)
        #expect(batch.positions == positions)
        let ignored = CausalLMPlan.ignoredLabel
        let labels: [Int32] = [51, 52, 53, 54, 55, 56, 57, ignored, 41, ignored, 1, 2, 3, 4] + Array(repeating: ignored, count: 6)
        #expect(batch.labels == labels)
        #expect { try packed.packed(into: 10) } throws: { "\($0)".contains("packed already") }
        // TRL's own example (`pack_dataset`'s docstring: rows of 3, 2, 3 and 1 tokens into 4 give
        // seq_lengths [[3, 1], [3], [2]]), each length doubled, as a row here needs 2 tokens.
        let trl = try TokenDataset(rows: [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10], [11, 12, 13, 14, 15, 16], [17, 18]], vocabularySize: 32)
        #expect(try trl.packed(into: 8).sequenceLengths == [[6, 2], [6], [4]])
        #expect { try data.packed(into: 8) } throws: { "\($0)".contains("row 1 holds 9 tokens") }
    }

    /// The fixture's Llama with a DoRA adapter (B nonzero, so every tensor has a gradient) on
    /// sequences of 2 to 16 tokens, some labels masked: the loss of one batch of the packed rows of
    /// 16 equals that of one batch of the sequences unpacked within 1e-6 relative, and every adapter
    /// gradient within 2e-6 of its largest value (sums over other rows in other orders; measured:
    /// 3.2e-7 on the CPU backend, 3.7e-7 on lavapipe); with gradient checkpointing, the same bits.
    @Test(arguments: BackendKind.allCases)
    func lossAndGradientsEqualUnpacked(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dora: true), on: model, seed: 1)
            for (_, b) in adapter.parameters where b.shape.rank == 2 && b.shape[1] == 4 { try b.assign(randomValues(b.shape.count, seed: 9, scale: 0.5)) }
            let lengths = [7, 16, 2, 11, 5, 9, 3, 14, 6, 4]
            let vocabulary = model.config.vocabularySize
            let rows = lengths.enumerated().map { i, n in (0..<n).map { Int32((37 * i + 11 * $0) % vocabulary) } }
            // The first third of each sequence is a prompt, not trained on.
            let labels = rows.map { row in row.enumerated().map { $0 < row.count / 3 ? CausalLMPlan.ignoredLabel : $1 } }
            let data = try TokenDataset(rows: rows, labels: labels, vocabularySize: vocabulary, maxLength: 16)
            let packed = try data.packed(into: 16)
            #expect(packed.rows.count < data.rows.count)
            func run(_ data: TokenDataset, checkpointing: Bool = false) throws -> (Float, [[Float]]) {
                let batch = data.batch(data.rows.indices)
                let plan = try CausalLMPlan(model: model, adapter: adapter, batch: batch.rows, sequence: batch.sequence, training: true,
                                            checkpointing: checkpointing, packed: batch.sequenceStarts != nil)
                let out = try plan.run(batch)
                return (try out.loss.floats()[0], try out.gradients.map { try $0.floats() })
            }
            let (loss, gradients) = try run(data), (packedLoss, packedGradients) = try run(packed)
            // Gradient checkpointing recomputes each block from the same starts and positions: the same bits.
            let checkpointed = try run(packed, checkpointing: true)
            #expect(checkpointed.0 == packedLoss && checkpointed.1 == packedGradients, "with gradient checkpointing")
            let errors = zip(packedGradients, gradients).map { relativeError($0, $1.map(Double.init)) }
            print("packed loss on \(kind): \(packedLoss) vs unpacked \(loss); worst gradient \(errors.max() ?? 0)")
            #expect(abs(packedLoss - loss) <= 1e-6 * abs(loss))
            for (i, error) in errors.enumerated() { #expect(error <= 2e-6, "gradient \(i): \(error)") }
        }
    }

    /// `train --pack` and `eval --pack` on the fixture's six rows of 16 tokens, three to a row of
    /// 48: the packing and positions run are printed, and eval's loss is the unpacked loss;
    /// `--pack` without `--seq-len` is a usage error before anything is read.
    @Test func commandLinePacks() throws {
        let cli = CommandLineArgumentTests()
        try cli.expectRefused("--pack needs --seq-len", ["train", "--model", cli.model, "--data", cli.data, "--pack"])
        try cli.expectRefused("--pack needs --seq-len", ["eval", "--model", cli.model, "--data", cli.data, "--pack"])
        try withTemporaryFolder { folder in
            let trained = try cli.lowrank(["train", "--model", cli.model, "--data", cli.data, "--pack", "--seq-len", "48", "--steps", "1",
                                           "--batch-size", "2", "--adapter-out", folder + "/adapter"])
            #expect(trained.status == 0 && trained.output.contains("packed 6 sequences into 2 rows of at most 48 tokens; an epoch in batches of 2 "
                                                                   + "runs 96 positions (0.0% padding) packed, 96 positions (0.0% padding) unpacked"),
                    "\(trained.output)")
        }
        let losses = try [[], ["--pack", "--seq-len", "48"]].map { options in
            let run = try cli.lowrank(["eval", "--model", cli.model, "--data", cli.data, "--json"] + options)
            return try #require(try JSON.parse(Array(run.output.utf8))["loss"]?.number, "\(run.output)")
        }
        #expect(abs(losses[1] - losses[0]) <= 1e-6 * losses[0], "\(losses)")
    }
}
