import LowRank
import LowRankModels
import Testing

/// Plans that write op outputs over inputs dying at the op (`Op.overwritableInputs`): the same
/// bits as plans giving every output memory of its own, from fewer bytes.
@Suite("Outputs written in place")
struct InPlacePlanTests {
    /// One training step of the fixture model with dropout (LoRA or DoRA, with and without gradient
    /// checkpointing, an f32 or bf16 residual stream): the loss and every gradient of a plan
    /// writing in place equal those of one that does not, bit for bit, on each backend (on Vulkan
    /// under validation and synchronization validation), and its peak of live bytes is lower where
    /// the MLP's backward is the peak.
    @Test(arguments: BackendKind.allCases, [(false, false, DType.f32), (true, false, .f32), (false, true, .f32), (true, true, .f32), (false, true, .bf16)])
    func inPlaceStepsAreTheStepsWithoutIt(_ kind: BackendKind, _ setup: (dora: Bool, checkpointing: Bool, residual: DType)) throws {
        try onBackend(kind) { backend in
            let model = try LlamaFixtures.model(on: backend)
            let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dropout: 0.1, dora: setup.dora, targets: .allLinear),
                                           on: model, seed: 5)
            let batch = TokenBatch((0..<2).map { r in (0..<16).map { Int32(($0 * 7 + r) % 64) } })
            func step(inPlace: Bool) throws -> (bytes: [[UInt8]], plan: ExecutionPlan) {
                let plan = try CausalLMPlan(model: model, adapter: adapter, batch: 2, sequence: 16, training: true,
                                            checkpointing: setup.checkpointing, residual: setup.residual, inPlace: inPlace)
                let (loss, gradients) = try plan.run(batch, seed: 3)
                return (try ([loss] + gradients).map { try $0.bytes() }, plan.plan)
            }
            let (inPlace, separate) = (try step(inPlace: true), try step(inPlace: false))
            #expect(inPlace.bytes == separate.bytes)
            #expect(inPlace.plan.plannedBytes <= separate.plan.plannedBytes)
            // DoRA's forward keeps more than its MLP backward holds, when nothing is recomputed.
            if setup.dora && !setup.checkpointing {
                #expect(inPlace.plan.peakLiveBytes <= separate.plan.peakLiveBytes)
            } else {
                #expect(inPlace.plan.peakLiveBytes < separate.plan.peakLiveBytes)
            }
        }
    }

    /// Each kernel an output may overwrite an input of gives the same bits with its output bound to
    /// that input's memory: the gated activation's backward with d gate over gate and d up over up
    /// or over G, and the LoRA backward (with dropout) with dx over x.
    @Test(arguments: BackendKind.allCases)
    func kernelsTolerateTheirOutputsOverTheirInputs(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            func tensor(_ shape: Shape, _ seed: UInt64) throws -> Tensor { try Tensor(randomValues(shape.count, seed: seed), shape: shape, on: backend) }
            let (gate, up, g) = (try tensor([37, 29], 301), try tensor([37, 29], 302), try tensor([37, 29], 303))
            for f in Activation.allCases {
                let op = Op.gatedActivationBackward(f)
                let expected = try Ops.execute(op, [gate, up, g]).map { try $0.bytes() }
                for over in [(0, 1), (0, 2), (2, 1)] {
                    let inputs = try [gate, up, g].map { try $0.copy(to: backend) }
                    try backend.run(op, inputs: inputs, outputs: [inputs[over.0], inputs[over.1]])
                    #expect(try [inputs[over.0].bytes(), inputs[over.1].bytes()] == expected, "\(f) over inputs \(over) on \(kind)")
                }
            }
            let (t, dIn, dOut, r) = (19, 24, 40, 4)
            let (x, w, a, b, u, gy) = (try tensor([t, dIn], 311), try tensor([dOut, dIn], 312), try tensor([r, dIn], 313),
                                       try tensor([dOut, r], 314), try tensor([t, r], 315), try tensor([t, dOut], 316))
            let op = Op.loraBackward(LoRAOptions(scale: 2, dropout: 0.25, seed: 9))
            let expected = try Ops.execute(op, [gy, x, w, a, b, u]).map { try $0.bytes() }
            let xOver = try x.copy(to: backend)
            let outputs = [xOver, try Tensor(empty: [r, dIn], dtype: .f32, on: backend), try Tensor(empty: [dOut, r], dtype: .f32, on: backend)]
            try backend.run(op, inputs: [gy, xOver, w, a, b, u], outputs: outputs)
            #expect(try outputs.map { try $0.bytes() } == expected, "lora_backward's dx over x on \(kind)")
        }
    }

    /// The gated activation's backward writes d gate and d up over gate and up, and the LoRA
    /// backward dx over x: Llama-3.1-8B's step (LoRA r=16 on all linear layers, 2048 tokens, gradient
    /// checkpointing) then holds at most three of the MLP's [T, intermediate] f32 values at once,
    /// where it held five.
    @Test func theMLPBackwardHoldsThreeIntermediates() throws {
        let config = try LlamaConfig(json: MemoryPlanTests.llama31Config)
        let backend = PlanningBackend(planningFor: CPUBackend.shared)
        let model = try LlamaModel(planning: config, on: backend, quantize: .nf4, dtype: { _ in .bf16 })
        let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 16, alpha: 32, targets: .allLinear), on: model, seed: 0)
        let intermediate = 2048 * config.intermediateSize * 4
        func peak(inPlace: Bool) throws -> [(name: String, bytes: Int)] {
            let plan = try CausalLMPlan(model: model, adapter: adapter, batch: 1, sequence: 2048, training: true, checkpointing: true, inPlace: inPlace)
            return plan.plan.peak.values
        }
        #expect(try peak(inPlace: false).filter { $0.bytes == intermediate }.count == 5)
        #expect(try peak(inPlace: true).filter { $0.bytes == intermediate }.count == 3)
    }
}
