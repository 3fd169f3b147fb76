import ArgumentParser
import Foundation
import LowRank
import LowRankBench

@main
struct LowrankBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lowrank-bench",
        abstract: "Kernel microbenchmarks: fused against unfused, on every backend, each result placed on the device's roofline.",
        discussion: """
        Shapes come from a preset; --tokens, --d-in, --d-out and --rank replace that field of every preset shape with each \
        value of a comma-separated list (a sweep). Save a run with --json > base.json; a later run with --compare base.json \
        exits with status 1 when a result's median grew by more than --threshold.
        """,
        version: Engine.version)

    @Option(help: "Suite to run.") var suite = Suite.lora
    @Option(help: "Shape preset: \(Preset.allCases.map(\.rawValue).joined(separator: ", ")).") var preset = Preset.small
    @Option(name: .customLong("tokens"), help: "T, rows of x (a comma-separated list sweeps).") var tokens: IntList?
    @Option(name: .customLong("d-in"), help: "d_in (list).") var dIn: IntList?
    @Option(name: .customLong("d-out"), help: "d_out (list).") var dOut: IntList?
    @Option(name: .customLong("rank"), help: "r (list).") var rank: IntList?
    @Option(help: "train-model: the adapters to train, a comma-separated list of lora and dora.") var adapter = "lora,dora"
    @Option(name: .customLong("micro-batches"), help: "train-model: also time a step accumulated over this many micro-batches (their losses read after the step).")
    var microBatches = 1
    @Option(help: "Storage dtype: f32, f16 or bf16.") var dtype = "f32"
    @Option(help: "cpu, vulkan, vulkan:N, or all.") var device = "all"
    @Option(help: "At least this many timed runs per result.") var runs = 10
    @Option(name: .customLong("min-time"), help: "And more runs until they add up to this many seconds.") var minTime = 0.25
    @Option(help: "Untimed runs first.") var warmup = 2
    @Flag(help: "One JSON object per result and line (the roofline and any comparison go to stderr).") var json = false
    @Flag(help: "Print each kernel's device time per result (Vulkan), and each op's share of a training step, on stderr.") var profile = false
    @Option(help: "A file of an earlier --json run to compare against.") var compare: String?
    @Option(help: "Slowdown of the median that counts as a regression: 10% or 0.1.") var threshold = "10%"
    @Option(help: "Write an SVG chart of the run's median times over its shapes.") var plot: String?
    @Option(name: .customLong("dump-spirv"), help: .hidden) var dumpSPIRV: String?

    func validate() throws {
        guard DType(rawValue: dtype)?.isFloatingPoint == true else { throw ValidationError("dtype must be f32, f16 or bf16") }
        guard trainedAdapters != nil else { throw ValidationError("--adapter takes lora, dora or lora,dora") }
        guard microBatches >= 1 else { throw ValidationError("--micro-batches must be at least 1") }
        guard runs > 0, warmup >= 0, minTime >= 0 else { throw ValidationError("--runs must be positive, --warmup and --min-time non-negative") }
        guard BaselineComparison.threshold(parsing: threshold) != nil else { throw ValidationError("--threshold must look like 10% or 0.1") }
    }

    func run() throws {
        if let dumpSPIRV { return try SPIRVDump.write(to: dumpSPIRV) }
        let shapes = Self.sweep(preset.shapes, tokens: tokens?.values, dIn: dIn?.values, dOut: dOut?.values, rank: rank?.values)
        var table = ResultTable()
        let info = { (line: String) in json ? printToStandardError(line) : print(line) }
        for backend in try backends() {
            let roofline = Roofline(measured: try backend.measurePeaks(), deviceName: backend.deviceName)
            info(Self.describe(roofline, of: backend))
            let timer = Timer(backend: backend, runs: runs, warmup: warmup, minimumSeconds: minTime, profile: profile)
            for shape in shapes {
                let context = BenchContext(backend: backend, shape: shape, dtype: DType(rawValue: dtype)!, timer: timer, roofline: roofline,
                                           adapters: trainedAdapters!, microBatches: microBatches)
                for one in suite.members {
                    for record in try context.run(suite: one) {
                        if json { print(try record.jsonLine()) }
                        table.append(record)
                    }
                }
            }
        }
        if !json { print(table.render()) }
        if let plot {
            guard FileManager.default.createFile(atPath: plot, contents: Data(SweepPlot(records: table.records).svg().utf8)) else {
                throw LowRankError(.io, "cannot write the plot", context: [("path", plot)])
            }
            info("plot written to \(plot)")
        }
        if let compare {
            let comparison = BaselineComparison(current: table.records, baseline: try BenchRecord.read(jsonLines: compare),
                                                threshold: BaselineComparison.threshold(parsing: threshold)!)
            info(comparison.summary)
            if !comparison.regressions.isEmpty { throw ExitCode.failure }
        }
    }

    private var trainedAdapters: [TrainedAdapter]? {
        let names = adapter.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let kinds = names.map { name in TrainedAdapter.allCases.first { $0.rawValue.lowercased() == name } }
        return kinds.isEmpty || kinds.contains(nil) ? nil : kinds.map { $0! }
    }

    /// Each preset shape with the given fields replaced by every listed value, in order, without repeats.
    static func sweep(_ base: [LayerShape], tokens: [Int]?, dIn: [Int]?, dOut: [Int]?, rank: [Int]?) -> [LayerShape] {
        var out: [LayerShape] = []
        for s in base {
            for t in tokens ?? [s.t] { for i in dIn ?? [s.dIn] { for o in dOut ?? [s.dOut] { for r in rank ?? [s.r] {
                let shape = LayerShape(t: t, dIn: i, dOut: o, r: r)
                if !out.contains(shape) { out.append(shape) }
            } } } }
        }
        return out
    }

    static func describe(_ roofline: Roofline, of backend: any Backend) -> String {
        let m = roofline.measured
        var line = "roofline of \(backend.identifier) (\(backend.deviceName)): "
            + String(format: "%.1f GB/s, %.1f GFLOP/s measured", m.bytesPerSecond / 1e9, m.flopsPerSecond / 1e9)
            + " (\(m.method)); driver: \(backend.driverDescription)"
        if let v = roofline.vendor {
            line += "; datasheet \(v.name): " + String(format: "%.0f GB/s, %.1f TFLOP/s", v.bytesPerSecond / 1e9, v.flopsPerSecond / 1e12)
        }
        return line
    }

    private func backends() throws -> [any Backend] {
        if device == "all" {
            return try Engine.devices().devices.map { try Engine.backend(try DeviceRequest(parsing: $0.identifier)) }
        }
        return [try Engine.backend(try DeviceRequest(parsing: device))]
    }
}

