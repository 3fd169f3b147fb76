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

    /// Every op declaring `Op.overwritableInputs` gives the same bits with each such output bound
    /// to that input's memory (its other outputs apart), on each backend: the elementwise ops, the
    /// gated activation's backward with d gate and d up over gate, up or G, the LoRA backward (with
    /// dropout) with dx over x.
    @Test(arguments: BackendKind.allCases)
    func kernelsTolerateTheirOutputsOverTheirInputs(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            func tensor(_ shape: Shape, _ seed: UInt64) throws -> Tensor { try Tensor(randomValues(shape.count, seed: seed, scale: 2), shape: shape, on: backend) }
            let (m, n) = ([37, 29] as Shape, [37] as Shape)
            let (t, dIn, dOut, r) = (19, 24, 40, 4)
            var cases: [(Op, [Tensor])] = [(.add, [try tensor(m, 301), try tensor(m, 302)]), (.mul, [try tensor(m, 303), try tensor(m, 304)]),
                                           (.scale(3), [try tensor(m, 305)]), (.scaleRows, [try tensor(m, 306), try tensor(n, 307)]),
                                           (.loraBackward(LoRAOptions(scale: 2, dropout: 0.25, seed: 9)),
                                            [try tensor([t, dOut], 308), try tensor([t, dIn], 309), try tensor([dOut, dIn], 310),
                                             try tensor([r, dIn], 311), try tensor([dOut, r], 312), try tensor([t, r], 313)])]
            for f in Activation.allCases {
                cases += [(.activation(f), [try tensor(m, 320)]), (.activationBackward(f), [try tensor(m, 321), try tensor(m, 322)]),
                          (.gatedActivation(f), [try tensor(m, 323), try tensor(m, 324)]),
                          (.gatedActivationBackward(f), [try tensor(m, 325), try tensor(m, 326), try tensor(m, 327)])]
            }
            for (op, inputs) in cases {
                let expected = try Ops.execute(op, inputs).map { try $0.bytes() }
                for (output, candidates) in op.overwritableInputs {
                    for input in candidates {
                        let copies = try inputs.map { try $0.copy(to: backend) }
                        var outputs = try op.outputs(for: inputs.map(\.descriptor)).map { try Tensor(empty: $0.shape, dtype: $0.dtype, on: backend) }
                        outputs[output] = copies[input]
                        try backend.run(op, inputs: copies, outputs: outputs)
                        #expect(try outputs.map { try $0.bytes() } == expected, "\(op) with output \(output) over input \(input) on \(kind)")
                    }
                }
            }
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
