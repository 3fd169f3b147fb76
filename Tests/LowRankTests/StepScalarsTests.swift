@testable import LowRankCore
@testable import LowRankVulkan
import LowRank
@testable import LowRankModels
import Testing

@Suite("What changes between steps, read from the step scalars")
struct StepScalarsTests {
    /// A LoRA op run with a run's seed, which the kernels mix into its dropout seed from the step
    /// scalars, gives the op reseeded on the host (what the CPU runs), bit for bit, forward and
    /// backward; through the matrix-vector kernel (4 rows) and the tiled one (33).
    @Test(arguments: [4, 33])
    func theRunSeedMixedOnTheDeviceIsTheReseededOp(rows: Int) throws {
        try onBackend(.vulkan) { backend in
            let c = LoRATests.Case(t: rows, dIn: 70, dOut: 65, r: 5, dtype: .f32, dropout: 0.25)
            let v = LoRATests.Inputs(c, seed: 3)
            let x = try Tensor(v.x, shape: [c.t, c.dIn], on: backend), w = try Tensor(v.w, shape: [c.dOut, c.dIn], on: backend)
            let a = try Tensor(v.a, shape: [c.r, c.dIn], on: backend), b = try Tensor(v.b, shape: [c.dOut, c.r], on: backend)
            let g = try Tensor(v.g, shape: [c.t, c.dOut], on: backend)
            let options = LoRAOptions(scale: 0.5, dropout: 0.25, seed: 1234)
            let seed: UInt32 = 0xA5C3_1F07
            let run = { (op: Op, inputs: [Tensor], mixed: Bool) throws -> [Tensor] in
                let outputs = try op.outputs(for: inputs.map(\.descriptor)).map { try Tensor(empty: $0.shape, dtype: $0.dtype, on: backend) }
                if mixed {
                    try backend.run(op, reseededBy: seed, inputs: inputs, outputs: outputs)
                } else {
                    try backend.run(op.reseeded(seed), inputs: inputs, outputs: outputs)
                }
                return outputs
            }
            var results: [[[UInt8]]] = []
            for mixed in [true, false] {
                let forward = try run(.loraForward(options), [x, w, a, b], mixed)
                let backward = try run(.loraBackward(options), [g, x, w, a, b, forward[1]], mixed)
                results.append(try (forward + backward).map { try $0.bytes() })
            }
            #expect(results[0] == results[1])
            let unmixed = try Ops.loraForward(x: x, weight: w, a: a, b: b, options: options).u
            #expect(try unmixed.bytes() != results[0][1], "the run's seed changed no dropout mask")
        }
    }

    /// From the third step on, a training step with dropout, a warmed-up cosine
    /// schedule and clipping records the kernels, push constants, workgroups and table updates of
    /// the step before: its dropout seed, learning rate and bias corrections reach the kernels
    /// through the step scalars only. LoRA and DoRA.
    @Test(arguments: [false, true])
    func stepsRecordTheSameCommands(dora: Bool) throws {
        try onBackend(.vulkan) { shared in
            let vulkan = try (shared as! VulkanBackend).sibling()
            // Each step encoded afresh, to see what it records.
            vulkan.replaysRepeats = false
            let trainer = try RecordedStepTests.trainer(on: vulkan, steps: 6, dora: dora)
            var steps: [[String]] = []
            vulkan.stream.log = []
            try trainer.train { _ in
                steps.append(vulkan.stream.log!)
                vulkan.stream.log = []
            }
            // Each report comes after the next step is queued: the one after step k records step
            // k + 2, and the last records nothing.
            #expect(steps.count == 6 && !steps[1].isEmpty && steps[5].isEmpty)
            for k in 2..<5 {
                #expect(steps[k] == steps[1], "step \(k + 2) recorded other commands than step 3")
            }
        }
    }
}