/// `--suite`: one suite of cases, or all of them in this order.
enum Suite: String, CaseIterable, ExpressibleByArgument {
    case matmul, lora, dora, quant, optimizer, attention, train, lmhead
    case trainModel = "train-model"
    case all

    var members: [Suite] { self == .all ? Self.allCases.filter { $0 != .all } : [self] }
}

extension BenchContext {
    func run(suite: Suite) throws -> [BenchRecord] {
        switch suite {
        case .matmul: try matmulSuite()
        case .lora: try loraSuite()
        case .dora: try doraSuite()
        case .quant: try quantSuite()
        case .optimizer: try optimizerSuite()
        case .attention: try attentionSuite()
        case .train: try trainSuite()
        case .lmhead: try lmHeadSuite()
        case .trainModel: try trainModelSuite()
        case .all: try suite.members.flatMap(run)
        }
    }
}

/// A comma-separated list of positive integers on the command line.
struct IntList: ExpressibleByArgument {
    var values: [Int]

    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) > 0 }) else { return nil }
        values = parts.map { $0! }
    }
}

/// Shape presets. The paper's are those of "Scaling DoRA" (d_in = d_out = 4096 and 8192, r from
/// 16 to 384); the Llama ones are every projection of one decoder layer, at r = 16.
enum Preset: String, CaseIterable, ExpressibleByArgument {
    case tiny, small, paper
    case paperSweep = "paper-sweep"
    case llama7b = "llama-7b"
    case llama8b = "llama-8b"
    case tinyllama

    var shapes: [LayerShape] {
        let t = 512
        switch self {
        case .tiny: return [LayerShape(t: 16, dIn: 64, dOut: 48, r: 4)]
        case .small: return [LayerShape(t: 128, dIn: 256, dOut: 256, r: 16)]
        case .paper: return [LayerShape(t: t, dIn: 2048, dOut: 2048, r: 16)]
        case .paperSweep:
            return [4096, 8192].flatMap { d in [16, 32, 64, 128, 256, 384].map { LayerShape(t: t, dIn: d, dOut: d, r: $0) } }
        case .llama7b:  // q, k, v, o: 4096 -> 4096; gate, up: 4096 -> 11008; down: 11008 -> 4096
            return [(4096, 4096), (4096, 11008), (11008, 4096)].map { LayerShape(t: t, dIn: $0.0, dOut: $0.1, r: 16) }
        case .llama8b:  // q, o: 4096 -> 4096; k, v: 4096 -> 1024 (grouped KV); gate, up: 4096 -> 14336; down: 14336 -> 4096
            return [(4096, 4096), (4096, 1024), (4096, 14336), (14336, 4096)].map { LayerShape(t: t, dIn: $0.0, dOut: $0.1, r: 16) }
        case .tinyllama:  // hidden 2048, intermediate 5632: train-model's TinyLlama-shaped decoder
            return [LayerShape(t: t, dIn: 2048, dOut: 5632, r: 16)]
        }
    }
}
