/// The layers a model is built from, each one or a few graph ops.
extension Graph {
    /// `x·Wᵀ + b` for W in `nn.Linear`'s `[d_out, d_in]` layout.
    public func linear(_ x: GraphTensor, weight: GraphTensor, bias: GraphTensor? = nil, label: String = "linear") throws -> GraphTensor {
        let options = MatmulOptions(transposeB: true, hasBias: bias != nil)
        return try apply(.matmul(options), [x, weight] + (bias.map { [$0] } ?? []), label: label)[0]
    }

    /// A frozen linear layer with one LoRA adapter: `x·Wᵀ + b + s·dropout(x)·Aᵀ·Bᵀ`.
    public func lora(_ x: GraphTensor, weight: GraphTensor, bias: GraphTensor? = nil, a: GraphTensor, b: GraphTensor,
                     options: LoRAOptions, label: String = "lora") throws -> GraphTensor {
        var o = options
        o.hasBias = bias != nil
        return try apply(.loraForward(o), LoRAForwardOperands(x: x, w: weight, a: a, b: b, bias: bias).values, label: label)[0]
    }

    /// A frozen linear layer with one DoRA adapter; `weightNormSquared` is `‖W‖²_row`, a constant of W.
    public func dora(_ x: GraphTensor, weight: GraphTensor, bias: GraphTensor? = nil, a: GraphTensor, b: GraphTensor,
                     magnitude: GraphTensor, weightNormSquared: GraphTensor, options: DoRAOptions, label: String = "dora") throws -> GraphTensor {
        var o = options
        o.lora.hasBias = bias != nil
        let operands = DoRAForwardOperands(x: x, w: weight, a: a, b: b, magnitude: magnitude, weightSquaredNorm: weightNormSquared, bias: bias)
        return try apply(.doraForward(o), operands.values, label: label)[0]
    }

    public func activation(_ f: Activation, _ x: GraphTensor, label: String? = nil) throws -> GraphTensor {
        try apply(.activation(f), [x], label: label ?? f.rawValue)[0]
    }

    /// `f(gate) ⊙ up` as one op (a gated MLP's activation: SwiGLU with SiLU).
    public func gatedActivation(_ f: Activation, gate: GraphTensor, up: GraphTensor, label: String? = nil) throws -> GraphTensor {
        try apply(.gatedActivation(f), [gate, up], label: label ?? "gated_" + f.rawValue)[0]
    }

    public func add(_ a: GraphTensor, _ b: GraphTensor, label: String = "add") throws -> GraphTensor {
        try apply(.add, [a, b], label: label)[0]
    }

    public func mul(_ a: GraphTensor, _ b: GraphTensor, label: String = "mul") throws -> GraphTensor {
        try apply(.mul, [a, b], label: label)[0]
    }

    public func scale(_ a: GraphTensor, by factor: Float, label: String = "scale") throws -> GraphTensor {
        try apply(.scale(factor), [a], label: label)[0]
    }

    /// `x` with its axes reordered (output axis i is input axis `axes[i]`), copied.
    public func transpose(_ x: GraphTensor, axes: [Int], label: String = "transpose") throws -> GraphTensor {
        try apply(.transpose(axes: axes), [x], label: label)[0]
    }

    /// `mean((prediction − target)²)`, one f32 value.
    public func meanSquaredError(_ prediction: GraphTensor, _ target: GraphTensor, label: String = "mse") throws -> GraphTensor {
        try apply(.meanSquaredError, [prediction, target], label: label)[0]
    }
}

/// The transformer layers.
extension Graph {
    /// The rows of `table [vocab, d]` for `ids [T]` (i32).
    public func embedding(_ table: GraphTensor, ids: GraphTensor, label: String = "embedding") throws -> GraphTensor {
        try apply(.embedding, [table, ids], label: label)[0]
    }

    /// Llama's RMSNorm over the last dimension: `weight ⊙ x / √(mean(x²) + ε)`, normalised in f32.
    public func rmsNorm(_ x: GraphTensor, weight: GraphTensor, epsilon: Float, label: String = "rms_norm") throws -> GraphTensor {
        try apply(.rmsNorm(epsilon: epsilon), [x, weight], label: label)[0]
    }

    /// `x + r` (a residual branch added onto the stream) and its RMSNorm, in one op.
    public func rmsNorm(_ x: GraphTensor, plus r: GraphTensor, weight: GraphTensor, epsilon: Float,
                        label: String = "rms_norm") throws -> (normed: GraphTensor, sum: GraphTensor) {
        let out = try apply(.rmsNorm(epsilon: epsilon), [x, weight, r], label: label)
        return (out[0], out[2])
    }

    /// Hugging Face's rotate-half RoPE on `x [T, heads, headDim]` at `positions [T]` (i32).
    public func rope(_ x: GraphTensor, inverseFrequencies: GraphTensor, positions: GraphTensor, label: String = "rope") throws -> GraphTensor {
        try apply(.rope(inverse: false), [x, inverseFrequencies, positions], label: label)[0]
    }

    /// x and y (a layer's queries and keys) rotated in one op.
    public func rope(_ x: GraphTensor, _ y: GraphTensor, inverseFrequencies: GraphTensor, positions: GraphTensor,
                     label: String = "rope") throws -> (GraphTensor, GraphTensor) {
        let rotated = try apply(.rope(inverse: false), [x, inverseFrequencies, positions, y], label: label)
        return (rotated[0], rotated[1])
    }

    /// Causal attention of `q [T, H_q, D]` over `k` and `v` `[T, H_kv, D]`: `[T, H_q, D]`. A
    /// `packed` attention takes each row's sequence start in `starts [T]` (i32).
    public func attention(q: GraphTensor, k: GraphTensor, v: GraphTensor, starts: GraphTensor? = nil, options: AttentionOptions,
                          label: String = "attention") throws -> GraphTensor {
        try apply(.attention(options), [q, k, v] + (starts.map { [$0] } ?? []), label: label)[0]
    }

    /// Causal attention of one sequence's new rows `q [T, H_q, D]`, `k` and `v` `[T, H_kv, D]` over
    /// the first `past [1]` (i32) rows of the caches `[C, H_kv, D]` and then over themselves
    /// (`Op.cachedAttention`): `[T, H_q, D]`. Inference only.
    public func cachedAttention(_ operands: CachedAttentionOperands<GraphTensor>, scale: Float? = nil,
                                label: String = "cached_attention") throws -> GraphTensor {
        try apply(.cachedAttention(scale: scale), operands.values, label: label)[0]
    }

    /// The mean cross-entropy of `logits [T, V]` against `labels [T]` (i32) over the rows whose
    /// label is not `ignoreIndex`, one f32 value.
    public func crossEntropy(_ logits: GraphTensor, labels: GraphTensor, ignoreIndex: Int32, label: String = "cross_entropy") throws -> GraphTensor {
        try apply(.crossEntropy(ignoreIndex: ignoreIndex), [logits, labels], label: label)[0]
    }

    /// `crossEntropy(hidden·Wᵀ)` for `hidden [T, d]` and an LM head `weight [V, d]`, without the
    /// `[T, V]` logits (`Op.linearCrossEntropy`), one f32 value.
    public func linearCrossEntropy(_ hidden: GraphTensor, weight: GraphTensor, labels: GraphTensor,
                                   options: LinearCrossEntropyOptions = LinearCrossEntropyOptions(),
                                   label: String = "linear_cross_entropy") throws -> GraphTensor {
        try apply(.linearCrossEntropy(options), [hidden, weight, labels], label: label)[0]
    }
}
