import Glibc
import LowRank
import Testing

/// `LOWRANK_CHECK=f64`: each step of a plan measured against its float64 twin from its own inputs.
@Suite("Per-op float64 check")
struct Float64CheckTests {
    /// A decoder block with a LoRA and a DoRA projection, the LM head and the loss: every forward
    /// op of a model's evaluation, each checked (measured: at most 3e-7 on the CPU backend).
    @Test func everyForwardOpOfADecoderMatchesItsTwin() throws {
        let check = Float64Check()
        let (plan, feeds) = try Self.decoder(on: CPUBackend.shared, check: check)
        _ = try plan.run(feeds)
        let ops = Set(check.records.map(\.op))
        #expect(ops == [.embedding, .rmsNorm, .matmul, .rope, .attention, .add, .activation, .mul, .loraForward,
                        .doraForward, .scale, .crossEntropy])
        #expect(check.unchecked.isEmpty)
        for record in check.records { #expect(record.relativeError < 2e-6, "\(record)") }
        print(check.summary)
    }

    /// An op that is off is named, and only it: each step starts from the inputs the backend gave
    /// it, so the error does not spread to the ops after it.
    @Test func namesTheOpThatIsOff() throws {
        let check = Float64Check()
        let (plan, feeds) = try Self.decoder(on: MiscomputingBackend(wrongOp: .rmsNorm), check: check)
        _ = try plan.run(feeds)
        let worst = check.worstByOp
        #expect(worst[0].op == .rmsNorm && worst[0].worst.relativeError > 1e-3)
        #expect(worst.dropFirst().allSatisfy { $0.worst.relativeError < 2e-6 }, "\(check.summary)")
    }

    /// Ops without a twin (backward ops) are listed, not measured.
    @Test func listsOpsWithoutATwin() throws {
        let g = Graph(backend: CPUBackend.shared)
        let x = try g.input("x", [4, 8]), w = try g.parameter("w", try Tensor(randomValues(32, seed: 3), shape: [4, 8], on: CPUBackend.shared), trainable: true)
        let loss = try g.meanSquaredError(try g.activation(.gelu, try g.linear(x, weight: w)), try g.input("target", [4, 4]))
        let check = Float64Check()
        let plan = try g.plan(outputs: [loss] + (try g.gradients(of: loss, for: [w])), observer: check)
        _ = try plan.run(Dictionary(uniqueKeysWithValues: try plan.inputs.map { ($0, try Tensor(randomValues($0.shape.count, seed: 5), shape: $0.shape, on: CPUBackend.shared)) }))
        #expect(check.unchecked.contains(.activationBackward) && check.unchecked.contains(.meanSquaredErrorBackward))
        #expect(Set(check.records.map(\.op)).isSuperset(of: [.matmul, .activation, .meanSquaredError]))
    }

    /// One block of a Llama decoder (q plain, k through LoRA, the MLP's up projection through
    /// DoRA), a tied LM head and the loss, on `backend`, with `check` observing.
    static func decoder(on backend: any Backend, check: Float64Check) throws -> (ExecutionPlan, [GraphTensor: Tensor]) {
        let (t, sequence, d, vocabulary, heads, headDim, ff, r) = (8, 4, 16, 64, 2, 8, 24, 4)
        let g = Graph(backend: backend)
        var seed: UInt64 = 10
        let weight = { (name: String, shape: Shape, scale: Float) throws -> GraphTensor in
            seed += 1
            return try g.parameter(name, try Tensor(randomValues(shape.count, seed: seed, scale: scale), shape: shape, on: backend))
        }
        let ids = try g.input("ids", [t], dtype: .i32), labels = try g.input("labels", [t], dtype: .i32)
        let table = try weight("embed", [vocabulary, d], 1)
        let h = try g.apply(.embedding, [table, ids])[0]
        let normed = try g.apply(.rmsNorm(epsilon: 1e-5), [h, try weight("norm", [d], 1)])[0]
        let positions = try g.parameter("positions", try Tensor(ids: (0..<t).map { Int32($0 % sequence) }, on: backend))
        let inverseFrequencies: [Float] = (0..<(headDim / 2)).map { i in 1 / powf(100, Float(2 * i) / Float(headDim)) }
        let frequencies = try g.parameter("inv_freq", try Tensor(inverseFrequencies, shape: [headDim / 2], on: backend))
        let rope = { (y: GraphTensor) in try g.apply(.rope(inverse: false), [try g.reshape(y, [t, heads, headDim]), frequencies, positions])[0] }
        let q = try rope(try g.linear(normed, weight: try weight("q", [d, d], 0.5)))
        let k = try rope(try g.lora(normed, weight: try weight("k", [d, d], 0.5), a: try weight("k.A", [r, d], 0.5), b: try weight("k.B", [d, r], 0.5),
                                    options: LoRAOptions(scale: 2)))
        let v = try g.reshape(try g.linear(normed, weight: try weight("v", [d, d], 0.5)), [t, heads, headDim])
        let attended = try g.apply(.attention(AttentionOptions(sequenceLength: sequence)), [q, k, v])[0]
        let h1 = try g.add(h, try g.linear(try g.reshape(attended, [t, d]), weight: try weight("o", [d, d], 0.5)))
        let gate = try g.activation(.silu, try g.linear(h1, weight: try weight("gate", [ff, d], 0.5)))
        let upWeight = randomValues(ff * d, seed: 99, scale: 0.5)
        let upNormSquared = upWeight.chunks(d).map { $0.reduce(0) { $0 + $1 * $1 } }
        let up = try g.dora(h1, weight: try g.parameter("up", try Tensor(upWeight, shape: [ff, d], on: backend)),
                            a: try weight("up.A", [r, d], 0.5), b: try weight("up.B", [ff, r], 0.5), magnitude: try weight("up.m", [ff], 1),
                            weightNormSquared: try g.parameter("up.wsq", try Tensor(upNormSquared, shape: [ff], on: backend)),
                            options: DoRAOptions(lora: LoRAOptions(scale: 0.5), trainableMagnitude: false))
        let h2 = try g.add(h1, try g.linear(try g.mul(gate, up), weight: try weight("down", [d, ff], 0.5)))
        let logits = try g.scale(try g.linear(h2, weight: table), by: 3)
        let loss = try g.apply(.crossEntropy(ignoreIndex: -100), [logits, labels])[0]
        let plan = try g.plan(outputs: [loss], observer: check)
        let tokens = (0..<t).map { Int32($0 * 7 % vocabulary) }
        return (plan, [ids: try Tensor(ids: tokens, on: backend), labels: try Tensor(ids: Array(tokens.dropFirst()) + [-100], on: backend)])
    }
}
