/// The op API: validates, allocates the outputs on the inputs' backend and runs.
public enum Ops {
    /// Runs `op` on the backend all `inputs` live on and returns its new outputs.
    public static func execute(_ op: Op, _ inputs: [Tensor]) throws -> [Tensor] {
        guard let backend = inputs.first?.backend else {
            throw LowRankError(.invalidArgument, "\(op.name): no inputs")
        }
        for input in inputs where input.backend !== backend {
            throw LowRankError(.invalidArgument,
                               "\(op.name): inputs live on different backends (\(backend.identifier) and \(input.backend.identifier)); copy them to one first",
                               context: [("op", op.name)])
        }
        let outputs = try op.outputs(for: inputs.map(\.descriptor))
            .map { try Tensor(empty: $0.shape, dtype: $0.dtype, on: backend) }
        try backend.run(op, inputs: inputs, outputs: outputs)
        return outputs
    }

    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false,
                              bias: Tensor? = nil, alpha: Float = 1, outputDType: DType? = nil) throws -> Tensor {
        let options = MatmulOptions(transposeA: transposeA, transposeB: transposeB, alpha: alpha,
                                    hasBias: bias != nil, outputDType: outputDType)
        return try execute(.matmul(options), [a, b] + (bias.map { [$0] } ?? []))[0]
    }

    /// `c += alpha·op(A)·op(B)` in place.
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false,
                              alpha: Float = 1, accumulatingInto c: Tensor) throws {
        let op = Op.matmul(MatmulOptions(transposeA: transposeA, transposeB: transposeB, alpha: alpha,
                                         accumulate: true, outputDType: c.dtype))
        try execute(op, [a, b], accumulatingInto: c)
    }

    /// Runs `op`, whose first output is `accumulator` (added to in place); returns the other outputs.
    @discardableResult
    static func execute(_ op: Op, _ inputs: [Tensor], accumulatingInto accumulator: Tensor) throws -> [Tensor] {
        let descriptors = try op.outputs(for: inputs.map(\.descriptor))
        guard descriptors[0] == accumulator.descriptor else {
            throw LowRankError(.shapeMismatch, "\(op.name): the result is \(descriptors[0]) but the accumulator is \(accumulator.descriptor)",
                               context: [("op", op.name)])
        }
        for input in inputs where input.backend !== accumulator.backend {
            throw LowRankError(.invalidArgument, "\(op.name): inputs and accumulator live on different backends", context: [("op", op.name)])
        }
        let rest = try descriptors.dropFirst().map { try Tensor(empty: $0.shape, dtype: $0.dtype, on: accumulator.backend) }
        try accumulator.backend.run(op, inputs: inputs, outputs: [accumulator] + rest)
        return rest
    }

    /// Runs `op` into existing `outputs`, which must have the shapes and dtypes it produces; an
    /// output may be one of the inputs only where the op says so (`scaleRows`, `adamW`, `multiTensorAdamW`).
    static func execute(_ op: Op, _ inputs: [Tensor], into outputs: [Tensor]) throws {
        let descriptors = try op.outputs(for: inputs.map(\.descriptor))
        guard descriptors == outputs.map(\.descriptor) else {
            throw LowRankError(.shapeMismatch, "\(op.name): produces \(descriptors) but was given \(outputs.map(\.descriptor))",
                               context: [("op", op.name)])
        }
        for tensor in inputs + outputs where tensor.backend !== outputs[0].backend {
            throw LowRankError(.invalidArgument, "\(op.name): inputs and outputs live on different backends", context: [("op", op.name)])
        }
        try outputs[0].backend.run(op, inputs: inputs, outputs: outputs)
    }

    /// One AdamW step on `param` from `grad`, updating `param`, `m` and `v` in place
    /// (`AdamWOptions` gives the rule; m and v start as zeros of param's shape, in f32).
    public static func adamW(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamWOptions) throws {
        try execute(.adamW(options), [param, grad, m, v], into: [param, m, v])
    }

    /// One AdamW step on every tensor of `params` from its gradient, in place, clipping the global
    /// gradient norm first when `options` gives a largest norm (`Op.multiTensorAdamW`).
    /// With `guard` (the loss and the health flag, `options.guarded`), a non-finite loss zeroes
    /// the flag, and while it is zero nothing changes.
    public static func multiTensorAdamW(params: [Tensor], grads: [Tensor], m: [Tensor], v: [Tensor], options: MultiTensorAdamWOptions,
                                        guard flags: (loss: Tensor, health: Tensor)? = nil) throws {
        let extra = flags.map { [$0.loss, $0.health] } ?? []
        try execute(.multiTensorAdamW(options), params + grads + m + v + extra, into: params + m + v + extra.suffix(1))
    }

    public static func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { try execute(.add, [a, b])[0] }
    public static func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor { try execute(.mul, [a, b])[0] }
    public static func scale(_ a: Tensor, by factor: Float) throws -> Tensor { try execute(.scale(factor), [a])[0] }
    /// Row i of `a` (`[rows, n]`) times `factors[i]`.
    public static func scaleRows(_ a: Tensor, by factors: Tensor) throws -> Tensor { try execute(.scaleRows, [a, factors])[0] }
    /// Row i of `a` times `factors[i]`, in place.
    public static func scaleRows(inPlace a: Tensor, by factors: Tensor) throws { try execute(.scaleRows, [a, factors], into: [a]) }
    public static func rowSumOfSquares(_ a: Tensor) throws -> Tensor { try execute(.rowSumOfSquares, [a])[0] }
    public static func rowL2Norm(_ a: Tensor) throws -> Tensor { try execute(.rowL2Norm, [a])[0] }
    public static func cast(_ a: Tensor, to dtype: DType) throws -> Tensor { try execute(.cast(dtype), [a])[0] }

    /// LoRA forward; returns `y` and `u = dropout(x)·Aᵀ`, which backward needs.
    public static func loraForward(x: Tensor, weight: Tensor, bias: Tensor? = nil, a: Tensor, b: Tensor,
                                   options: LoRAOptions) throws -> (y: Tensor, u: Tensor) {
        var o = options
        o.hasBias = bias != nil
        let out = try execute(.loraForward(o), LoRAForwardOperands(x: x, w: weight, a: a, b: b, bias: bias).values)
        return (out[0], out[1])
    }

    /// LoRA backward for `G = ∂L/∂y`: `(dx, dA, dB)`; W and bias are frozen.
    public static func loraBackward(gradOutput g: Tensor, x: Tensor, weight: Tensor, a: Tensor, b: Tensor, u: Tensor,
                                    options: LoRAOptions) throws -> (dx: Tensor, dA: Tensor, dB: Tensor) {
        let out = try execute(.loraBackward(options), LoRABackwardOperands(gradient: g, x: x, w: weight, a: a, b: b, u: u).values)
        return (out[0], out[1], out[2])
    }

    /// Adds one more adapter's term to `y` (`y += s·dropout(x)·Aᵀ·Bᵀ`) and returns its `u`.
    public static func loraForward(x: Tensor, weight: Tensor, a: Tensor, b: Tensor, options: LoRAOptions,
                                   accumulatingInto y: Tensor) throws -> Tensor {
        var o = options
        o.accumulate = true
        o.hasBias = false
        o.outputDType = y.dtype
        return try execute(.loraForward(o), LoRAForwardOperands(x: x, w: weight, a: a, b: b).values, accumulatingInto: y)[0]
    }

    /// Adds one more adapter's branch to `dx` (`dx += (du·A) ⊙ mask`) and returns its `(dA, dB)`.
    public static func loraBackward(gradOutput g: Tensor, x: Tensor, weight: Tensor, a: Tensor, b: Tensor, u: Tensor,
                                    options: LoRAOptions, accumulatingInto dx: Tensor) throws -> (dA: Tensor, dB: Tensor) {
        var o = options
        o.accumulate = true
        o.outputDType = dx.dtype
        let out = try execute(.loraBackward(o), LoRABackwardOperands(gradient: g, x: x, w: weight, a: a, b: b, u: u).values,
                              accumulatingInto: dx)
        return (out[0], out[1])
    }
}

