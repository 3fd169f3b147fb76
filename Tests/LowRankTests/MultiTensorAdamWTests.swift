import Foundation
import LowRank
import Testing
@testable import LowRankVulkan

@Suite("Multi-tensor AdamW")
struct MultiTensorAdamWTests {
    /// What the multi-tensor op replaces: the gradients clipped by `row_sum_of_squares` of each, their
    /// sums added in order, `clip_coefficient` and `scale_rows`, then `adamW` tensor by tensor.
    static func perTensorStep(_ params: [Tensor], _ grads: [Tensor], _ m: [Tensor], _ v: [Tensor], _ options: MultiTensorAdamWOptions) throws {
        var grads = grads
        if let maxNorm = options.maxGradientNorm {
            let flat = try grads.map { try $0.reshaped([1, $0.shape.count]) }
            let squares = try flat.map { try Ops.rowSumOfSquares($0) }
            let total = try squares.dropFirst().reduce(squares[0]) { try Ops.add($0, $1) }
            let factor = try Ops.execute(.clipCoefficient(maxNorm: maxNorm), [total])[0]
            grads = try zip(flat, grads).map { try Ops.scaleRows($0, by: factor).reshaped($1.shape) }
        }
        for i in params.indices {
            try Ops.adamW(param: params[i], grad: grads[i], m: m[i], v: v[i], options: options.options(i))
        }
    }

    /// Tensors of several shapes (one empty, one filling no workgroup evenly, a bf16 one), LoRA+
    /// factors, and three steps with each `step` taking `(params, grads, m, v, options)`: the
    /// parameters and moments after each.
    static func run(on backend: any Backend, maxNorm: Float?, step: ([Tensor], [Tensor], [Tensor], [Tensor], MultiTensorAdamWOptions) throws -> Void) throws -> [[UInt8]] {
        let shapes: [Shape] = [[37, 53], [0], [16, 64], [5], [300]]
        let dtypes: [DType] = [.f32, .f32, .bf16, .f32, .f32]
        let params = try shapes.indices.map { try Tensor(randomValues(shapes[$0].count, seed: 150 + UInt64($0), dtype: dtypes[$0]), shape: shapes[$0], dtype: dtypes[$0], on: backend) }
        let m = try shapes.map { try Tensor.zeros($0, on: backend) }, v = try shapes.map { try Tensor.zeros($0, on: backend) }
        for t in 1...3 {
            let grads = try shapes.indices.map { try Tensor(randomValues(shapes[$0].count, seed: 160 + UInt64(10 * t + $0), scale: t == 2 ? 1e-3 : 1), shape: shapes[$0], on: backend) }
            let options = MultiTensorAdamWOptions(adamW: AdamWOptions(learningRate: 1e-2, weightDecay: 0.1, step: t),
                                                  learningRateFactors: [1, 16, 1, 16, 1], maxGradientNorm: maxNorm)
            try step(params, grads, m, v, options)
        }
        return try (params + m + v).map { try $0.bytes() }
    }

