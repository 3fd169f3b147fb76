import Foundation
import LowRank
import Testing

@Suite("Graph")
struct GraphTests {
    /// Every mistake is an error while the graph is built (or fed), naming the op or tensor.
    @Test func badGraphsAreErrorsNamingTheOp() throws {
        let backend = try BackendKind.cpu.open()
        let g = Graph(backend: backend)
        let x = try g.input("x", [4, 6])
        let w = try g.parameter("W", try Tensor.zeros([5, 7], on: backend))
        let message = { (body: () throws -> Void) -> String in
            do { try body() } catch let e as LowRankError { return e.description } catch { return "\(error)" }
            return "no error"
        }
        #expect(message { _ = try g.linear(x, weight: w, label: "proj") }.contains("proj"))
        #expect(message { _ = try g.linear(x, weight: w, label: "proj") }.contains("inner dimensions"))

        // A cycle through a deferred value.
        let later = g.deferred("h", [4, 6])
        let through = try g.activation(.silu, try g.add(x, later, label: "residual"), label: "act")
        let cycle = message { try g.define(later, as: through) }
        #expect(cycle.contains("cycle") && cycle.contains("act") && cycle.contains("residual"), "\(cycle)")
        #expect(message { _ = try g.plan(outputs: [through]) }.contains("never defined"))

        // A gradient asked of a frozen tensor, and of a value that is not a parameter.
        let frozenB = try g.parameter("B", try Tensor.zeros([4, 6], on: backend))
        let loss = try g.meanSquaredError(x, frozenB)
        #expect(message { _ = try g.gradients(of: loss, for: [frozenB]) }.contains("frozen"))
        #expect(message { _ = try g.gradients(of: loss, for: [x]) }.contains("not a parameter"))
        let unused = try g.parameter("unused", try Tensor.zeros([3], on: backend), trainable: true)
        #expect(message { _ = try g.gradients(of: loss, for: [unused]) }.contains("does not depend"))
        #expect(message { _ = try g.gradients(of: x, for: [unused]) }.contains("one floating-point value"))

        // A gradient through an input the op cannot differentiate (a frozen layer's own weight).
        let wTrain = try g.parameter("W2", try Tensor.zeros([5, 6], on: backend), trainable: true)
        let a = try g.parameter("A", try Tensor.zeros([2, 6], on: backend)), b = try g.parameter("Bl", try Tensor.zeros([5, 2], on: backend))
        let lora = try g.lora(x, weight: wTrain, a: a, b: b, options: LoRAOptions(scale: 1), label: "q_proj")
        let loraLoss = try g.meanSquaredError(lora, try g.parameter("t", try Tensor.zeros([4, 5], on: backend)))
        let noRule = message { _ = try g.gradients(of: loraLoss, for: [wTrain]) }
        #expect(noRule.contains("q_proj") && noRule.contains("no gradient"), "\(noRule)")

        // Tensors of another backend or another graph, and ops that write in place.
        if let vulkan = try? BackendKind.vulkan.open() {
            #expect(message { _ = try g.parameter("far", try Tensor.zeros([2], on: vulkan)) }.contains("another backend"))
        }
        let other = Graph(backend: backend)
        let foreign = try other.input("y", [4, 6])
        #expect(message { _ = try g.add(x, foreign, label: "mix") }.contains("another graph"))
        #expect(message { _ = try g.apply(.matmul(MatmulOptions(accumulate: true)), [x, x]) }.contains("in place"))

        // Feeds: missing, of the wrong shape, on the wrong backend.
        let plan = try g.plan(outputs: [loss])
        #expect(message { _ = try plan.run([:]) }.contains("\"x\" was not fed"))
        #expect(message { _ = try plan.run([x: try Tensor.zeros([6, 4], on: backend)]) }.contains("f32[4, 6] but was fed f32[6, 4]"))
        #expect(message { _ = try plan.run([x: try Tensor.zeros([4, 6], on: backend)]) } == "no error")
    }

    /// A graph built out of order, through a deferred value, computes what the in-order graph does.
    @Test func deferredValuesComputeInOrder() throws {
        let backend = try BackendKind.cpu.open()
        let xs = randomValues(12, seed: 60)
        let g = Graph(backend: backend)
        let x = try g.input("x", [3, 4])
        let h = g.deferred("h", [3, 4])
        let out = try g.add(try g.activation(.gelu, h), x)
        try g.define(h, as: try g.scale(x, by: 2))
        let got = try g.plan(outputs: [out]).run([x: try Tensor(xs, shape: [3, 4], on: backend)])[0].floats()
        let want = xs.map { v -> Double in
            let s = Double(2 * v)
            return 0.5 * s * (1 + erf(s / 2.0.squareRoot())) + Double(v)
        }
        #expect(relativeError(got, want) < 1e-6)
    }

