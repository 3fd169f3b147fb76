/// One DoRA adapter: LoRA's factors A `[r, d_in]` and B `[d_out, r]` and the magnitude m `[d_out]`
/// (all f32), with the frozen weight's `‖W‖²_row` computed once and kept, so that each step's
/// norm costs only the factored terms.
public final class DoRAAdapter {
    public let lora: LoRAAdapter
    public var magnitude: Tensor
    /// `‖W‖²_row` of the weight this adapter was made for (f32 `[d_out]`).
    public let weightNormSquared: Tensor

    public var config: LoRAConfig { lora.config }
    /// `n/m` per row while the adapter is merged into its weight: what `unmerge` scales back by.
    private var mergedInverse: Tensor?
    public var isMerged: Bool { mergedInverse != nil }

    /// A new adapter on `weight`: A and B as LoRA initialises them (B = 0), and m = ‖W‖_row, so
    /// the layer starts unchanged.
    public init(weight: Tensor, config: LoRAConfig, initialization: LoRAInitialization = .kaimingUniform, seed: UInt32) throws {
        guard weight.shape.rank == 2 else { throw LowRankError(.shapeMismatch, "DoRA needs a [d_out, d_in] weight, got \(weight.shape)") }
        lora = try LoRAAdapter(inFeatures: weight.shape[1], outFeatures: weight.shape[0], config: config,
                               initialization: initialization, seed: seed, on: weight.backend)
        weightNormSquared = try Ops.rowSumOfSquares(weight)
        magnitude = try Ops.rowL2Norm(weight)
    }

    /// An adapter from existing factors and magnitude (loaded, or trained elsewhere) on `weight`,
    /// whose `‖W‖²_row` it computes once.
    public init(lora: LoRAAdapter, magnitude: Tensor, weight: Tensor) throws {
        guard weight.shape.rank == 2, lora.a.shape[1] == weight.shape[1], lora.b.shape[0] == weight.shape[0], magnitude.shape == Shape([weight.shape[0]]) else {
            throw LowRankError(.shapeMismatch, "DoRA on a \(weight.shape) weight needs A [r, \(weight.shape.columns)], B [\(weight.shape.dims.first ?? 0), r] and m [\(weight.shape.dims.first ?? 0)]; got A \(lora.a.shape), B \(lora.b.shape), m \(magnitude.shape)")
        }
        self.lora = lora
        self.magnitude = magnitude
        weightNormSquared = try Ops.rowSumOfSquares(weight)
    }

    /// `W ← (m/n)⊙(W + s·B·A)`, PEFT's merge, so the adapter costs nothing at inference. A row whose
    /// `g = m/n` is zero or not finite cannot be divided back out, so the merge refuses it.
    public func merge(into weight: Tensor) throws {
        guard !isMerged else { throw LowRankError(.invalidArgument, "this DoRA adapter is already merged; unmerge it first") }
        let (_, g) = try Ops.doraNorm(weight: weight, a: lora.a, b: lora.b, magnitude: magnitude,
                                      weightNormSquared: weightNormSquared, scale: config.scale)
        let factors = try g.floats()
        if let row = factors.firstIndex(where: { $0 == 0 || !$0.isFinite }) {
            throw LowRankError(.numerical, "cannot merge a DoRA adapter whose row \(row) has m/n = \(factors[row]): unmerging would divide by it",
                               context: [("weight", "\(weight.descriptor)")])
        }
        let inverse = try Tensor(factors.map { 1 / $0 }, shape: g.shape, on: weight.backend)
        try lora.merge(into: weight)
        try Ops.scaleRows(inPlace: weight, by: g)
        mergedInverse = inverse
    }

    /// `W ← W·(n/m) − s·B·A`, undoing `merge` up to rounding.
    public func unmerge(from weight: Tensor) throws {
        guard let inverse = mergedInverse else { throw LowRankError(.invalidArgument, "this DoRA adapter is not merged") }
        try Ops.scaleRows(inPlace: weight, by: inverse)
        try lora.unmerge(from: weight)
        mergedInverse = nil
    }

    private func checkUnmerged() throws {
        guard !isMerged else {
            throw LowRankError(.invalidArgument, "this DoRA adapter is merged into its weight; unmerge it before running it separately")
        }
    }

    public func options(seed: UInt32, outputDType: DType? = nil, trainableMagnitude: Bool = true) -> DoRAOptions {
        DoRAOptions(lora: lora.options(seed: seed, outputDType: outputDType), trainableMagnitude: trainableMagnitude)
    }

    public func forward(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, seed: UInt32 = 0, outputDType: DType? = nil) throws -> DoRAForward {
        try checkUnmerged()
        return try Ops.doraForward(x: x, weight: weight, bias: bias, a: lora.a, b: lora.b, magnitude: magnitude,
                            weightNormSquared: weightNormSquared, options: options(seed: seed, outputDType: outputDType))
    }

    public func backward(_ g: Tensor, x: Tensor, weight: Tensor, forward: DoRAForward, seed: UInt32 = 0,
                         outputDType: DType? = nil) throws -> (dx: Tensor, dA: Tensor, dB: Tensor, dm: Tensor?) {
        try checkUnmerged()
        return try Ops.doraBackward(gradOutput: g, x: x, weight: weight, a: lora.a, b: lora.b, forward: forward,
                             options: options(seed: seed, outputDType: outputDType))
    }
}
