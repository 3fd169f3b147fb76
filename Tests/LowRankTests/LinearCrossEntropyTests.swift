import Foundation
import LowRank
import LowRankModels
import Testing

/// The fused LM head and cross-entropy (`Op.linearCrossEntropy`) against the unfused path on the
/// same backend: `matmul` into `[T, V]` logits, then `cross_entropy`, and their backward.
@Suite("Fused LM head and cross-entropy")
struct LinearCrossEntropyTests {
    /// 300 rows of d = 64 over 700 classes in chunks of 256 classes and 128 rows (the Vulkan
    /// backend rounds rows up to 256): 3 chunks by 3 (2) row blocks, two rows ignored, the weight in
    /// f32, bf16 and Q8_0 (read from each chunk's first row of the whole quantized tensor). Loss,
    /// logsumexp, d hidden and d weight within f32 rounding of the unfused path (measured: the loss
    /// equal, logsumexp 7.7e-8, the gradients at most 1.7e-6, d hidden on lavapipe).
    @Test(arguments: BackendKind.allCases, [DType.f32, .bf16, .q8_0])
    func matchesTheUnfusedPath(_ kind: BackendKind, _ weightType: DType) throws {
        try onBackend(kind) { backend in
            let (rows, d, classes) = (300, 64, 700)
            let hidden = try Tensor(randomValues(rows * d, seed: 61, scale: 2), shape: [rows, d], on: backend)
            let weight = try Ops.execute(.cast(weightType), [try Tensor(randomValues(classes * d, seed: 62, scale: 0.5), shape: [classes, d], on: backend)])[0]
            let ids = (0..<rows).map { $0 % 97 == 5 ? -100 : Int32(($0 * 37) % classes) }
            let labels = try Tensor(ids: ids, on: backend)
            let options = LinearCrossEntropyOptions(vocabularyChunk: 256, rowChunk: 128)
            let fused = try Ops.execute(.linearCrossEntropy(options), [hidden, weight, labels])
            let logits = try Ops.execute(.matmul(MatmulOptions(transposeB: true, outputDType: .f32)), [hidden, weight])[0]
            let unfused = try Ops.execute(.crossEntropy(ignoreIndex: -100), [logits, labels])
            let where_ = "\(weightType) on \(backend.identifier)"
            let errors = try [(fused[0], unfused[0]), (fused[1], unfused[1])].map { relativeError(try $0.floats(), try $1.floats().map(Double.init)) }
            #expect(errors[0] < 1e-6, "loss, \(where_)")
            #expect(errors[1] < 1e-6, "logsumexp, \(where_)")

            let lossGradient = try Tensor([0.75], shape: [1], on: backend)
            let operands = LinearCrossEntropyBackwardOperands(hidden: hidden, weight: weight, labels: labels, logsumexp: fused[1], lossGradient: lossGradient)
            let grads = try Ops.execute(.linearCrossEntropyBackward(options, weightGradient: true), operands.values)
            let dLogits = try Ops.execute(.crossEntropyBackward(ignoreIndex: -100),
                                          CrossEntropyBackwardOperands(logits: logits, labels: labels, logsumexp: unfused[1], lossGradient: lossGradient).values)[0]
            let dHidden = try Ops.execute(.matmul(MatmulOptions(outputDType: .f32)), [dLogits, weight])[0]
            let dWeight = try Ops.execute(.matmul(MatmulOptions(transposeA: true)), [dLogits, hidden])[0]
            let gradientErrors = try [(grads[0], dHidden), (grads[1], dWeight)].map { relativeError(try $0.floats(), try $1.floats().map(Double.init)) }
            print("fused against unfused, \(where_): loss \(errors[0]), logsumexp \(errors[1]), d hidden \(gradientErrors[0]), d weight \(gradientErrors[1])")
            #expect(gradientErrors[0] < 5e-6, "d hidden, \(where_)")
            #expect(gradientErrors[1] < 5e-6, "d weight, \(where_)")
            let frozenHead = try Ops.execute(.linearCrossEntropyBackward(options, weightGradient: false), operands.values)
            #expect(frozenHead.count == 1)
            #expect(try frozenHead[0].bytes() == grads[0].bytes(), "d hidden without d weight, \(where_)")
        }
    }