    /// The same inputs give bit-identical losses and adapters, run after run, on each backend.
    @Test(arguments: BackendKind.allCases)
    func trainingIsDeterministic(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            var runs: [([Float], [[UInt8]])] = []
            for _ in 0..<2 {
                let task = try MLPRegression(on: backend)
                let losses = try task.train(steps: 5, settings: .init(learningRate: 1e-2, maxGradientNorm: 0.05))
                runs.append((losses, try task.adapters.map { try $0.tensor.bytes() }))
            }
            #expect(runs[0].0.map(\.bitPattern) == runs[1].0.map(\.bitPattern))
            #expect(runs[0].1 == runs[1].1)
        }
    }

    /// Ops the device declines run on the CPU backend, with the transfers inserted; the plan says
    /// which and why, and training gives the all-CPU losses.
    @Test func declinedOpsFallBackToTheCPU() throws {
        try onBackend(.vulkan) { backend in
            let limited = try (backend as! VulkanBackend).sibling(disabledOps: [.activation, .activationBackward])
            let task = try MLPRegression(on: limited)
            #expect(task.plan.fallbacks.map(\.op) == [.activation, .activationBackward], "\(task.plan.fallbacks)")
            #expect(task.plan.fallbacks.allSatisfy { $0.backend == "cpu" && $0.fallbackReason!.contains("disabled") })
            let losses = try task.train(steps: 5)
            let cpu = try MLPRegression(on: try BackendKind.cpu.open()).train(steps: 5)
            for (a, b) in zip(losses, cpu) { #expect(abs(a - b) <= 1e-4 * abs(b), "\(a) vs \(b)") }
            try limited.synchronize()
        }
    }

    /// `LOWRANK_CHECK`: a Vulkan step checked against the CPU runs through; a backend that gets
    /// one op wrong stops the run at that op, naming it and its input shapes.
    @Test func crossCheckStopsAtTheFirstDisagreement() throws {
        try onBackend(.vulkan) { backend in
            let losses = try MLPRegression(on: backend, check: true).train(steps: 2)
            #expect(losses.allSatisfy { $0.isFinite })
        }
        let wrong = MiscomputingBackend(wrongOp: .activationBackward)
        let task = try MLPRegression(on: wrong, check: true)
        do {
            _ = try task.plan.run(task.feeds)
            Issue.record("the miscomputed op was not caught")
        } catch let e as LowRankError {
            #expect(e.description.contains("silu.grad") && e.description.contains("activation_backward"), "\(e)")
            #expect(e.description.contains("f32[64, 32], f32[64, 32]"), "\(e)")
        }
    }

    /// Buffers are reused once their values are dead: the planned bytes stay within 10% of the
    /// most bytes alive at once, and a profiled run times every op step.
    @Test func planReusesBuffers() throws {
        let task = try MLPRegression(on: try BackendKind.cpu.open())
        let plan = task.plan
        #expect(plan.plannedBytes >= plan.peakLiveBytes)
        #expect(plan.plannedBytes <= plan.peakLiveBytes * 11 / 10, "planned \(plan.plannedBytes), live \(plan.peakLiveBytes)")
        let steps = plan.steps.filter { $0.op != nil }
        #expect(steps.map(\.op).prefix(3) == [.loraForward, .activation, .loraForward])
        _ = try plan.run(task.feeds, profile: true)
        #expect(plan.lastProfile.count == steps.count && plan.lastProfile.allSatisfy { $0.seconds >= 0 })
    }

    /// Gradient checkpointing over N identical residual MLP blocks (T = 256, d = 64, hidden 256,
    /// LoRA r = 8 on both layers): without it the planned bytes of forward + backward grow by one
    /// block's activations per block; with it by one block output (64 KiB) and the block's adapter
    /// gradients, and the gradients are the same bits. Measured for N = 1, 2, 4, 8: 944128,
    /// 1550336, 2762752, 5187584 bytes without (606 KiB a block); 878592, 956416, 1112064, 1423360
    /// with (78 KiB a block).
    @Test func checkpointingBoundsActivationMemory() throws {
        let backend = try BackendKind.cpu.open()
        var planned: [Bool: [Int]] = [:]
        for checkpointing in [false, true] {
            for n in [1, 2, 4, 8] {
                let (bytes, _) = try Self.residualBlocks(n, checkpointing: checkpointing, on: backend)
                planned[checkpointing, default: []].append(bytes)
            }
        }
        let growth = { (b: [Int]) in Double(b[3] - b[0]) / 7 }
        let block = 256 * 64 * 4
        #expect(growth(planned[false]!) >= 8 * Double(block), "without: \(planned[false]!)")
        #expect(growth(planned[true]!) <= 1.5 * Double(block), "with: \(planned[true]!)")
        let (_, plain) = try Self.residualBlocks(4, checkpointing: false, on: backend)
        let (_, recomputed) = try Self.residualBlocks(4, checkpointing: true, on: backend)
        #expect(plain == recomputed)
    }

    /// N blocks `x + lora2(silu(lora1(x)))`, each checkpointed: the planned bytes of loss and
    /// gradients, and the gradients' bytes.
    static func residualBlocks(_ n: Int, checkpointing: Bool, on backend: any Backend) throws -> (Int, [[UInt8]]) {
        let (t, d, h, r) = (256, 64, 256, 8)
        let g = Graph(backend: backend)
        let x = try g.input("x", [t, d])
        var y = x, trainable: [GraphTensor] = []
        for i in 0..<n {
            let seed = UInt64(70 + 10 * i)
            let param = { (name: String, shape: Shape, s: UInt64, train: Bool) in
                try g.parameter("\(i).\(name)", try Tensor(randomValues(shape.count, seed: seed + s, scale: 0.1), shape: shape, on: backend),
                                trainable: train)
            }
            let (a1, b1, a2, b2) = (try param("A1", [r, d], 1, true), try param("B1", [h, r], 2, true),
                                    try param("A2", [r, h], 3, true), try param("B2", [d, r], 4, true))
            trainable += [a1, b1, a2, b2]
            let (w1, w2) = (try param("W1", [h, d], 5, false), try param("W2", [d, h], 6, false))
            let input = y
            y = try g.checkpointed {
                let z = try g.lora(input, weight: w1, a: a1, b: b1, options: LoRAOptions(scale: 2), label: "block\(i).up")
                let down = try g.lora(try g.activation(.silu, z), weight: w2, a: a2, b: b2, options: LoRAOptions(scale: 2), label: "block\(i).down")
                return try g.add(input, down, label: "block\(i).residual")
            }
        }
        let loss = try g.meanSquaredError(y, try g.parameter("target", try Tensor.zeros([t, d], on: backend)))
        let plan = try g.plan(outputs: try g.gradients(of: loss, for: trainable, checkpointing: checkpointing))
        let grads = try plan.run([x: try Tensor(randomValues(t * d, seed: 99), shape: [t, d], on: backend)])
        return (plan.plannedBytes, try grads.map { try $0.bytes() })
    }
}

