import Foundation
import LowRank
import LowRankModels
import Testing

@Suite("Profiles")
struct ProfileTests {
    /// A graph step and an AdamW step with clipping, profiled: every op kind the plan runs is there
    /// with its calls; on Vulkan the dispatches of the op kinds add up to the stream's, the
    /// multi-tensor AdamW takes three (two norm passes and the update, for four tensors), and the
    /// kinds have device time, and two more steps write no descriptor set; the CPU reports wall
    /// time and no command counts. Profiling off
    /// again, nothing more is counted. (On a backend of its own, which no other test's work shares.)
    @Test(arguments: BackendKind.allCases)
    func countsAndTimesEachOpKind(_ kind: BackendKind) throws {
        try onBackend(kind) { shared in
            let backend: any Backend = try (shared as? VulkanBackend)?.sibling() ?? CPUBackend()
            let g = Graph(backend: backend)
            let x = try g.input("x", [8, 16])
            let shapes: [Shape] = [[4, 16], [16, 4], [4, 16], [16, 4]]
            let tensors = try shapes.indices.map { try Tensor(randomValues(shapes[$0].count, seed: 170 + UInt64($0), scale: 0.1), shape: shapes[$0], on: backend) }
            let p = try tensors.indices.map { try g.parameter("p\($0)", tensors[$0], trainable: true) }
            let w = try g.parameter("w", try Tensor(randomValues(256, seed: 175), shape: [16, 16], on: backend))
            let hidden = try g.lora(x, weight: w, a: p[0], b: p[1], options: LoRAOptions(scale: 2), label: "first")
            let y = try g.lora(try g.activation(.silu, hidden), weight: w, a: p[2], b: p[3], options: LoRAOptions(scale: 2), label: "second")
            let loss = try g.meanSquaredError(y, try g.parameter("target", try Tensor(randomValues(128, seed: 176), shape: [8, 16], on: backend)))
            let plan = try g.compile(outputs: [loss] + (try g.gradients(of: loss, for: p)), check: false)
            let optimizer = try AdamWOptimizer(parameters: tensors.indices.map { ("p\($0)", tensors[$0]) }, settings: .init(learningRate: 1e-3, maxGradientNorm: 1e-3))
            let feed = try Tensor(randomValues(128, seed: 177), shape: [8, 16], on: backend)

            try backend.startProfiling()
            for _ in 0..<2 { try optimizer.step(gradients: Array(try plan.run([x: feed]).dropFirst())) }
            let profile = try backend.stopProfiling()
            let planned = Dictionary(grouping: plan.steps.compactMap(\.op), by: { $0 }).mapValues { 2 * $0.count }
            #expect(profile.ops.mapValues(\.calls) == planned.merging([.multiTensorAdamW: 2]) { $1 })
            if kind == .vulkan {
                #expect(profile.dispatches == profile.ops.values.reduce(0) { $0 + $1.dispatches })
                #expect(profile.ops[.multiTensorAdamW]?.dispatches == 6)
                #expect((profile.barriers ?? 0) > 0 && (profile.submissions ?? 0) >= 1)
                #expect(profile.timing == "timestamps")
                #expect((profile.descriptorSetsWritten ?? 0) > 0)
                try backend.startProfiling()
                for _ in 0..<2 { try optimizer.step(gradients: Array(try plan.run([x: feed]).dropFirst())) }
                #expect(try backend.stopProfiling().descriptorSetsWritten == 0, "warm steps bind the sets the first ones wrote")
            } else {
                #expect(profile.dispatches == nil && profile.barriers == nil && profile.descriptorSetsWritten == nil && profile.timing == "wall clock")
            }
            #expect(profile.ops.values.allSatisfy { $0.seconds > 0 }, "\(profile.ops)")
            let table = StepProfile(steps: 2, backends: [profile]).table
            #expect(table.contains("multi_tensor_adamw") && table.contains("profile over 2 steps"))

            try backend.startProfiling()
            let idle = try backend.stopProfiling()
            _ = try plan.run([x: feed])
            #expect(idle.ops.isEmpty && (idle.dispatches ?? 0) == 0)
            try backend.startProfiling()
            #expect(try backend.stopProfiling().ops.isEmpty, "ops run while profiling was off are not counted")
        }
    }

    /// `Trainer.profiles`: the default job's steps profiled on the CPU, per step in `profile`, and
    /// recorded in the last checkpoint's `trainer_state.json`.
    @Test func trainerRecordsTheProfile() throws {
        let backend = CPUBackend()
        let model = try DefaultJob.model(on: backend)
        let adapter = try ModelAdapter(settings: try DefaultJob.adapterSettings, on: model, seed: 0)
        var settings = DefaultJob.trainingSettings
        settings.steps = 3
        let folder = temporaryPath("profiled-training")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let trainer = try Trainer(model: model, adapter: adapter, data: try DefaultJob.data(), settings: settings, output: folder)
        trainer.profiles = true
        try trainer.train()
        let profile = try #require(trainer.profile)
        #expect(profile.steps == 3 && profile.backends.map(\.backend) == ["cpu"])
        #expect(profile.backends[0].ops[.multiTensorAdamW]?.calls == 3)
        let state = try JSON.parse(try Data(contentsOf: URL(fileURLWithPath: folder + "/checkpoint-3/trainer_state.json")))
        #expect(state["profile"]?["steps"] == .number(3))
        #expect(state["profile"]?["ops"]?.array?.count == profile.backends[0].ops.count)
    }
}