    /// A 16-bit hidden state gets its gradient in its own dtype, formed in f32 and rounded once;
    /// a label outside the classes, every row ignored, or no rows, gives NaN as `cross_entropy` does.
    @Test(arguments: BackendKind.allCases)
    func keepsTheLossSemantics(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let (rows, d, classes) = (6, 16, 300)
            let hidden = try Tensor(randomValues(rows * d, seed: 63), shape: [rows, d], dtype: .bf16, on: backend)
            let weight = try Tensor(randomValues(classes * d, seed: 64, scale: 0.5), shape: [classes, d], on: backend)
            let options = LinearCrossEntropyOptions(vocabularyChunk: 100)
            for bad: [Int32] in [[3, -100, 300, 0, 150, 7], [-100, -100, -100, -100, -100, -100]] {
                let loss = try Ops.execute(.linearCrossEntropy(options), [hidden, weight, try Tensor(ids: bad, on: backend)])[0]
                #expect(try loss.floats()[0].isNaN, "labels \(bad) on \(backend.identifier)")
            }
            let none = try Ops.execute(.linearCrossEntropy(options), [try Tensor.zeros([0, d], on: backend), weight, try Tensor(ids: [], on: backend)])[0]
            #expect(try none.floats()[0].isNaN, "no rows on \(backend.identifier)")
            let labels = try Tensor(ids: [3, -100, 299, 0, 150, 7], on: backend)
            let out = try Ops.execute(.linearCrossEntropy(options), [hidden, weight, labels])
            let operands = LinearCrossEntropyBackwardOperands(hidden: hidden, weight: weight, labels: labels, logsumexp: out[1],
                                                               lossGradient: try Tensor([1], shape: [1], on: backend))
            let dHidden = try Ops.execute(.linearCrossEntropyBackward(options, weightGradient: false), operands.values)[0]
            #expect(dHidden.dtype == .bf16)
            let logits = try Ops.execute(.matmul(MatmulOptions(transposeB: true, outputDType: .f32)), [hidden, weight])[0]
            let dLogits = try Ops.execute(.crossEntropyBackward(ignoreIndex: -100),
                                          CrossEntropyBackwardOperands(logits: logits, labels: labels, logsumexp: out[1], lossGradient: operands.lossGradient).values)[0]
            // The unfused gradient rounded to bf16 once, as the fused one is: equal but where an f32 sum lands by a tie.
            let want = try Ops.execute(.matmul(MatmulOptions(outputDType: .bf16)), [dLogits, weight])[0]
            let error = relativeError(try dHidden.floats(), try want.floats().map(Double.init))
            print("bf16 d hidden on \(backend.identifier): relative error \(error)")
            #expect(error < 1e-6, "on \(backend.identifier)")
        }
    }

    /// Shapes that do not agree, and chunks that hold nothing, are errors that name the op.
    @Test func refusesBadOperands() throws {
        let backend = try BackendKind.cpu.open()
        let hidden = try Tensor.zeros([4, 8], on: backend), labels = try Tensor(ids: [0, 1, 2, 3], on: backend)
        let cases: [(Op, [Tensor])] = [
            (.linearCrossEntropy(LinearCrossEntropyOptions()), [hidden, try Tensor.zeros([10, 7], on: backend), labels]),
            (.linearCrossEntropy(LinearCrossEntropyOptions()), [hidden, try Tensor.zeros([10, 8], on: backend), try Tensor(ids: [0, 1], on: backend)]),
            (.linearCrossEntropy(LinearCrossEntropyOptions(vocabularyChunk: 0)), [hidden, try Tensor.zeros([10, 8], on: backend), labels]),
            (.linearCrossEntropy(LinearCrossEntropyOptions()), [hidden, try Tensor.zeros([0, 8], on: backend), labels]),
        ]
        for (op, inputs) in cases {
            let error = #expect(throws: LowRankError.self) { _ = try Ops.execute(op, inputs) }
            #expect(error?.message.hasPrefix("linear_cross_entropy:") == true, "\(String(describing: error))")
        }
    }

    /// The deep-llama fixture (vocabulary 16384) at 4 × 64 tokens: its evaluation plan, and its
    /// training plan for a GPU, hold none of the 16 MiB of `[T, V]` f32 logits (nor their
    /// gradient), and evaluation still matches float64 (`DeepModelPrecisionTests`). A training
    /// step on the CPU holds them (`CausalLMPlan.holdsLogits`): its head then does one product fewer.
    @Test func modelPlanHoldsNoLogits() throws {
        let model = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: DeepModelPrecisionTests.folder + "/model"), on: CPUBackend.shared)
        let logitBytes = 4 * 64 * model.config.vocabularySize * 4
        let evaluation = try CausalLMPlan(model: model, adapter: nil, batch: 4, sequence: 64, training: false)
        let settings = try AdapterSettings(rank: 4, alpha: 8, targets: .allLinear)
        let gpu = try LlamaModel(planning: model.config, on: PlanningBackend(), dtype: { _ in .f32 })
        let training = try CausalLMPlan(model: gpu, adapter: try ModelAdapter(settings: settings, on: gpu, seed: 1), batch: 4, sequence: 64, training: true)
        let cpu = try CausalLMPlan(model: model, adapter: try ModelAdapter(settings: settings, on: model, seed: 1), batch: 4, sequence: 64, training: true)
        print("deep-llama 4 × 64 planned bytes: evaluation \(evaluation.plan.plannedBytes), training \(training.plan.plannedBytes), on the CPU \(cpu.plan.plannedBytes)")
        #expect(evaluation.plan.plannedBytes < logitBytes)
        #expect(training.plan.plannedBytes < logitBytes)
        #expect(cpu.plan.plannedBytes >= 2 * logitBytes)
    }
}