/// The CPU backend with one op made wrong (its output's first element moved by 1): what
/// `LOWRANK_CHECK` must catch.
final class MiscomputingBackend: Backend, @unchecked Sendable {
    let base = CPUBackend(threads: 1)
    let wrongOp: Op.Kind
    init(wrongOp: Op.Kind) { self.wrongOp = wrongOp }

    var identifier: String { "miscomputing-cpu" }
    var deviceName: String { base.deviceName }
    var driverDescription: String { base.driverDescription }
    func makeStorage(byteCount: Int) throws -> any TensorStorage { try base.makeStorage(byteCount: byteCount) }
    func write(_ bytes: UnsafeRawBufferPointer, to storage: any TensorStorage, offset: Int) throws { try base.write(bytes, to: storage, offset: offset) }
    func read(_ storage: any TensorStorage, offset: Int, into bytes: UnsafeMutableRawBufferPointer) throws { try base.read(storage, offset: offset, into: bytes) }
    func synchronize() throws {}
    func memoryStatistics() -> [MemoryStatistics] { base.memoryStatistics() }
    func resetPeakMemory() { base.resetPeakMemory() }
    func measurePeaks() throws -> DevicePeaks { try base.measurePeaks() }

    func run(_ op: Op, inputs: [Tensor], outputs: [Tensor]) throws {
        try base.run(op, inputs: inputs, outputs: outputs)
        guard op.kind == wrongOp else { return }
        var values = try outputs[0].floats()
        values[0] += 1
        try outputs[0].assign(values)
    }
}
