/// One DoRA adapter: LoRA's factors A `[r, d_in]` and B `[d_out, r]` and the magnitude m `[d_out]`
/// (all f32), with the frozen weight's `‖W‖²_row` computed once and kept, so that each step's
/// norm costs only the factored terms.
public final class DoRAAdapter: @unchecked Sendable {
    public let lora: LoRAAdapter
    public var magnitude: Tensor
    /// `‖W‖²_row` of the weight this adapter was made for (f32 `[d_out]`).
    public private(set) var weightNormSquared: Tensor

    public var config: LoRAConfig { lora.config }

    /// A new adapter on `weight`: A and B as LoRA initialises them (B = 0), and m = ‖W‖_row, so
    /// the layer starts unchanged.
    public init(weight: Tensor, config: LoRAConfig, initialization: LoRAInitialization = .kaimingUniform, seed: UInt32) throws {
        guard weight.shape.rank == 2 else { throw LowRankError(.shapeMismatch, "DoRA needs a [d_out, d_in] weight, got \(weight.shape)") }
        lora = try LoRAAdapter(inFeatures: weight.shape[1], outFeatures: weight.shape[0], config: config,
                               initialization: initialization, seed: seed, on: weight.backend)
        weightNormSquared = try Ops.rowSumOfSquares(weight)
        magnitude = try Ops.rowL2Norm(weight)
    }

    /// Recomputes the cached `‖W‖²_row`, for when the frozen weight itself was changed.
    public func refreshWeightNorm(_ weight: Tensor) throws {
        weightNormSquared = try Ops.rowSumOfSquares(weight)
    }

    public func options(seed: UInt32, outputDType: DType? = nil, trainableMagnitude: Bool = true) -> DoRAOptions {
        DoRAOptions(lora: lora.options(seed: seed, outputDType: outputDType), trainableMagnitude: trainableMagnitude)
    }

    public func forward(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, seed: UInt32 = 0, outputDType: DType? = nil) throws -> DoRAForward {
        try Ops.doraForward(x: x, weight: weight, bias: bias, a: lora.a, b: lora.b, magnitude: magnitude,
                            weightNormSquared: weightNormSquared, options: options(seed: seed, outputDType: outputDType))
    }

    public func backward(_ g: Tensor, x: Tensor, weight: Tensor, forward: DoRAForward, seed: UInt32 = 0,
                         outputDType: DType? = nil) throws -> (dx: Tensor, dA: Tensor, dB: Tensor, dm: Tensor?) {
        try Ops.doraBackward(gradOutput: g, x: x, weight: weight, a: lora.a, b: lora.b, forward: forward,
                             options: options(seed: seed, outputDType: outputDType))
    }
}
