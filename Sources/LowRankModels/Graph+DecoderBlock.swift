import LowRank

/// The linear layers of a Llama decoder block, by the names PEFT targets.
public enum DecoderProjection: String, CaseIterable, Sendable {
    case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj"
    case gate = "gate_proj", up = "up_proj", down = "down_proj"

    /// The module's path inside its block, as Hugging Face names it (`self_attn.q_proj`).
    public var path: String {
        switch self {
        case .q, .k, .v, .o: "self_attn." + rawValue
        case .gate, .up, .down: "mlp." + rawValue
        }
    }
}

/// What a Llama decoder block is built for: the tokens of one batch, packed along T in
/// sequences, and the attention heads.
public struct DecoderBlockShape: Sendable {
    public var tokens: Int
    public var sequence: Int
    public var queryHeads: Int
    public var keyValueHeads: Int
    public var headDim: Int
    public var rmsNormEpsilon: Float
    /// The model's dtype, for attention's products (`AttentionOptions.computeDType`).
    public var computeDType: DType

    public init(tokens: Int, sequence: Int, queryHeads: Int, keyValueHeads: Int, headDim: Int, rmsNormEpsilon: Float, computeDType: DType = .f32) {
        (self.tokens, self.sequence, self.queryHeads, self.keyValueHeads) = (tokens, sequence, queryHeads, keyValueHeads)
        (self.headDim, self.rmsNormEpsilon, self.computeDType) = (headDim, rmsNormEpsilon, computeDType)
    }
}

extension Graph {
    /// One Llama decoder block on the residual stream `h [T, d]`, as transformers' `LlamaDecoderLayer`
    /// computes it: `h + o_proj(attention(rope(q), rope(k), v))` over `input_layernorm(h)`, then that
    /// plus `down_proj(silu(gate_proj(x)) ⊙ up_proj(x))` over its `post_attention_layernorm`.
    /// `normWeight` gives the weight of the norm with this name (`input_layernorm`,
    /// `post_attention_layernorm`); `project` applies a projection, plain or adapted. Both are called
    /// in the block's order (q, k, v, o, gate, up, down). Labels are `prefix` + the module's path.
    /// `attend` replaces the causal attention over `shape.sequence` rows with another of the rotated
    /// q, k and v (a KV cache's).
    public func decoderBlock(_ h: GraphTensor, shape: DecoderBlockShape, inverseFrequencies: GraphTensor, positions: GraphTensor,
                             prefix: String = "", normWeight: (String) throws -> GraphTensor,
                             project: (GraphTensor, DecoderProjection) throws -> GraphTensor,
                             attend: ((GraphTensor, GraphTensor, GraphTensor) throws -> GraphTensor)? = nil) throws -> GraphTensor {
        let (t, headDim) = (shape.tokens, shape.headDim)
        func norm(_ x: GraphTensor, _ name: String) throws -> GraphTensor {
            try rmsNorm(x, weight: try normWeight(name), epsilon: shape.rmsNormEpsilon, label: prefix + name)
        }
        func heads(_ y: GraphTensor, _ n: Int) throws -> GraphTensor { try reshape(y, [t, n, headDim]) }
        let normed = try norm(h, "input_layernorm")
        let (q, k) = try rope(try heads(try project(normed, .q), shape.queryHeads), try heads(try project(normed, .k), shape.keyValueHeads),
                              inverseFrequencies: inverseFrequencies, positions: positions, label: prefix + "rope")
        let v = try heads(try project(normed, .v), shape.keyValueHeads)
        let attended = try attend?(q, k, v)
            ?? attention(q: q, k: k, v: v, options: AttentionOptions(sequenceLength: shape.sequence, computeDType: shape.computeDType), label: prefix + "self_attn")
        let o = try project(try reshape(attended, [t, shape.queryHeads * headDim]), .o)
        let (normed2, h1) = try rmsNorm(h, plus: o, weight: try normWeight("post_attention_layernorm"), epsilon: shape.rmsNormEpsilon,
                                        label: prefix + "post_attention_layernorm")
        let gate = try project(normed2, .gate)
        let up = try project(normed2, .up)
        let down = try project(try gatedActivation(.silu, gate: gate, up: up, label: prefix + "mlp.act"), .down)
        return try add(h1, down, label: prefix + "residual_mlp")
    }
}
