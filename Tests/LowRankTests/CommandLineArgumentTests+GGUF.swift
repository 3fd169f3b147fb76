import Foundation
import LowRank
import Testing

extension CommandLineArgumentTests {
    /// `merge --out FILE.gguf` takes `--gguf-type`, not `--dtype`, and a folder output the reverse;
    /// a type that rounds most of the update away is warned about with `--gguf-type f32` as the fix.
    @Test func mergeToGGUFOptions() throws {
        try withTemporaryFolder { (folder: String) throws in
            let dora = LlamaFixtures.path("dora")
            try expectRefused("--gguf-type", ["merge", "--model", model, "--adapter", dora, "--out", folder + "/m.gguf", "--dtype", "f16"])
            try expectRefused("--gguf-type applies to an --out ending in .gguf", ["merge", "--model", model, "--adapter", dora, "--out", folder + "/m", "--gguf-type", "q8_0"])
            try expectRefused("--gguf-type", ["merge", "--model", model, "--adapter", dora, "--out", folder + "/m.gguf", "--gguf-type", "q5_1"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty)
            let (status, output) = try lowrank(["merge", "--model", model, "--adapter", dora, "--out", folder + "/m.gguf", "--gguf-type", "q4_0"])
            #expect(status == 0 && output.contains("merged 14 adapted modules into \(folder)/m.gguf"), "\(output)")
            #expect(output.contains("Merge with --gguf-type f32 to keep it") && output.contains("no tokenizer.json"), "\(output)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["m.gguf"])
        }
    }
}