/// What DoRA's forward hands to its backward: y; u = `dropout(x)·Aᵀ`; the weight norm
/// `‖W + s·B·A‖_row` and `g = m / max(n, ε)`; and, when the magnitude is trainable,
/// `inner = dropout(x)·Wᵀ + s·lora`.
public typealias DoRAForward = DoRAForwardResults<Tensor>

extension Ops {
    /// DoRA's factored weight norm and `g = m / max(n, ε)`.
    public static func doraNorm(weight: Tensor, a: Tensor, b: Tensor, magnitude: Tensor, weightNormSquared: Tensor,
                                scale: Float) throws -> (norm: Tensor, g: Tensor) {
        let operands = DoRANormOperands(w: weight, a: a, b: b, magnitude: magnitude, weightSquaredNorm: weightNormSquared)
        let out = try execute(.doraNorm(scale: scale), operands.values)
        return (out[0], out[1])
    }

    /// DoRA's compose alone: `base + (g−1)⊙base + g⊙(scale·lora)` for `base = x̂·Wᵀ`, `lora = x̂·Aᵀ·Bᵀ`.
    public static func doraCompose(base: Tensor, lora: Tensor, g: Tensor, scale: Float) throws -> Tensor {
        try execute(.doraCompose(scale: scale), [base, lora, g])[0]
    }

    /// DoRA forward; `weightNormSquared` is `rowSumOfSquares(weight)`, computed once per frozen W.
    public static func doraForward(x: Tensor, weight: Tensor, bias: Tensor? = nil, a: Tensor, b: Tensor, magnitude: Tensor,
                                   weightNormSquared: Tensor, options: DoRAOptions) throws -> DoRAForward {
        var o = options
        o.lora.hasBias = bias != nil
        let operands = DoRAForwardOperands(x: x, w: weight, a: a, b: b, magnitude: magnitude, weightSquaredNorm: weightNormSquared, bias: bias)
        return DoRAForward(try execute(.doraForward(o), operands.values), o)
    }

    /// DoRA backward for `G = ∂L/∂y`: `(dx, dA, dB, dm)`, dm nil unless the magnitude is trainable.
    public static func doraBackward(gradOutput g: Tensor, x: Tensor, weight: Tensor, a: Tensor, b: Tensor, forward: DoRAForward,
                                    options: DoRAOptions) throws -> (dx: Tensor, dA: Tensor, dB: Tensor, dm: Tensor?) {
        var o = options
        o.trainableMagnitude = forward.inner != nil
        let operands = DoRABackwardOperands(gradient: g, x: x, w: weight, a: a, b: b, u: forward.u, norm: forward.norm, g: forward.g,
                                            inner: forward.inner)
        let out = DoRABackwardResults(try execute(.doraBackward(o), operands.values), o)
        return (out.dx, out.dA, out.dB, out.dm)
    }
}
