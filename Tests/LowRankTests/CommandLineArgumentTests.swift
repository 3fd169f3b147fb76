import Foundation
import LowRank
import Testing

/// The `lowrank` tool's numeric arguments refused by name before anything runs, and `--clip 0`
/// and `--force-adapter` as documented. Runs the built tool (`LOWRANK_CLI`, else the debug build).
@Suite("lowrank command-line arguments")
struct CommandLineArgumentTests {
    static let tool = ProcessInfo.processInfo.environment["LOWRANK_CLI"] ?? GoldenCases.packageRoot.appendingPathComponent(".build/debug/lowrank").path
    let model = LlamaFixtures.path("tiny-llama"), data = LlamaFixtures.path("data.jsonl")

    /// The tool's exit status and its stdout and stderr together.
    func lowrank(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.tool)
        process.arguments = arguments + ["--device", "cpu"]
        let pipe = Pipe()
        (process.standardOutput, process.standardError) = (pipe, pipe)
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// Exit status 64 (a usage error, raised before any file is read) with `words` in the message.
    func expectRefused(_ words: String, _ arguments: [String]) throws {
        let (status, output) = try lowrank(arguments)
        #expect(status == 64 && output.contains(words), "lowrank \(arguments.joined(separator: " ")): \(status) \(output)")
    }

    /// `--r 9223372036854775807` trapped on an overflow and `--r 100000000` aborted out of memory;
    /// `--seq-len 0` trapped (a stride of 0); `--clip` below 0 is no norm.
    @Test func numericBoundsAreRefusedByName() throws {
        for r in ["9223372036854775807", "100000000", "0"] {
            try expectRefused("--r must be in 1...65536", ["train", "--model", model, "--data", data, "--r=" + r])
        }
        for length in ["0", "1", "-3"] {
            try expectRefused("--seq-len must be at least 2", ["train", "--model", model, "--data", data, "--seq-len=" + length])
            try expectRefused("--seq-len must be at least 2", ["eval", "--model", model, "--data", data, "--seq-len=" + length])
        }
        try expectRefused("--clip must be 0 (no clipping) or a positive number", ["train", "--clip=-1"])
        try expectRefused("--force-adapter applies to --init-adapter", ["train", "--force-adapter"])
    }

    /// `--clip 0` trains without clipping (Hugging Face's max_grad_norm = 0), where it was refused.
    @Test func clipZeroTrains() throws {
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train", "--clip", "0", "--steps", "2", "--adapter-out", folder + "/adapter"])
            #expect(status == 0 && output.contains("over 2 steps"), "\(output)")
        }
    }

    /// merge refuses a Llama adapter on a Qwen2 checkpoint whose shapes fit, unless --force-adapter.
    @Test func mergeOfAnotherBaseModelNeedsForce() throws {
        try withTemporaryFolder { folder in
            let arguments = ["merge", "--model", LlamaFixtures.path("tiny-qwen2-bf16"), "--adapter", LlamaFixtures.path("lora"), "--out", folder + "/merged"]
            let refused = try lowrank(arguments)
            #expect(refused.status != 0 && refused.output.contains("--force-adapter") && refused.output.contains("LlamaForCausalLM"), "\(refused.output)")
            #expect(!FileManager.default.fileExists(atPath: folder + "/merged"))
            let forced = try lowrank(arguments + ["--force-adapter"])
            #expect(forced.status == 0, "\(forced.output)")
        }
    }
}
