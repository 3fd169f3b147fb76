import LowRank
import LowRankModels
import Testing

extension CommandLineArgumentTests {
    /// `--trainable-token-indices` takes token ids, plans (`--dry-run`) and trains with the rows,
    /// and saves them as PEFT does; a malformed list or an id beyond the vocabulary is refused by name.
    @Test func trainableTokenIndicesTrainAndAreChecked() throws {
        try expectRefused("--trainable-token-indices", ["train", "--model", model, "--data", data, "--trainable-token-indices", "1,x"])
        let planned = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--dry-run", "--seq-len", "8", "--trainable-token-indices", "3,5"])
        #expect(planned.status == 0, "\(planned.output)")
        let outside = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "1", "--trainable-token-indices", "64"])
        #expect(outside.status != 0 && outside.output.contains("trainable_token_indices holds 64"), "\(outside.output)")
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "2",
                                                "--trainable-token-indices", "27, 2", "--adapter-out", folder])
            #expect(status == 0, "\(output)")
            #expect(try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName).trainableTokenIndices == [27, 2])
            let saved = try SafetensorsFile(path: folder + "/" + ModelAdapter.weightsName)
            #expect(try saved.entry(TrainableTokens.key).shape == [2, 32])
        }
    }
}
