import Foundation
import Glibc
import LowRank
@testable import LowRankModels
import Testing

/// `mpirun -np N lowrank train`, as a user runs it: CPU ranks on this machine.
enum MPIRun {
    /// mpirun on the PATH, or nil (CI installs Open MPI, so there the tests run).
    static let path: String? = (FileIO.environment("PATH") ?? "").split(separator: ":").map { $0 + "/mpirun" }
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    static let absent = "mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)"

    /// Starts `lowrank arguments` on `processes` ranks (one process without mpirun when 0), stdout
    /// and stderr into one pipe; one BLAS thread per rank, as the ranks share the cores.
    static func start(_ processes: Int, _ arguments: [String]) throws -> (Process, Pipe) {
        processes == 0 ? try start(LowrankBinary.path, arguments)
            : try start(path!, ["-np", "\(processes)", LowrankBinary.path] + arguments)
    }

    /// Starts `executable arguments`, mpirun as root and with more ranks than cores allowed.
    static func start(_ executable: String, _ arguments: [String]) throws -> (Process, Pipe) {
        let process = Process(), output = Pipe()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = executable == path ? ["--allow-run-as-root", "--oversubscribe"] + arguments : arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }
        process.standardOutput = output
        process.standardError = output
        try process.run()
        return (process, output)
    }

    /// Runs it to the end: the exit status and everything it printed.
    static func run(_ processes: Int, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try finish(try start(processes, arguments))
    }

    static func finish(_ started: (Process, Pipe)) throws -> (status: Int32, output: String) {
        let (process, output) = started
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    /// The processes mpirun `launcher` started (its children), by their rank.
    static func ranks(of launcher: Process) -> [Int: pid_t] {
        let pid = launcher.processIdentifier
        let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        var ranks: [Int: pid_t] = [:]
        for child in children.split(separator: " ").compactMap({ pid_t($0) }) {
            guard let environment = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(child)/environ")) else { continue }
            for variable in environment.split(separator: 0) {
                let text = String(decoding: variable, as: UTF8.self)
                if text.hasPrefix("OMPI_COMM_WORLD_RANK="), let rank = Int(text.dropFirst("OMPI_COMM_WORLD_RANK=".count)) { ranks[rank] = child }
            }
        }
        return ranks
    }
}

@Suite("Data-parallel training under mpirun, and gradient accumulation")
struct DataParallelTests {
    /// Shuffled rows, a cosine schedule with warm-up and clipping: everything the data order and
    /// the step depend on, except dropout (whose masks each rank draws for itself).
    static func arguments(_ out: String, batchSize: Int, steps: Int = 3, dora: Bool = false) -> [String] {
        ["train", "--model", LlamaFixtures.path("tiny-llama"), "--data", LlamaFixtures.path("data.jsonl"), "--adapter-out", out,
         "--steps", "\(steps)", "--batch-size", "\(batchSize)", "--device", "cpu", "--seed", "5", "--lr", "0.02",
         "--schedule", "cosine", "--warmup", "1", "--clip", "1", "--targets", "q_proj,v_proj,down_proj"] + (dora ? ["--dora"] : [])
    }

    /// Every tensor of the adapter saved in `got` within `relative` of the one in `want`, as the
    /// norm of their difference over the norm of `want`'s: the sums of one batch and of its parts
    /// round differently, and AdamW's normalisation magnifies that in the few elements whose
    /// gradient is near zero (a few 1e-5 of the tensor's largest value there), so single elements
    /// are not held to it. Returns the worst relative error.
    @discardableResult
    static func expectSameAdapter(_ got: String, _ want: String, relative: Double) throws -> Double {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        let (a, b) = (try ModelAdapter(contentsOf: got, on: model), try ModelAdapter(contentsOf: want, on: model))
        #expect(a.parameters.map(\.name) == b.parameters.map(\.name))
        var worst = 0.0
        for ((name, x), (_, y)) in zip(a.parameters, b.parameters) {
            let (g, w) = (try x.floats(), try y.floats())
            let difference = zip(g, w).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
            let norm = w.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            #expect(norm > 0 && difference <= relative * norm, "\(name): relative error \(difference / norm)")
            worst = max(worst, difference / norm)
        }
        print("adapters \(got) and \(want): worst relative error \(worst)")
        return worst
    }

