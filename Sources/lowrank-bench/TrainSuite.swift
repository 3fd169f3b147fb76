import Foundation
import LowRank
import LowRankBench

extension BenchContext {
    /// A whole training step through the graph executor: an MLP block `x → LoRA(d_in → d_out) → SiLU
    /// → LoRA(d_out → d_in)`, mean-squared-error loss, the adapters' gradients, and an AdamW step on
    /// the four adapter tensors (f32, the frozen weights in the run's dtype); with and without
    /// gradient checkpointing of the block. With `--profile`, each op's share of one step is printed,
    /// and the whole step's command counts and time by op kind.
    func trainSuite() throws -> [BenchRecord] {
        let (t, dIn, dOut, r) = (shape.t, shape.dIn, shape.dOut, shape.r)
        let (x, w1, _, a1, b1, _) = try layer()
        let tensor = { (dims: Shape, seed: UInt32, scale: Float, dtype: DType) in
            try Tensor(Self.values(dims.count, seed: seed, scale: scale), shape: dims, dtype: dtype, on: backend)
        }
        let w2 = try tensor([dIn, dOut], 11, 0.05, dtype), target = try tensor([t, dIn], 12, 1, dtype)
        let adapters = [("up.lora_A", try Ops.cast(a1, to: .f32)), ("up.lora_B", try Ops.cast(b1, to: .f32)),
                        ("down.lora_A", try tensor([r, dOut], 13, 0.05, .f32)), ("down.lora_B", try tensor([dIn, r], 14, 0.05, .f32))]

        let up = Self.loraCost(shape, elementBytes: Double(dtype.byteSize))
        let down = Self.loraCost(LayerShape(t: t, dIn: dOut, dOut: dIn, r: r), elementBytes: Double(dtype.byteSize))
        let parameters = Double(2 * r * (dIn + dOut))
        let flops = up.forwardFlops + up.backwardFlops + down.forwardFlops + down.backwardFlops + 14 * parameters
        let bytes = up.forwardBytes + up.backwardBytes + down.forwardBytes + down.backwardBytes + 20 * parameters

        func step(checkpointing: Bool) throws -> (BenchCase, profile: () throws -> Void) {
            let g = Graph(backend: backend)
            let input = try g.input("x", x.shape, dtype: dtype)
            let p = try adapters.map { try g.parameter($0.0, $0.1, trainable: true) }
            let (weight1, weight2) = (try g.parameter("up.weight", w1), try g.parameter("down.weight", w2))
            let options = LoRAOptions(scale: 2)
            let y = try g.checkpointed {
                let hidden = try g.activation(.silu, try g.lora(input, weight: weight1, a: p[0], b: p[1], options: options, label: "up"))
                return try g.lora(hidden, weight: weight2, a: p[2], b: p[3], options: options, label: "down")
            }
            let loss = try g.meanSquaredError(y, try g.parameter("target", target))
            let plan = try g.compile(outputs: [loss] + (try g.gradients(of: loss, for: p, checkpointing: checkpointing)), check: false)
            let optimizer = try AdamWOptimizer(parameters: adapters, settings: .init(learningRate: 1e-5))
            let run = { () throws -> [Tensor] in
                // AdamW ends the plan's run: a recorded step is one submission.
                let update = optimizer.nextStep(guarded: false) { outputs, step in try step(Array(outputs.dropFirst()), nil) }
                let out = try plan.run([input: x], replay: true, then: update)
                optimizer.stepTaken()
                return [out[0]] + adapters.map(\.1)
            }
            return (("step", checkpointing ? "graph + AdamW, checkpointed" : "graph + AdamW", flops, bytes, run),
                    { try printProfile(of: plan, feeds: [input: x], checkpointing: checkpointing, step: run) })
        }
        let steps = [try step(checkpointing: false), try step(checkpointing: true)]
        // Measured first, so that the first run, whose transient bytes are read, allocates the plan's buffers.
        let records = try measure("train", steps.map(\.0))
        if timer.profile { for s in steps { try s.profile() } }
        return records
    }

    /// Each op's share of one step's device time, by step label, on stderr; then the whole step
    /// (graph and AdamW) run once as it runs in training, its commands counted and its op kinds timed.
    private func printProfile(of plan: ExecutionPlan, feeds: [GraphTensor: Tensor], checkpointing: Bool, step: () throws -> [Tensor]) throws {
        _ = try plan.run(feeds, profile: true)
        let total = plan.lastProfile.reduce(0) { $0 + $1.seconds }
        printToStandardError("\(backend.identifier) train step\(checkpointing ? " (checkpointed)" : ""), \(shape): \(String(format: "%.3f", total * 1e3)) ms of device time, \(plan.plannedBytes) bytes planned")
        for entry in plan.lastProfile {
            printToStandardError("    \(entry.label) (\(entry.op)): "
                + String(format: "%.3f ms, %.1f%%", entry.seconds * 1e3, 100 * entry.seconds / max(total, 1e-12)))
        }
        try backend.startProfiling()
        _ = try step()
        printToStandardError(StepProfile(steps: 1, backends: [try backend.stopProfiling()]).table)
        // The host's share: recording and submitting a step, up to the wait for its results.
        let clock = ContinuousClock()
        var host: [Double] = [], whole: [Double] = []
        for _ in 0..<max(timer.runs, 5) {
            try backend.synchronize()
            let start = clock.now
            _ = try step()
            let recorded = clock.now
            try backend.synchronize()
            host.append((recorded - start).inSeconds)
            whole.append((clock.now - start).inSeconds)
        }
        let median = { (v: [Double]) in v.sorted()[v.count / 2] * 1e3 }
        printToStandardError(String(format: "  host time to record and submit a step: %.3f ms (median of %d), the step with its wait %.3f ms",
                                    median(host), host.count, median(whole)))
    }
}
