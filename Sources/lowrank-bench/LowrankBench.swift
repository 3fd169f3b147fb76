import ArgumentParser
import Foundation
import LowRank

@main
struct LowrankBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lowrank-bench",
        abstract: "Kernel microbenchmarks: fused against unfused, on every backend, timed on the device where it can be.")

    @Option(help: "Suite to run: lora, dora, quant, or all.") var suite = "lora"
    @Option(help: "Shape preset: tiny (smoke runs), small, or paper (T=512, d=2048, r=16). Explicit shape options override it.")
    var preset = "small"
    @Option(name: .customLong("tokens"), help: "T, rows of x.") var tokens: Int?
    @Option(name: .customLong("d-in"), help: "d_in.") var dIn: Int?
    @Option(name: .customLong("d-out"), help: "d_out.") var dOut: Int?
    @Option(name: .customLong("rank"), help: "r.") var rank: Int?
    @Option(help: "Storage dtype: f32, f16 or bf16.") var dtype = "f32"
    @Option(help: "cpu, vulkan, vulkan:N, or all.") var device = "all"
    @Option(help: "Timed runs per result (median and min are reported).") var runs = 10
    @Option(help: "Untimed runs first.") var warmup = 2
    @Flag(help: "One JSON object per result and line.") var json = false
    @Flag(help: "Print each kernel's device time per result on stderr (Vulkan).") var profile = false

    func validate() throws {
        guard ["lora", "dora", "quant", "all"].contains(suite) else {
            throw ValidationError("unknown suite '\(suite)'; available: lora, dora, quant, all")
        }
        guard Preset(rawValue: preset) != nil else { throw ValidationError("unknown preset '\(preset)'; available: tiny, small, paper") }
        guard DType(rawValue: dtype)?.isFloatingPoint == true else { throw ValidationError("dtype must be f32, f16 or bf16") }
        guard runs > 0, warmup >= 0 else { throw ValidationError("--runs must be positive and --warmup non-negative") }
        for (name, v) in [("tokens", tokens), ("d-in", dIn), ("d-out", dOut), ("rank", rank)] where (v ?? 1) < 1 {
            throw ValidationError("--\(name) must be positive")
        }
    }

    func run() throws {
        let p = Preset(rawValue: preset)!.shape
        let shape = LoRAShape(t: tokens ?? p.t, dIn: dIn ?? p.dIn, dOut: dOut ?? p.dOut, r: rank ?? p.r)
        let backends = try self.backends()
        var reporter = Reporter(json: json)
        for backend in backends {
            let context = BenchContext(backend: backend, shape: shape, dtype: DType(rawValue: dtype)!,
                                       timer: Timer(backend: backend, runs: runs, warmup: warmup, profile: profile))
            if suite == "lora" || suite == "all" { try context.loraSuite().forEach { reporter.report($0) } }
            if suite == "dora" || suite == "all" { try context.doraSuite().forEach { reporter.report($0) } }
            if suite == "quant" || suite == "all" { try context.quantSuite().forEach { reporter.report($0) } }
        }
        reporter.finish()
    }

    private func backends() throws -> [any Backend] {
        if device == "all" {
            return try Engine.devices().devices.map { try Engine.backend(try DeviceRequest(parsing: $0.identifier)) }
        }
        return [try Engine.backend(try DeviceRequest(parsing: device))]
    }
}

enum Preset: String {
    case tiny, small, paper
    var shape: LoRAShape {
        switch self {
        case .tiny: LoRAShape(t: 16, dIn: 64, dOut: 48, r: 4)
        case .small: LoRAShape(t: 128, dIn: 256, dOut: 256, r: 16)
        case .paper: LoRAShape(t: 512, dIn: 2048, dOut: 2048, r: 16)
        }
    }
}