    /// 2 ranks × 1 row step as 1 process × 2 rows: the same adapter after 3 AdamW steps, LoRA and DoRA.
    @Test(.enabled(if: MPIRun.path != nil, Comment(rawValue: MPIRun.absent)), arguments: [false, true])
    func twoRanksOfOneRowEqualOneProcessOfTwo(dora: Bool) throws {
        try withTemporaryFolder { folder in
            let one = try MPIRun.run(0, Self.arguments(folder + "/one", batchSize: 2, dora: dora))
            let two = try MPIRun.run(2, Self.arguments(folder + "/two", batchSize: 1, dora: dora))
            #expect(one.status == 0, "\(one.output)")
            #expect(two.status == 0, "\(two.output)")
            #expect(two.output.contains("on 2 processes"))
            try Self.expectSameAdapter(folder + "/two", folder + "/one", relative: 1e-5)
        }
    }

    /// 2 ranks × 2 micro-batches of 1 row step as 1 process × 4 rows; the fixture's 6 rows make the
    /// second step short, so a rank's share of its second micro-batch is empty.
    @Test(.enabled(if: MPIRun.path != nil, Comment(rawValue: MPIRun.absent)))
    func twoRanksOfTwoMicroBatchesEqualOneProcessOfFour() throws {
        try withTemporaryFolder { folder in
            let one = try MPIRun.run(0, Self.arguments(folder + "/one", batchSize: 4))
            let two = try MPIRun.run(2, Self.arguments(folder + "/two", batchSize: 1) + ["--grad-accumulation-steps", "2"])
            #expect(one.status == 0, "\(one.output)")
            #expect(two.status == 0, "\(two.output)")
            try Self.expectSameAdapter(folder + "/two", folder + "/one", relative: 1e-5)
        }
    }

    /// One process with 2 micro-batches of 2 rows steps as one batch of 4 rows, and its checkpoint
    /// records the micro-batches: resuming with another count is refused, naming it.
    @Test func gradientAccumulationStepsAsOneBatch() throws {
        try withTemporaryFolder { folder in
            let one = try MPIRun.run(0, Self.arguments(folder + "/one", batchSize: 4))
            let parts = try MPIRun.run(0, Self.arguments(folder + "/parts", batchSize: 2) + ["--grad-accumulation-steps", "2"])
            #expect(one.status == 0 && parts.status == 0)
            try Self.expectSameAdapter(folder + "/parts", folder + "/one", relative: 1e-5)
            let other = try MPIRun.run(0, Self.arguments(folder + "/parts", batchSize: 2) + ["--grad-accumulation-steps", "1", "--resume"])
            #expect(other.status != 0)
            #expect(other.output.contains("grad_accumulation_steps"), "\(other.output)")
        }
    }

