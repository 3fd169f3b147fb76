import Foundation
import Glibc
import LowRank
@testable import LowRankModels
import Testing

/// The `lowrank` binary built beside this test bundle, run as a user runs it.
enum LowrankBinary {
    static var path: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("lowrank").path
    }

    /// Starts `lowrank arguments`, stdout captured, stderr discarded.
    static func start(_ arguments: [String]) throws -> (Process, Pipe) {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw LowRankError(.io, "no lowrank binary beside the tests: build every product (swift build --build-tests) first", context: [("file", path)])
        }
        let process = Process(), output = Pipe()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        return (process, output)
    }

    /// Runs it to the end: the exit status and stdout.
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let (process, output) = try start(arguments)
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }
}

@Suite("The lowrank command's outputs under kills and non-finite results")
struct CommandLineOutputTests {
    static func trainArguments(_ out: String) -> [String] {
        ["train", "--model", LlamaFixtures.path("tiny-llama"), "--data", LlamaFixtures.path("data.jsonl"), "--adapter-out", out,
         "--steps", "24", "--save-every", "1", "--batch-size", "2", "--device", "cpu", "--seed", "5", "--dropout", "0.1",
         "--lr", "0.02", "--schedule", "cosine", "--warmup", "1", "--clip", "1", "--targets", "q_proj,down_proj", "--resume"]
    }

    /// Every file under `folder`, by relative path.
    static func tree(_ folder: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.subpathsOfDirectory(atPath: folder) where !FileIO.isDirectory(folder + "/" + name) {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
        }
        return files
    }

    /// `lowrank train --resume` killed with SIGKILL at random moments, restarted each time until a
    /// run finishes (eight kills, a few seconds in all), ends with the files of an unbroken run, bit for bit,
    /// and nothing else.
    @Test func killedAtRandomMomentsResumesBitForBit() throws {
        try withTemporaryFolder { folder in
            let clock = ContinuousClock(), started = clock.now
            let unbroken = try LowrankBinary.run(Self.trainArguments(folder + "/unbroken"))
            #expect(unbroken.status == 0)
            let runMilliseconds = max(50, Int((clock.now - started).inSeconds * 1000))

            var kills: [Int] = [], finished = false
            // Eight kills, or as many as fit in 15 s on a busy machine, then a run left to finish.
            let deadline = clock.now + .seconds(15)
            while !finished {
                let (process, output) = try LowrankBinary.start(Self.trainArguments(folder + "/killed"))
                if kills.count < 8, clock.now < deadline {
                    // A third of a whole run at most, so that the shorter resumed runs are killed too.
                    let delay = Int.random(in: 0...runMilliseconds / 3)
                    usleep(useconds_t(delay * 1000))
                    if process.isRunning {
                        kill(process.processIdentifier, SIGKILL)
                        kills.append(delay)
                    }
                }
                _ = output.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                finished = process.terminationReason == .exit
                if finished { #expect(process.terminationStatus == 0, "after kills at \(kills) ms") }
            }
            print("killed \(kills.count) times (at \(kills) ms into runs of about \(runMilliseconds) ms)")
            #expect(!kills.isEmpty)
            let (got, want) = (try Self.tree(folder + "/killed"), try Self.tree(folder + "/unbroken"))
            #expect(got.keys.sorted() == want.keys.sorted(), "after kills at \(kills) ms")
            for (name, bytes) in want { #expect(got[name] == bytes, "\(name) differs after kills at \(kills) ms") }
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == ["killed", "unbroken"], "a lock file or staged folder left behind")
        }
    }

    /// `eval --json` on an adapter holding a NaN: a failing exit status, and stdout that parses,
    /// holding the error that names the first op.
    @Test func evalJSONIsAlwaysJSON() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path("lora"), on: model)
        let (name, tensor) = adapter.parameters[0]
        try tensor.assign([Float](repeating: .nan, count: tensor.shape.count))
        try withTemporaryFolder { folder in
            try adapter.save(to: folder)
            let result = try LowrankBinary.run(["eval", "--model", LlamaFixtures.path("tiny-llama"), "--adapter", folder,
                                                "--data", LlamaFixtures.path("data.jsonl"), "--json", "--device", "cpu"])
            #expect(result.status != 0)
            let json = try JSON.parse(Array(result.output.utf8))
            let error = try #require(json["error"]?.string)
            #expect(json["kind"]?.string == "numerical failure")
            let module = try #require(adapter.layers.first { name.contains($0.path + ".") }).path
            #expect(error.contains("\(module) (lora_forward) is the first op whose output is not finite"), "\(error)")
            #expect(error.contains("\(name), itself not finite"), "\(error)")
        }
    }
}