    /// With and without clipping (a limit under the gradients' norm at steps 1 and 3, over it at
    /// step 2): every parameter and moment is bit for bit what the per-tensor ops give.
    @Test(arguments: BackendKind.allCases)
    func matchesThePerTensorOps(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            for maxNorm: Float? in [nil, 2] {
                let fused = try Self.run(on: backend, maxNorm: maxNorm) { try Ops.multiTensorAdamW(params: $0, grads: $1, m: $2, v: $3, options: $4) }
                let separate = try Self.run(on: backend, maxNorm: maxNorm, step: Self.perTensorStep)
                #expect(fused == separate, "clipping at \(String(describing: maxNorm)) on \(backend.identifier)")
            }
        }
    }

    /// On devices whose bindings reach 8 KiB and 4 KiB: the tensors spread over several batches
    /// (and at 4 KiB, without clipping, the largest is stepped in windows), with the same bits as
    /// on the unlimited device. Clipping, which sums each gradient in one workgroup, refuses a
    /// gradient larger than a binding by name.
    @Test func batchesPastOneBinding() throws {
        try onBackend(.vulkan) { backend in
            let device = backend as! VulkanBackend
            let fused = { (b: any Backend, maxNorm: Float?) in
                try Self.run(on: b, maxNorm: maxNorm) { try Ops.multiTensorAdamW(params: $0, grads: $1, m: $2, v: $3, options: $4) }
            }
            let narrow = try device.sibling(bindingLimit: 8192), narrower = try device.sibling(bindingLimit: 4096)
            #expect(try fused(narrow, 2) == fused(device, 2))
            #expect(try fused(narrower, nil) == fused(device, nil))
            #expect { try fused(narrower, 2) } throws: { "\($0)".contains("must fit one binding") && "\($0)".contains("tensor") }
        }
    }

    /// A batch binds its gradients as one span, whose binding is one tensor's: a gradient released
    /// while its step is pending stays reserved until the step has run, so nothing allocated and
    /// written by the host meanwhile reaches the step (a recording's step scalars did, now and then,
    /// when tests ran side by side on one device).
    @Test func releasedGradientsStayReservedUntilTheStepRuns() throws {
        try onBackend(.vulkan) { shared in
            let device = try (shared as! VulkanBackend).sibling()
            let shapes: [Shape] = [[4096], [64]]
            let params = try shapes.indices.map { try Tensor(randomValues(shapes[$0].count, seed: 190 + UInt64($0)), shape: shapes[$0], on: device) }
            let m = try shapes.map { try Tensor.zeros($0, on: device) }, v = try shapes.map { try Tensor.zeros($0, on: device) }
            let first = try Tensor(randomValues(4096, seed: 192), shape: [4096], on: device)
            var second: Tensor? = try Tensor(randomValues(64, seed: 193), shape: [64], on: device)
            let released = try device.vulkan(second!.storage).offset
            #expect(try device.vulkan(first.storage).offset < released, "the first gradient anchors the span")
            let options = MultiTensorAdamWOptions(adamW: AdamWOptions(learningRate: 1e-2, step: 1), learningRateFactors: [1, 1])
            try Ops.multiTensorAdamW(params: params, grads: [first, second!], m: m, v: v, options: options)
            second = nil
            let next = try Tensor(empty: [64], dtype: .f32, on: device)
            #expect(try device.vulkan(next.storage).offset != released, "the pending step still reads the released gradient")
            try device.synchronize()
        }
    }

    @Test(arguments: BackendKind.allCases)
    func rejectsMisuse(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let p = try Tensor([Float](repeating: 1, count: 6), shape: [2, 3], on: backend)
            let zeros = { try Tensor.zeros([2, 3], on: backend) }
            let step = AdamWOptions(learningRate: 1e-3, step: 1)
            let bad: [(MultiTensorAdamWOptions, String)] = [
                (MultiTensorAdamWOptions(adamW: step, learningRateFactors: [1, 1]), "learning-rate factors"),
                (MultiTensorAdamWOptions(adamW: step, learningRateFactors: [0]), "positive and finite"),
                (MultiTensorAdamWOptions(adamW: step, learningRateFactors: [1], maxGradientNorm: 0), "largest norm"),
                (MultiTensorAdamWOptions(adamW: AdamWOptions(learningRate: 1e-3, step: 0), learningRateFactors: [1]), "step >= 1"),
            ]
            for (options, message) in bad {
                #expect { try Ops.multiTensorAdamW(params: [p], grads: [try zeros()], m: [try zeros()], v: [try zeros()], options: options) }
                    throws: { "\($0)".contains(message) }
            }
            let wrong = try Tensor.zeros([3, 2], on: backend)
            #expect { try Ops.multiTensorAdamW(params: [p], grads: [wrong], m: [try zeros()], v: [try zeros()], options: .init(adamW: step, learningRateFactors: [1])) }
                throws: { "\($0)".contains("tensor") }
            #expect(try p.floats() == [Float](repeating: 1, count: 6), "a refused step leaves the parameter as it was")
        }
    }

    /// Guarded: a NaN loss leaves every parameter and moment as it was and zeroes the health flag,
    /// a finite loss after it changes nothing either, and with the flag set again the step is the
    /// unguarded one's, bit for bit.
    @Test(arguments: BackendKind.allCases)
    func aNonFiniteLossSkipsTheStep(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let shapes: [Shape] = [[7, 9], [300]]
            let make = { (seed: UInt64) in try shapes.map { try Tensor(randomValues($0.count, seed: seed), shape: $0, on: backend) } }
            let (params, grads, m, v) = (try make(180), try make(181), try make(182), try make(183).map { try Ops.mul($0, $0) })
            let options = MultiTensorAdamWOptions(adamW: AdamWOptions(learningRate: 1e-2, step: 1), learningRateFactors: [1, 2], maxGradientNorm: 1, guarded: true)
            let health = try Tensor([1], shape: [1], on: backend)
            let state = { try (params + m + v).map { try $0.bytes() } }
            let before = try state()
            for loss: Float in [.nan, 2] {
                try Ops.multiTensorAdamW(params: params, grads: grads, m: m, v: v, options: options,
                                         guard: (try Tensor([loss], shape: [1], on: backend), health))
                #expect(try state() == before && health.floats() == [0], "loss \(loss) on \(backend.identifier)")
            }
            try health.assign([1])
            try Ops.multiTensorAdamW(params: params, grads: grads, m: m, v: v, options: options, guard: (try Tensor([2], shape: [1], on: backend), health))
            let guarded = try state()
            let (p2, m2, v2) = (try make(180), try make(182), try make(183).map { try Ops.mul($0, $0) })
            var unguarded = options
            unguarded.guarded = false
            try Ops.multiTensorAdamW(params: p2, grads: grads, m: m2, v: v2, options: unguarded)
            #expect(try guarded == (p2 + m2 + v2).map { try $0.bytes() } && health.floats() == [1])
        }
    }
}