    /// Killing one rank mid-run ends the whole job within seconds, naming the rank; the checkpoint
    /// left behind resumes under mpirun to the files of an unbroken run, bit for bit, and as one
    /// process with the same global batch to the same adapter within rounding.
    @Test(.enabled(if: MPIRun.path != nil, Comment(rawValue: MPIRun.absent)))
    func killedRankEndsTheJobAndResumes() throws {
        try withTemporaryFolder { folder in
            let steps = 40
            let arguments = { (out: String) in Self.arguments(out, batchSize: 1, steps: steps) + ["--save-every", "1", "--resume"] }
            let unbroken = try MPIRun.run(2, arguments(folder + "/unbroken"))
            #expect(unbroken.status == 0, "\(unbroken.output)")

            let killed = folder + "/killed"
            let (launcher, output) = try MPIRun.start(2, arguments(killed))
            let clock = ContinuousClock(), deadline = clock.now + .seconds(60)
            // Killed once a few checkpoints exist, well before the end.
            while launcher.isRunning, clock.now < deadline, Trainer.checkpoints(in: killed).first.map({ $0.step < 3 }) ?? true { usleep(2000) }
            let victim = MPIRun.ranks(of: launcher)[1]
            try #require(victim != nil && launcher.isRunning, "the job ended before a rank could be killed")
            let killedAt = clock.now
            kill(victim!, SIGKILL)
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            launcher.waitUntilExit()
            let ended = (clock.now - killedAt).inSeconds
            print("the job ended \(ended) s after rank 1 was killed")
            #expect(ended < 10)
            #expect(launcher.terminationStatus != 0)
            #expect(text.contains("rank 1") && text.contains("signal 9"), "\(text)")
            let left = Trainer.checkpoints(in: killed)
            #expect(left.count == 1 && left[0].step < steps, "\(left)")

            let copy = folder + "/one-process"
            try FileManager.default.copyItem(atPath: killed, toPath: copy)
            let resumed = try MPIRun.run(2, arguments(killed))
            #expect(resumed.status == 0, "\(resumed.output)")
            let (got, want) = (try CommandLineOutputTests.tree(killed), try CommandLineOutputTests.tree(folder + "/unbroken"))
            #expect(got.keys.sorted() == want.keys.sorted())
            for (name, bytes) in want { #expect(got[name] == bytes, "\(name) differs after resuming") }

            let alone = try MPIRun.run(0, Self.arguments(copy, batchSize: 2, steps: steps) + ["--save-every", "1", "--resume"])
            #expect(alone.status == 0, "\(alone.output)")
            try Self.expectSameAdapter(copy, folder + "/unbroken", relative: 1e-5)
        }
    }

    /// Two ranks on two "hosts" (network namespaces joined by a veth pair, Open MPI's TCP transport
    /// between them: tools/mpirun-two-hosts.sh) write the files two ranks on one host write, bit for
    /// bit, and their gradients crossed the link. Skipped where namespaces cannot be made.
    @Test(.enabled(if: MPIRun.path != nil, Comment(rawValue: MPIRun.absent)))
    func twoHostsEqualTwoRanksOnOneHost() throws {
        try withTemporaryFolder { folder in
            let script = GoldenCases.packageRoot.appendingPathComponent("tools/mpirun-two-hosts.sh").path
            let hosts = try MPIRun.finish(try MPIRun.start(script, [LowrankBinary.path] + Self.arguments(folder + "/hosts", batchSize: 1)))
            if hosts.status == 77 { try Test.cancel("network namespaces cannot be made here: \(hosts.output)") }
            let local = try MPIRun.run(2, Self.arguments(folder + "/local", batchSize: 1))
            #expect(hosts.status == 0, "\(hosts.output)")
            #expect(local.status == 0, "\(local.output)")
            let crossed = hosts.output.split(separator: "\n").first { $0.hasPrefix("two-hosts: ") }
                .flatMap { Int($0.split(separator: " ")[1]) } ?? 0
            #expect(crossed > 1000, "\(hosts.output)")
            let (got, want) = (try CommandLineOutputTests.tree(folder + "/hosts"), try CommandLineOutputTests.tree(folder + "/local"))
            #expect(got.keys.sorted() == want.keys.sorted())
            for (name, bytes) in want { #expect(got[name] == bytes, "\(name) differs between two hosts and one") }
        }
    }

    /// A CPU rank and a Vulkan rank (lavapipe here) step as one CPU process with both rows.
    @Test(.enabled(if: MPIRun.path != nil, Comment(rawValue: MPIRun.absent)))
    func cpuAndVulkanRanksEqualOneProcess() throws {
        _ = try BackendKind.vulkan.open()  // cancelled with the reason where there is no Vulkan device
        try withTemporaryFolder { folder in
            let one = try MPIRun.run(0, Self.arguments(folder + "/one", batchSize: 2))
            let cpu = Self.arguments(folder + "/two", batchSize: 1), vulkan = cpu.map { $0 == "cpu" ? "vulkan" : $0 }
            let two = try MPIRun.finish(try MPIRun.start(MPIRun.path!, ["-np", "1", LowrankBinary.path] + cpu
                + [":", "-np", "1", LowrankBinary.path] + vulkan))
            #expect(one.status == 0, "\(one.output)")
            #expect(two.status == 0, "\(two.output)")
            try Self.expectSameAdapter(folder + "/two", folder + "/one", relative: 1e-5)
        }
    }

    /// A rank that fails (here an absent device on rank 1) ends the job with its rank and message.
    @Test(.enabled(if: MPIRun.path != nil, Comment(rawValue: MPIRun.absent)))
    func failingRankEndsTheJobWithItsMessage() throws {
        try withTemporaryFolder { folder in
            let good = Self.arguments(folder, batchSize: 1), bad = good.map { $0 == "cpu" ? "vulkan:99" : $0 }
            let (status, text) = try MPIRun.finish(try MPIRun.start(MPIRun.path!, ["-np", "1", LowrankBinary.path] + good
                + [":", "-np", "1", LowrankBinary.path] + bad))
            #expect(status != 0)
            #expect(text.contains("rank 1 of 2 failed, ending the job: device unavailable: vulkan:99 is not available"), "\(text)")
        }
    }
}
