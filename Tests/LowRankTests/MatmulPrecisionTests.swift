import Foundation
import LowRank
import LowRankModels
import Testing

/// The matmul precision's defaults and how each front end chooses it: `medium` on the CPU (a bf16
/// frozen weight's products as PyTorch computes a bf16 model), `highest` on Vulkan; f32 weights
/// exact either way; `--precision`, `LOWRANK_MATMUL_PRECISION` and `matmul_precision` choose.
@Suite("Matmul precision: defaults and settings")
struct MatmulPrecisionTests {
    static let bf16Model = "tiny-qwen2-bf16"

    static func unlessTheEnvironmentChooses() throws {
        if let chosen = FileIO.environment("LOWRANK_MATMUL_PRECISION"), !chosen.isEmpty {
            try Test.cancel("LOWRANK_MATMUL_PRECISION=\(chosen) replaces the defaults")
        }
    }

    static func loss(_ backend: any Backend, dtype: DType? = nil) throws -> Double {
        let model = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: LlamaFixtures.path(bf16Model)), on: backend, dtype: dtype)
        return try Evaluation(model: model, adapter: nil, data: LlamaFixtures.data(model), batchSize: 4).loss
    }

    /// A backend without a setting takes `medium` on the CPU and `highest` on Vulkan; a name that is
    /// none of the three is an error naming the setting.
    @Test func defaultsAndNames() throws {
        try Self.unlessTheEnvironmentChooses()
        #expect(CPUBackend.defaultMatmulPrecision == .medium)
        #expect(CPUBackend(threads: 1).matmulPrecision == .medium)
        #expect(Engine.matmulPrecision(of: try BackendKind.cpu.open()) == .medium)
        #expect(Engine.matmulPrecision(of: PlanningBackend()) == nil)
        if let vulkan = try? Engine.backend(.vulkan(index: nil), validation: true) {
            #expect(Engine.matmulPrecision(of: vulkan) == .highest)
        }
        #expect(try MatmulPrecision.named("medium", "--precision") == .medium)
        #expect(throws: LowRankError.self) { try MatmulPrecision.named("low", "matmul_precision") }
        do { _ = try MatmulPrecision.named("low", "matmul_precision") } catch let error as LowRankError {
            #expect(error.kind == .invalidArgument && error.message.contains("matmul_precision") && error.message.contains("'low'"))
        }
    }

    /// On the CPU's default a bf16 model computes as an explicitly `medium` backend does, bit for
    /// bit, and otherwise than `highest` (where the CPU has AVX-512 BF16); the same weights held in
    /// f32 (`--dtype f32`) compute exactly under every precision, bit for bit, and as the bf16
    /// weights do under `highest`.
    @Test func bf16WeightsDefaultToMediumAndF32OnesStayExact() throws {
        try Self.unlessTheEnvironmentChooses()
        let byDefault = CPUBackend(threads: 2), medium = CPUBackend(threads: 2, matmulPrecision: .medium)
        let highest = CPUBackend(threads: 2, matmulPrecision: .highest)
        let bf16 = (byDefault: try Self.loss(byDefault), medium: try Self.loss(medium), highest: try Self.loss(highest))
        let f32 = try [byDefault, medium, highest].map { try Self.loss($0, dtype: .f32) }
        print("bf16 model: default \(bf16.byDefault), medium \(bf16.medium), highest \(bf16.highest); held in f32: \(f32)")
        #expect(bf16.byDefault == bf16.medium)
        #expect(CPUBackend.hasBFloat16DotProducts ? bf16.medium != bf16.highest : bf16.medium == bf16.highest)
        #expect(f32.allSatisfy { $0 == f32[0] })
        #expect(f32[0] == bf16.highest)
    }

    /// `--precision` on eval (train and generate share the option): without it a bf16 model's loss is
    /// `--precision medium`'s, `--precision highest` gives `--dtype f32`'s, and another value is refused.
    @Test func evalTakesPrecision() throws {
        try Self.unlessTheEnvironmentChooses()
        let cli = CommandLineArgumentTests()
        let arguments = ["eval", "--model", LlamaFixtures.path(Self.bf16Model), "--data", cli.data, "--json"]
        func loss(_ extra: [String]) throws -> Double {
            let (status, output) = try cli.lowrank(arguments + extra)
            #expect(status == 0, "\(output)")
            let line = output.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? ""
            return try JSON.parse(Array(line.utf8))["loss"]?.number ?? .nan
        }
        let byDefault = try loss([]), medium = try loss(["--precision", "medium"]), highest = try loss(["--precision", "highest"])
        #expect(byDefault == medium)
        #expect(highest == (try loss(["--dtype", "f32"])))
        #expect(highest == (try loss(["--dtype", "f32", "--precision", "medium"])))
        #expect(CPUBackend.hasBFloat16DotProducts ? medium != highest : medium == highest)
        try cli.expectRefused("'highest', 'high' or 'medium'", arguments + ["--precision", "low"])
    }
}
