import Glibc

/// `C = alpha·op(A)·op(B) + bias (+ C when accumulating)`, f32 accumulation.
/// A is `[M, K]` (`[K, M]` when transposed), B is `[K, N]` (`[N, K]` when transposed, the
/// `nn.Linear` weight layout), bias `[N]`.
public struct MatmulOptions: Hashable, Sendable {
    public var transposeA: Bool
    public var transposeB: Bool
    public var alpha: Float
    public var hasBias: Bool
    /// Adds the product to the output's current contents instead of overwriting them.
    public var accumulate: Bool
    public var outputDType: DType?

    public init(transposeA: Bool = false, transposeB: Bool = false, alpha: Float = 1, hasBias: Bool = false,
                accumulate: Bool = false, outputDType: DType? = nil) {
        self.transposeA = transposeA
        self.transposeB = transposeB
        self.alpha = alpha
        self.hasBias = hasBias
        self.accumulate = accumulate
        self.outputDType = outputDType
    }
}

/// One LoRA branch on a frozen linear layer, as PEFT computes it:
/// `y = x·Wᵀ + b + scale·(dropout(x)·Aᵀ)·Bᵀ`.
public struct LoRAOptions: Hashable, Sendable {
    public var scale: Float
    /// Inverted-dropout probability on the LoRA branch's input, in [0, 1).
    public var dropout: Float
    /// Seeds the dropout mask, regenerated in backward from this seed instead of being stored.
    public var seed: UInt32
    public var hasBias: Bool
    /// Element type of `y` (forward) and `dx` (backward); nil keeps `x`'s.
    public var outputDType: DType?
    /// Adds only this adapter's term to `y` (forward) or `dx` (backward) as they are, instead of
    /// computing the base product with it: how the second and later adapters of a layer apply.
    /// W is then only checked for its shape, and the bias is not read.
    public var accumulate: Bool
    /// Whether backward forms dx. Gradients set it false where no gradient flows through x
    /// (nothing before the layer trains: the first block's projections); dx's values are then
    /// unspecified (neither backend forms it: on Vulkan one GEMM fewer per such layer).
    public var inputGradient: Bool

    public init(scale: Float, dropout: Float = 0, seed: UInt32 = 0, hasBias: Bool = false, outputDType: DType? = nil,
                accumulate: Bool = false, inputGradient: Bool = true) {
        self.scale = scale
        self.dropout = dropout
        self.seed = seed
        self.hasBias = hasBias
        self.outputDType = outputDType
        self.accumulate = accumulate
        self.inputGradient = inputGradient
    }
}

extension LoRAOptions {
    /// The options with the dropout seed mixed with a run's `seed`, so each run of a plan draws a
    /// fresh mask, the same in a layer's forward and backward.
    func reseeded(_ seed: UInt32) -> LoRAOptions {
        guard dropout > 0 else { return self }
        var o = self
        o.seed ^= seed &* 0x9E37_79B1
        return o
    }
}

/// One DoRA adapter on a frozen linear layer, as PEFT computes it with the norm detached:
/// `y = x·Wᵀ + b + (g−1)⊙(x̂·Wᵀ) + g⊙s·(x̂·Aᵀ·Bᵀ)`, `g = m / max(n, ε)`, `n = ‖W + s·B·A‖_row`.
public struct DoRAOptions: Hashable, Sendable {
    /// Scale, dropout, seed, bias and output dtype, as for LoRA (`accumulate` is not supported).
    public var lora: LoRAOptions
    /// Whether m is trained: forward then also returns `inner = x̂·Wᵀ + s·lora` for dm.
    public var trainableMagnitude: Bool

    /// The floor under the weight norm: an all-zero row of W + s·B·A gives g = m / ε, finite
    /// (0 when m was initialised from that row), where PEFT divides by zero.
    public static let normEpsilon: Float = 1e-6

    public init(lora: LoRAOptions, trainableMagnitude: Bool = true) {
        self.lora = lora
        self.trainableMagnitude = trainableMagnitude
    }
}

/// The fused LM head and cross-entropy (`Op.linearCrossEntropy`): the loss of `hidden·Wᵀ` with
/// the logits formed in blocks of `rowChunk` rows by `vocabularyChunk` classes, so the op holds
/// one such block of f32 logits instead of `[T, V]` (Liger's fused linear cross-entropy, Apple's
/// cut cross-entropy). The Vulkan backend rounds both chunks up to multiples of 256, where its
/// windows of W and hidden start on binding-aligned offsets.
public struct LinearCrossEntropyOptions: Hashable, Sendable {
    public var ignoreIndex: Int32
    public var vocabularyChunk: Int
    public var rowChunk: Int

    /// 4096 × 1024 f32 logits: 16 MiB of workspace, whatever the vocabulary.
    public init(ignoreIndex: Int32 = -100, vocabularyChunk: Int = 4096, rowChunk: Int = 1024) {
        (self.ignoreIndex, self.vocabularyChunk, self.rowChunk) = (ignoreIndex, vocabularyChunk, rowChunk)
    }

    /// The most workspace either backend allocates for the op itself, beside its inputs and
    /// outputs, for `rows` hidden rows of width `d` over `classes`: one block of f32 logits (the
    /// chunks rounded up to multiples of 256 as the device aligns them), three f32 values a row, an
    /// f32 d hidden when hidden is 16-bit, and a chunk of W widened to f32 when W is not f32.
    public func workspaceBytes(rows: Int, classes: Int, d: Int, hidden: DType, weight: DType) -> Int {
        let up = { (n: Int) in (n + 255) / 256 * 256 }
        let chunk = min(classes, up(vocabularyChunk))
        let block = max(1, min(rows, up(rowChunk))) * chunk
        return 4 * (block + 3 * rows + (hidden == .f32 ? 0 : rows * d) + (weight == .f32 ? 0 : chunk * d))
    }
}

/// One step of AdamW as PyTorch's `torch.optim.AdamW` takes it: decoupled weight decay
/// (`θ ← θ·(1 − lr·λ)`), then Adam with bias-corrected moments,
/// `θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)`. The defaults are PyTorch's.
public struct AdamWOptions: Hashable, Sendable {
    // f64, as PyTorch keeps them (Python floats): 1 − β₂ from an f32 β₂ = 0.999 is off by 1.3e-5.
    public var learningRate: Double
    public var beta1: Double
    public var beta2: Double
    public var epsilon: Double
    public var weightDecay: Double
    /// The step being taken, from 1: the bias corrections depend on it.
    public var step: Int

    public init(learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0.01, step: Int) {
        (self.learningRate, self.beta1, self.beta2, self.epsilon, self.weightDecay) = (learningRate, beta1, beta2, epsilon, weightDecay)
        self.step = step
    }

    /// The per-step scalars both backends use, formed in f64 and rounded once, as PyTorch forms
    /// them in Python floats.
    public var stepScalars: AdamWStepScalars {
        let t = Double(step)
        return AdamWStepScalars(decay: Float(1 - learningRate * weightDecay), oneMinusBeta1: Float(1 - beta1), beta2: Float(beta2),
                                oneMinusBeta2: Float(1 - beta2), bias2Root: Float((1 - pow(beta2, t)).squareRoot()),
                                epsilon: Float(epsilon), negativeStep: Float(-learningRate / (1 - pow(beta1, t))))
    }
}

/// One AdamW step over many tensors at once (`Op.multiTensorAdamW`): each tensor's rate is
/// `adamW.learningRate` times its factor (PyTorch's parameter groups, LoRA+), and with a largest
/// norm every gradient is first scaled by `clip_grad_norm_`'s coefficient of all of them together.
public struct MultiTensorAdamWOptions: Hashable, Sendable {
    /// The step and the rate before the factors.
    public var adamW: AdamWOptions
    /// One per tensor, positive.
    public var learningRateFactors: [Double]
    /// nil: no clipping.
    public var maxGradientNorm: Float?
    /// The step also takes the loss [1] f32 and a health flag [1] f32 (read and written): a
    /// non-finite loss sets the flag to 0, and while it is 0 the step changes nothing. So a step
    /// can be queued before its loss is read, and so can those after it.
    public var guarded: Bool

    public init(adamW: AdamWOptions, learningRateFactors: [Double], maxGradientNorm: Float? = nil, guarded: Bool = false) {
        self.adamW = adamW
        self.learningRateFactors = learningRateFactors
        self.maxGradientNorm = maxGradientNorm
        self.guarded = guarded
    }

    public var tensorCount: Int { learningRateFactors.count }

    /// Tensor `i`'s own AdamW options: the single-tensor op's with its rate.
    public func options(_ i: Int) -> AdamWOptions {
        var o = adamW
        o.learningRate *= learningRateFactors[i]
        return o
    }
}

/// One AdamW step's f32 constants: `θ ← θ·decay + negativeStep·m / (√v / bias2Root + ε)` with
/// `m += oneMinusBeta1·(g − m)` and `v = v·β₂ + oneMinusBeta2·g²`.
public struct AdamWStepScalars: Hashable, Sendable {
    /// `1 − lr·λ`
    public var decay: Float
    public var oneMinusBeta1: Float
    public var beta2: Float
    public var oneMinusBeta2: Float
    /// `√(1 − β₂ᵗ)`
    public var bias2Root: Float
    public var epsilon: Float
    /// `−lr/(1 − β₁ᵗ)`
    public var negativeStep: Float
}

/// The pointwise nonlinearities: SiLU (`x·σ(x)`, Llama's MLP), GELU with the exact erf
/// (`torch.nn.GELU()`) and GELU's tanh approximation (`GELU(approximate="tanh")`, GPT-2's `gelu_new`).
public enum Activation: String, Hashable, Sendable, CaseIterable {
    case silu
    case gelu
    case geluTanh = "gelu_tanh"
}

/// Causal softmax attention over a batch of sequences packed along T, with grouped KV heads:
/// query head h reads KV head `h / (H_q / H_kv)`, row t attends to rows `s..t` of its own sequence
/// (`s` the first row of the sequence), scores scaled by `scale`.
public struct AttentionOptions: Hashable, Sendable {
    /// Rows per sequence; T is a whole number of sequences.
    public var sequenceLength: Int
    /// nil: `1/√headDim`.
    public var scale: Float?
    /// Several sequences share each run of `sequenceLength` rows (training's `--pack`): the op takes
    /// one more input, the sequence starts [T] i32, row t's sequence beginning at row `starts[t]`,
    /// which is t itself or row t − 1's start, and never before t's run of `sequenceLength` rows.
    /// Per-row starts rather than cumulative lengths (flash-attn's `cu_seqlens`): a row finds its
    /// first key in one read, the first key a query tile sees is its first row's start, and the
    /// query tiles that see a key tile end at the first whose first row starts after the tile's
    /// last key; no search. The starts are read at run time: the CPU refuses a row breaking the
    /// rule, a device clamps each start into the row's run.
    public var packed: Bool
    /// The dtype PyTorch would hold q, k and v in: the model's (`LlamaModel.computeDType`). q, k and
    /// v are f32 here whatever it is; for bf16 the CPU under `medium` multiplies them (and P, and the
    /// backward's G and dS) as bfloat16 with f32 sums, as PyTorch's SDPA computes a bf16 model.
    public var computeDType: DType

    public init(sequenceLength: Int, scale: Float? = nil, packed: Bool = false, computeDType: DType = .f32) {
        self.sequenceLength = sequenceLength
        self.scale = scale
        self.packed = packed
        self.computeDType = computeDType
    }

    public func scale(headDim: Int) -> Float { scale ?? 1 / Float(headDim).squareRoot() }
}

/// Every op the backends implement. Each case documents its inputs and outputs in order. Shaders
/// are per kernel family, not per op (add, mul, scale, scale_rows and clip_coefficient share
/// `Shaders/elementwise.comp`): the README's op table gives each op's GLSL file, its Vulkan encoder
/// (`VulkanBackend+<Family>.swift`), its CPU twin (`CPUBackend+<Family>.swift`) and its tests.
public enum Op: Hashable, Sendable, CustomStringConvertible {
    /// a, b [, bias] -> c
    case matmul(MatmulOptions)
    /// a, b -> a + b (b of a's shape, or of its trailing dimensions: broadcast over the leading ones)
    case add
    /// a, b -> a ⊙ b (b broadcast as for add)
    case mul
    /// a -> factor·a
    case scale(Float)
    /// a [rows, n], factors [rows] -> a with row i times factors[i] (the output may be a itself)
    case scaleRows
    /// a [rows, n] -> [rows] f32: Σ a²
    case rowSumOfSquares
    /// a [rows, n] -> [rows] f32: √Σ a²
    case rowL2Norm
    /// a -> a in another dtype, rounding to nearest even
    case cast(DType)
    /// x [T, d_in], W [d_out, d_in], A [r, d_in], B [d_out, r] [, bias [d_out]] -> y [T, d_out], u [T, r] f32
    /// (with `accumulate`, y is added to)
    case loraForward(LoRAOptions)
    /// G [T, d_out], x, W, A, B, u -> dx [T, d_in], dA [r, d_in] f32, dB [d_out, r] f32 (with `accumulate`, dx is added to)
    case loraBackward(LoRAOptions)
    /// W [d_out, d_in], A [r, d_in], B [d_out, r], m [d_out], ‖W‖²_row [d_out] f32 -> n [d_out] f32, g [d_out] f32:
    /// DoRA's factored norm `n = ‖W + s·B·A‖_row` (never forming B·A) and `g = m / max(n, ε)`
    case doraNorm(scale: Float)
    /// x, W, A, B, m, ‖W‖²_row [, bias] -> y [T, d_out], u [T, r] f32, n, g [, inner [T, d_out] f32 when m is trainable]
    case doraForward(DoRAOptions)
    /// G, x, W, A, B, u, n, g [, inner] -> dx, dA f32, dB f32 [, dm [d_out] f32 when m is trainable]
    case doraBackward(DoRAOptions)
    /// base [T, d_out], lora [T, d_out], g [d_out] -> y = base + (g−1)⊙base + g⊙(scale·lora): DoRA's
    /// compose on its own (`doraForward` fuses it into the base product's epilogue)
    case doraCompose(scale: Float)
    /// x -> f(x)
    case activation(Activation)
    /// x, G -> dx = G ⊙ f′(x)
    case activationBackward(Activation)
    /// gate, up (one shape) -> f(gate) ⊙ up: a gated MLP's activation (SwiGLU with SiLU) in one pass
    case gatedActivation(Activation)
    /// gate, up, G -> d gate = (G ⊙ up) ⊙ f′(gate), d up = G ⊙ f(gate)
    case gatedActivationBackward(Activation)
    /// prediction, target (same shape) -> [1] f32: mean((prediction − target)²), `torch.nn.MSELoss()`
    case meanSquaredError
    /// prediction, target, dLoss [1] -> d prediction = 2·(prediction − target)·dLoss / count
    case meanSquaredErrorBackward
    /// Σ‖grad‖² [1] f32 -> [1] f32: `min(1, maxNorm / (√Σ + 1e-6))`, the factor
    /// `torch.nn.utils.clip_grad_norm_` scales every gradient by
    case clipCoefficient(maxNorm: Float)
    /// x -> x with its axes reordered: output axis i is input axis `axes[i]` (`torch.permute`;
    /// `[1, 0]` transposes a matrix), copied into row-major order; at most 4 axes
    case transpose(axes: [Int])
    /// table [vocab, d], ids [T] i32 -> rows of the table [T, d]
    case embedding
    /// ids [T] i32, G [T, d] -> d table [vocabulary, d] f32: G's rows summed into their ids' rows, in token order
    case embeddingBackward(vocabulary: Int)
    /// x [rows, d], weight [d] [, r [rows, d]] -> y [rows, d], rstd [rows] f32 [, x + r]: `y = w ⊙ x·rstd`,
    /// `rstd = 1/√(mean(x²) + ε)` (Llama's RMSNorm, normalised in f32). With r (a residual branch), the
    /// norm of the sum `x + r` (rounded to x's dtype, as `add` rounds it), returned beside it; both
    /// outputs are differentiable
    case rmsNorm(epsilon: Float)
    /// G, x, weight, rstd [, R] -> dx [+ R] [, d weight [d] f32]: d weight only with `weightGradient`
    /// (a trained norm weight), a frozen one's would cost passes over G and x for nothing; R, a
    /// gradient of x from elsewhere (the residual stream's), is added onto dx in the same pass
    case rmsNormBackward(weightGradient: Bool)
    /// x [T, heads, headDim], inverse frequencies [headDim/2] f32, positions [T] i32 [, y [T, heads′, headDim]]
    /// -> x [, y] with each pair (i, i + headDim/2) rotated by `position·invFreq[i]` (Hugging Face's
    /// rotate-half RoPE); `inverse` rotates back, which is also its backward. With y (a layer's keys
    /// beside its queries) both rotate in one pass, and both outputs are differentiable
    case rope(inverse: Bool)
    /// q [T, H_q, D], k [T, H_kv, D], v [T, H_kv, D] [, sequence starts [T] i32 when `packed`]
    /// -> out [T, H_q, D], logsumexp [T, H_q] f32
    case attention(AttentionOptions)
    /// G, q, k, v, out, logsumexp [, sequence starts when `packed`] -> dq, dk, dv
    case attentionBackward(AttentionOptions)
    /// q [T, H_q, D], k [T, H_kv, D], v [T, H_kv, D], key cache [C, H_kv, D] (k's dtype), value cache
    /// [C, H_kv, D] (v's dtype), past [1] i32 -> out [T, H_q, D], logsumexp [T, H_q] f32: causal
    /// attention of one sequence whose first `past` keys and values are the caches' leading rows
    /// (a KV cache of tokens already run, read at run time) followed by k and v: query row t, at
    /// position past + t, attends cache rows 0..<past and new rows 0...t. Inference only (no
    /// gradient); a past beyond the cache's C rows is an error on the CPU and reads C rows on a device
    case cachedAttention(scale: Float?)
    /// logits [T, V], labels [T] i32 -> [1] f32: mean over rows whose label is not `ignoreIndex` of
    /// `logsumexp(logits) − logits[label]` (`torch.nn.functional.cross_entropy`; NaN when every row
    /// is ignored or a label is outside [0, V), as PyTorch gives NaN or fails), logsumexp [T] f32
    case crossEntropy(ignoreIndex: Int32)
    /// logits, labels, logsumexp, dLoss [1] -> d logits = (softmax − onehot)·dLoss / counted rows
    case crossEntropyBackward(ignoreIndex: Int32)
    /// hidden [T, d], weight [V, d] (f32, f16, bf16 or quantized), labels [T] i32 -> [1] f32, logsumexp [T] f32:
    /// `crossEntropy` of the logits `hidden·Wᵀ`, which are formed and consumed a block of rows by a
    /// chunk of the vocabulary at a time (an online logsumexp), so `[T, V]` is never held
    case linearCrossEntropy(LinearCrossEntropyOptions)
    /// hidden, weight, labels, logsumexp, dLoss [1] -> d hidden [T, d] (hidden's dtype) and, with
    /// `weightGradient`, d weight [V, d] f32: `(softmax − onehot)·dLoss / counted rows` times W (and
    /// its transpose times hidden), one chunk of logits at a time
    case linearCrossEntropyBackward(LinearCrossEntropyOptions, weightGradient: Bool)
    /// param, grad, m, v -> param, m, v: one AdamW step, in place (`Ops.adamW`); param f32, f16 or
    /// bf16 (updated in f32, rounded once), the moments f32
    case adamW(AdamWOptions)
    /// params (n), grads (n), m (n), v (n) [, loss, health] -> params, m, v [, health] in place: `adamW`
    /// on every tensor at once (`Ops.multiTensorAdamW`), after clipping the gradients' global norm
    /// when the options ask, and only while the loss and the health flag allow when guarded;
    /// the same bits as `row_sum_of_squares` of each gradient, their sum in order, `clip_coefficient`,
    /// `scale_rows` and `adamW` tensor by tensor
    case multiTensorAdamW(MultiTensorAdamWOptions)

    /// The op without its options: what plans, fallbacks, profiles and coverage tests name. The raw
    /// value is the op's name.
    public enum Kind: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
        case matmul
        case add
        case mul
        case scale
        case scaleRows = "scale_rows"
        case rowSumOfSquares = "row_sum_of_squares"
        case rowL2Norm = "row_l2_norm"
        case cast
        case loraForward = "lora_forward"
        case loraBackward = "lora_backward"
        case doraNorm = "dora_norm"
        case doraForward = "dora_forward"
        case doraBackward = "dora_backward"
        case doraCompose = "dora_compose"
        case activation
        case activationBackward = "activation_backward"
        case gatedActivation = "gated_activation"
        case gatedActivationBackward = "gated_activation_backward"
        case meanSquaredError = "mean_squared_error"
        case meanSquaredErrorBackward = "mean_squared_error_backward"
        case clipCoefficient = "clip_coefficient"
        case transpose
        case embedding
        case embeddingBackward = "embedding_backward"
        case rmsNorm = "rms_norm"
        case rmsNormBackward = "rms_norm_backward"
        case rope
        case attention
        case attentionBackward = "attention_backward"
        case cachedAttention = "cached_attention"
        case crossEntropy = "cross_entropy"
        case crossEntropyBackward = "cross_entropy_backward"
        case linearCrossEntropy = "linear_cross_entropy"
        case linearCrossEntropyBackward = "linear_cross_entropy_backward"
        case adamW = "adamw"
        case multiTensorAdamW = "multi_tensor_adamw"

        public var description: String { rawValue }
    }

    public var kind: Kind {
        switch self {
        case .matmul: .matmul
        case .add: .add
        case .mul: .mul
        case .scale: .scale
        case .scaleRows: .scaleRows
        case .rowSumOfSquares: .rowSumOfSquares
        case .rowL2Norm: .rowL2Norm
        case .cast: .cast
        case .loraForward: .loraForward
        case .loraBackward: .loraBackward
        case .doraNorm: .doraNorm
        case .doraForward: .doraForward
        case .doraBackward: .doraBackward
        case .doraCompose: .doraCompose
        case .activation: .activation
        case .activationBackward: .activationBackward
        case .gatedActivation: .gatedActivation
        case .gatedActivationBackward: .gatedActivationBackward
        case .meanSquaredError: .meanSquaredError
        case .meanSquaredErrorBackward: .meanSquaredErrorBackward
        case .clipCoefficient: .clipCoefficient
        case .transpose: .transpose
        case .embedding: .embedding
        case .embeddingBackward: .embeddingBackward
        case .rmsNorm: .rmsNorm
        case .rmsNormBackward: .rmsNormBackward
        case .rope: .rope
        case .attention: .attention
        case .attentionBackward: .attentionBackward
        case .cachedAttention: .cachedAttention
        case .crossEntropy: .crossEntropy
        case .crossEntropyBackward: .crossEntropyBackward
        case .linearCrossEntropy: .linearCrossEntropy
        case .linearCrossEntropyBackward: .linearCrossEntropyBackward
        case .adamW: .adamW
        case .multiTensorAdamW: .multiTensorAdamW
        }
    }

    public var name: String { kind.rawValue }

    public var description: String { name }

    /// Whether the op draws dropout, from a seed a run's mixes into (`reseeded`).
    public var drawsDropout: Bool { reseeded(1) != self }

    /// The op with its dropout seed mixed with a run's `seed` (ops without dropout are unchanged).
    func reseeded(_ seed: UInt32) -> Op {
        switch self {
        case .loraForward(let o): return .loraForward(o.reseeded(seed))
        case .loraBackward(let o): return .loraBackward(o.reseeded(seed))
        case .doraForward(var o): o.lora = o.lora.reseeded(seed); return .doraForward(o)
        case .doraBackward(var o): o.lora = o.lora.reseeded(seed); return .doraBackward(o)
        default: return self
        }
    }

    /// The outputs this op produces for these inputs, or an error that names the op and shapes.
    public func outputs(for inputs: [TensorDescriptor]) throws -> [TensorDescriptor] {
        let check = OpCheck(op: self, inputs: inputs)
        switch self {
        case .matmul(let o):
            try check.count(o.hasBias ? 3 : 2)
            try check.floating(quantizedAt: [1])
            try check.floatingOutput(o.outputDType)
            let a = try check.matrix(0, "A"), b = try check.matrix(1, "B")
            let (m, k) = o.transposeA ? (a.1, a.0) : (a.0, a.1)
            let (kb, n) = o.transposeB ? (b.1, b.0) : (b.0, b.1)
            try check.equal(k, kb, "the inner dimensions of op(A) [\(m), \(k)] and op(B) [\(kb), \(n)]")
            if o.hasBias { try check.vector(2, "bias", n) }
            return [TensorDescriptor([m, n], o.outputDType ?? inputs[0].dtype)]
        case .add, .mul:
            try check.count(2)
            try check.floating()
            let (a, b) = (inputs[0].shape.dims, inputs[1].shape.dims)
            guard b.count <= a.count, Array(a.suffix(b.count)) == b else {
                throw check.error(.shapeMismatch, "the second operand's shape \(inputs[1].shape) must be the first's \(inputs[0].shape) or its trailing dimensions")
            }
            return [inputs[0]]
        case .scale:
            try check.count(1)
            try check.floating()
            return [inputs[0]]
        case .scaleRows:
            try check.count(2)
            try check.floating()
            guard inputs[0].shape.rank >= 1 else { throw check.error(.shapeMismatch, "needs at least one dimension") }
            try check.vector(1, "factors", inputs[0].shape.rows)
            return [inputs[0]]
        case .rowSumOfSquares, .rowL2Norm:
            try check.count(1)
            try check.floating(quantizedAt: [0])
            guard inputs[0].shape.rank >= 1 else { throw check.error(.shapeMismatch, "needs at least one dimension") }
            return [TensorDescriptor(Shape(Array(inputs[0].shape.dims.dropLast())), .f32)]
        case .cast(let dtype):
            try check.count(1)
            try check.floating(quantizedAt: [0])
            guard dtype.isFloatingPoint || (dtype.isQuantized && inputs[0].dtype.isFloatingPoint) else {
                throw check.error(.dtypeMismatch, "casts between f32, f16 and bf16, quantizes from them and dequantizes to them; not \(inputs[0].dtype) to \(dtype)")
            }
            if dtype.isQuantized && !dtype.hasQuantizer {
                throw check.error(.dtypeMismatch, "quantizes into \(DType.allCases.filter { $0.hasQuantizer }.map { $0.rawValue }.joined(separator: ", ")); \(dtype) tensors come quantized (from GGUF files) and are only read")
            }
            if let block = dtype.rowBlockElements, inputs[0].shape.count > 0, inputs[0].shape.columns % block != 0 {
                throw check.error(.shapeMismatch, "\(dtype) quantizes rows of whole \(block)-element blocks; \(inputs[0].shape) has rows of \(inputs[0].shape.columns)")
            }
            return [TensorDescriptor(inputs[0].shape, dtype)]
        case .loraForward(let o):
            try check.count(o.hasBias ? 5 : 4)
            try check.floating(quantizedAt: [1])
            try check.floatingOutput(o.outputDType)
            try check.lora(o)
            guard !(o.accumulate && o.hasBias) else { throw check.error(.invalidArgument, "an accumulating adapter adds no bias") }
            let operands = LoRAForwardOperands(inputs, o)
            let (t, _, dOut, r) = try check.loraDims(x: operands.x, w: operands.w, a: operands.a, b: operands.b)
            if let bias = operands.bias { try check.vector(bias, "bias", dOut) }
            return [TensorDescriptor([t, dOut], o.outputDType ?? operands.x.dtype), TensorDescriptor([t, r], .f32)]
        case .loraBackward(let o):
            try check.count(6)
            try check.floating(quantizedAt: [2])
            try check.floatingOutput(o.outputDType)
            try check.lora(o)
            let operands = LoRABackwardOperands(inputs)
            let g = try check.matrix(operands.gradient, "G")
            let (t, dIn, dOut, r) = try check.loraDims(x: operands.x, w: operands.w, a: operands.a, b: operands.b)
            try check.equal(g.0, t, "G's rows and x's rows")
            try check.equal(g.1, dOut, "G's columns and W's rows (d_out)")
            let u = try check.matrix(operands.u, "u")
            try check.equal(u.0, t, "u's rows and x's rows")
            try check.equal(u.1, r, "u's columns and the rank r")
            return [TensorDescriptor([t, dIn], o.outputDType ?? operands.x.dtype),
                    TensorDescriptor([r, dIn], .f32), TensorDescriptor([dOut, r], .f32)]
        case .doraNorm(let scale):
            try check.count(5)
            try check.floating(quantizedAt: [0])
            guard scale.isFinite else { throw check.error(.invalidArgument, "scale must be finite, got \(scale)") }
            let operands = DoRANormOperands(inputs)
            // W's d_in stands in for x's columns.
            let (_, _, dOut, _) = try check.loraDims(x: operands.w, w: operands.w, a: operands.a, b: operands.b)
            try check.vector(operands.magnitude, "m", dOut)
            try check.vector(operands.weightSquaredNorm, "‖W‖²_row", dOut)
            return [TensorDescriptor([dOut], .f32), TensorDescriptor([dOut], .f32)]
        case .doraForward(let o):
            try check.count(o.lora.hasBias ? 7 : 6)
            try check.floating(quantizedAt: [1])
            try check.floatingOutput(o.lora.outputDType)
            try check.dora(o)
            let operands = DoRAForwardOperands(inputs, o)
            let (t, _, dOut, r) = try check.loraDims(x: operands.x, w: operands.w, a: operands.a, b: operands.b)
            try check.vector(operands.magnitude, "m", dOut)
            try check.vector(operands.weightSquaredNorm, "‖W‖²_row", dOut)
            if let bias = operands.bias { try check.vector(bias, "bias", dOut) }
            let f32 = { (shape: Shape) in TensorDescriptor(shape, .f32) }
            return DoRAForwardResults(y: TensorDescriptor([t, dOut], o.lora.outputDType ?? operands.x.dtype), u: f32([t, r]),
                                      norm: f32([dOut]), g: f32([dOut]), inner: o.trainableMagnitude ? f32([t, dOut]) : nil).values
        case .doraBackward(let o):
            try check.count(o.trainableMagnitude ? 9 : 8)
            try check.floating(quantizedAt: [2])
            try check.floatingOutput(o.lora.outputDType)
            try check.dora(o)
            let operands = DoRABackwardOperands(inputs, o)
            let (t, dIn, dOut, r) = try check.loraDims(x: operands.x, w: operands.w, a: operands.a, b: operands.b)
            let g = try check.matrix(operands.gradient, "G")
            try check.equal([g.0, g.1], [t, dOut], "G's shape and [T, d_out]")
            let u = try check.matrix(operands.u, "u")
            try check.equal([u.0, u.1], [t, r], "u's shape and [T, r]")
            try check.vector(operands.norm, "n", dOut)
            try check.vector(operands.g, "g", dOut)
            if let inner = operands.inner { try check.equal(inner.shape, Shape([t, dOut]), "inner's shape and [T, d_out]") }
            return [TensorDescriptor([t, dIn], o.lora.outputDType ?? operands.x.dtype),
                    TensorDescriptor([r, dIn], .f32), TensorDescriptor([dOut, r], .f32)]
                + (o.trainableMagnitude ? [TensorDescriptor([dOut], .f32)] : [])
        case .doraCompose(let scale):
            try check.count(3)
            try check.floating()
            guard scale.isFinite else { throw check.error(.invalidArgument, "scale must be finite, got \(scale)") }
            let base = try check.matrix(0, "base")
            try check.equal(inputs[1].shape, inputs[0].shape, "the shapes of base and lora")
            try check.vector(2, "g", base.1)
            return [inputs[0]]
        case .activation:
            try check.count(1)
            try check.floating()
            return [inputs[0]]
        case .activationBackward:
            try check.count(2)
            try check.floating()
            try check.equal(inputs[1].shape, inputs[0].shape, "the shapes of x and G")
            return [inputs[0]]
        case .gatedActivation:
            try check.count(2)
            try check.floating()
            try check.equal(inputs[1].shape, inputs[0].shape, "the shapes of gate and up")
            return [inputs[0]]
        case .gatedActivationBackward:
            try check.count(3)
            try check.floating()
            try check.equal(inputs[1].shape, inputs[0].shape, "the shapes of gate and up")
            try check.equal(inputs[2].shape, inputs[0].shape, "the shapes of gate and G")
            return [inputs[0], inputs[1]]
        case .meanSquaredError:
            try check.count(2)
            try check.floating()
            try check.equal(inputs[1].shape, inputs[0].shape, "the shapes of prediction and target")
            guard inputs[0].shape.count > 0 else { throw check.error(.shapeMismatch, "the mean of no elements is undefined") }
            return [TensorDescriptor([1], .f32)]
        case .meanSquaredErrorBackward:
            try check.count(3)
            try check.floating()
            try check.equal(inputs[1].shape, inputs[0].shape, "the shapes of prediction and target")
            try check.lossGradient(inputs[2])
            return [inputs[0]]
        case .clipCoefficient(let maxNorm):
            try check.count(1)
            guard inputs[0].shape.count == 1, inputs[0].dtype == .f32 else {
                throw check.error(.shapeMismatch, "takes the sum of squared gradients as one f32 value, got \(inputs[0])")
            }
            guard maxNorm.isFinite, maxNorm > 0 else { throw check.error(.invalidArgument, "the largest norm must be positive and finite, got \(maxNorm)") }
            return [inputs[0]]
        case .transpose(let axes):
            try check.count(1)
            try check.floating()
            let dims = inputs[0].shape.dims
            guard axes.count == dims.count, Set(axes) == Set(dims.indices), dims.count <= 4 else {
                throw check.error(.shapeMismatch, "axes \(axes) must order all \(dims.count) axes of \(inputs[0].shape) (at most 4)")
            }
            return [TensorDescriptor(Shape(axes.map { dims[$0] }), inputs[0].dtype)]
        case .embedding:
            try check.count(2)
            try check.floating(at: [0])
            let table = try check.matrix(0, "table")
            let t = try check.ids(1)
            return [TensorDescriptor([t, table.1], inputs[0].dtype)]
        case .embeddingBackward(let vocabulary):
            try check.count(2)
            try check.floating(at: [1])
            let t = try check.ids(0)
            let g = try check.matrix(1, "G")
            try check.equal(g.0, t, "G's rows and the number of ids")
            guard vocabulary > 0 else { throw check.error(.invalidArgument, "the vocabulary must not be empty") }
            return [TensorDescriptor([vocabulary, g.1], .f32)]
        case .rmsNorm(let epsilon):
            let residual = inputs.count == 3
            try check.count(residual ? 3 : 2)
            try check.floating()
            guard epsilon.isFinite, epsilon >= 0 else { throw check.error(.invalidArgument, "epsilon must be finite and not negative, got \(epsilon)") }
            guard inputs[0].shape.rank >= 1 else { throw check.error(.shapeMismatch, "needs at least one dimension") }
            try check.vector(1, "weight", inputs[0].shape.columns)
            if residual { try check.equal(inputs[2].shape, inputs[0].shape, "the shapes of x and r") }
            return [inputs[0], TensorDescriptor([inputs[0].shape.rows], .f32)] + (residual ? [inputs[0]] : [])
        case .rmsNormBackward(let weightGradient):
            try check.count(inputs.count == 5 ? 5 : 4)
            try check.floating()
            let operands = RMSNormBackwardOperands(inputs)
            let x = operands.x.shape
            try check.equal(x, operands.gradient.shape, "the shapes of G and x")
            if let r = operands.residualGradient { try check.equal(r.shape, x, "the shapes of R and x") }
            guard x.rank >= 1 else { throw check.error(.shapeMismatch, "needs at least one dimension") }
            try check.vector(operands.weight, "weight", x.columns)
            try check.vector(operands.rstd, "rstd", x.rows)
            return [operands.x] + (weightGradient ? [TensorDescriptor([x.columns], .f32)] : [])
        case .rope:
            let paired = inputs.count == 4
            try check.count(paired ? 4 : 3)
            try check.floating(at: paired ? [0, 1, 3] : [0, 1])
            let x = inputs[0].shape
            guard x.rank == 3, x[2] % 2 == 0 else { throw check.error(.shapeMismatch, "x must be [T, heads, headDim] with an even headDim, got \(x)") }
            try check.vector(1, "the inverse frequencies", x[2] / 2)
            guard inputs[1].dtype == .f32 else { throw check.error(.dtypeMismatch, "the inverse frequencies are f32") }
            try check.equal(try check.ids(2), x[0], "the number of positions and x's rows")
            guard paired else { return [inputs[0]] }
            let y = inputs[3].shape
            guard y.rank == 3, y[0] == x[0], y[2] == x[2] else {
                throw check.error(.shapeMismatch, "y must be [T, heads, headDim] with x's T and headDim \(x), got \(y)")
            }
            return [inputs[0], inputs[3]]
        case .attention(let o):
            try check.count(o.packed ? 4 : 3)
            try check.floating(at: [0, 1, 2])
            let (t, hq, d) = try check.attention(o, q: inputs[0], k: inputs[1], v: inputs[2])
            if o.packed { try check.equal(try check.ids(3), t, "the number of sequence starts and q's rows") }
            return [TensorDescriptor([t, hq, d], inputs[0].dtype), TensorDescriptor([t, hq], .f32)]
        case .attentionBackward(let o):
            try check.count(o.packed ? 7 : 6)
            try check.floating(at: Array(0..<6))
            let operands = AttentionBackwardOperands(inputs)
            let (t, hq, d) = try check.attention(o, q: operands.q, k: operands.k, v: operands.v)
            if o.packed { try check.equal(try check.ids(6), t, "the number of sequence starts and q's rows") }
            for (value, name) in [(operands.gradient, "G"), (operands.out, "out")] {
                try check.equal(value.shape, Shape([t, hq, d]), "\(name)'s shape and q's")
            }
            try check.equal(operands.logsumexp.shape, Shape([t, hq]), "the logsumexp's shape and [T, H_q]")
            return [operands.q, operands.k, operands.v]
        case .cachedAttention(let scale):
            try check.count(6)
            try check.floating(at: [0, 1, 2, 3, 4])
            let operands = CachedAttentionOperands(inputs)
            guard operands.q.shape.rank == 3 else { throw check.error(.shapeMismatch, "q must be [T, heads, headDim], got \(operands.q.shape)") }
            // One sequence: every query row is of it.
            let (t, hq, d) = try check.attention(AttentionOptions(sequenceLength: max(operands.q.shape[0], 1), scale: scale),
                                                 q: operands.q, k: operands.k, v: operands.v)
            for (cache, new, name) in [(operands.keyCache, operands.k, "key"), (operands.valueCache, operands.v, "value")] {
                guard cache.shape.rank == 3 else { throw check.error(.shapeMismatch, "the \(name) cache must be [C, H_kv, D], got \(cache.shape)") }
                try check.equal(Array(cache.shape.dims.dropFirst()), Array(new.shape.dims.dropFirst()), "the \(name) cache's heads and head dim and those of its new rows")
                guard cache.dtype == new.dtype else {
                    throw check.error(.dtypeMismatch, "the \(name) cache holds \(cache.dtype) but its new rows are \(new.dtype)")
                }
            }
            try check.equal(try check.ids(5), 1, "the past length's elements")
            return [TensorDescriptor([t, hq, d], operands.q.dtype), TensorDescriptor([t, hq], .f32)]
        case .crossEntropy:
            try check.count(2)
            try check.floating(at: [0])
            let logits = try check.matrix(0, "logits")
            try check.equal(try check.ids(1), logits.0, "the number of labels and the logits' rows")
            guard logits.1 > 0 else { throw check.error(.shapeMismatch, "needs at least one class") }
            return [TensorDescriptor([1], .f32), TensorDescriptor([logits.0], .f32)]
        case .crossEntropyBackward:
            try check.count(4)
            try check.floating(at: [0])
            let operands = CrossEntropyBackwardOperands(inputs)
            let logits = try check.matrix(operands.logits, "logits")
            try check.equal(try check.ids(1), logits.0, "the number of labels and the logits' rows")
            try check.vector(operands.logsumexp, "the logsumexp", logits.0)
            try check.lossGradient(operands.lossGradient)
            return [inputs[0]]
        case .linearCrossEntropy(let o):
            try check.count(3)
            let (t, _, _) = try check.linearCrossEntropy(o, hidden: inputs[0], weight: inputs[1], labels: 2)
            return [TensorDescriptor([1], .f32), TensorDescriptor([t], .f32)]
        case .linearCrossEntropyBackward(let o, let weightGradient):
            try check.count(5)
            let operands = LinearCrossEntropyBackwardOperands(inputs)
            let (t, v, d) = try check.linearCrossEntropy(o, hidden: operands.hidden, weight: operands.weight, labels: 2)
            try check.vector(operands.logsumexp, "the logsumexp", t)
            try check.lossGradient(operands.lossGradient)
            return [operands.hidden] + (weightGradient ? [TensorDescriptor([v, d], .f32)] : [])
        case .adamW(let o):
            try check.count(4)
            try check.floating()
            let operands = AdamWOperands(inputs)
            for (value, name) in [(operands.gradient, "grad"), (operands.m, "m"), (operands.v, "v")] {
                try check.equal(value.shape, operands.parameter.shape, "the shapes of param and \(name)")
            }
            guard operands.m.dtype == .f32, operands.v.dtype == .f32 else {
                throw check.error(.dtypeMismatch, "the moments m and v are f32; got \(operands.m.dtype) and \(operands.v.dtype)")
            }
            try check.adamW(o)
            return [operands.parameter, operands.m, operands.v]
        case .multiTensorAdamW(let o):
            let n = o.tensorCount, extra = o.guarded ? 2 : 0
            guard n > 0, inputs.count == 4 * n + extra else {
                throw check.error(.invalidArgument, "takes n params, n grads, n first and n second moments for its n = \(n) learning-rate factors"
                                  + (o.guarded ? ", then the loss and the health flag" : "") + "; got \(inputs.count) inputs")
            }
            for flag in inputs.suffix(extra) where flag.shape.count != 1 || flag.dtype != .f32 {
                throw check.error(.shapeMismatch, "the loss and the health flag are one f32 value each, got \(flag)")
            }
            guard o.learningRateFactors.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw check.error(.invalidArgument, "learning-rate factors must be positive and finite, got \(o.learningRateFactors)")
            }
            if let maxNorm = o.maxGradientNorm, !(maxNorm.isFinite && maxNorm > 0) {
                throw check.error(.invalidArgument, "the largest norm must be positive and finite, got \(maxNorm)")
            }
            let operands = MultiTensorAdamWOperands(inputs)
            for i in 0..<n {
                do {
                    let t = operands.tensor(i)
                    _ = try Op.adamW(o.options(i)).outputs(for: [t.parameter, t.gradient, t.m, t.v])
                } catch let error as LowRankError {
                    throw error.adding("tensor", "\(i)")
                }
            }
            return operands.parameters + operands.m + operands.v + inputs.suffix(extra).suffix(1)
        }
    }
}

/// Shape and dtype checks that name the op and its input shapes in every error.
private struct OpCheck {
    func adamW(_ o: AdamWOptions) throws {
        let valid = o.learningRate.isFinite && o.learningRate >= 0 && (0..<1).contains(o.beta1) && (0..<1).contains(o.beta2)
            && o.epsilon.isFinite && o.epsilon > 0 && o.weightDecay.isFinite && o.weightDecay >= 0 && o.step >= 1
        guard valid else {
            throw error(.invalidArgument, "needs lr >= 0, betas in [0, 1), eps > 0, weight decay >= 0 and step >= 1; got \(o)")
        }
    }

    let op: Op
    let inputs: [TensorDescriptor]

    func error(_ kind: LowRankError.Kind, _ message: String) -> LowRankError {
        LowRankError(kind, "\(op.name): \(message)",
                     context: [("op", op.name), ("inputs", inputs.map(\.description).joined(separator: ", "))])
    }

    func count(_ n: Int) throws {
        guard inputs.count == n else { throw error(.invalidArgument, "takes \(n) inputs, got \(inputs.count)") }
    }

    /// A loss's backward starts from dLoss: one f32 value.
    func lossGradient(_ value: TensorDescriptor) throws {
        guard value.shape.count == 1, value.dtype == .f32 else {
            throw error(.shapeMismatch, "the loss gradient is one f32 value, got \(value)")
        }
    }

    /// Every input is f32, f16 or bf16, except that those at `quantizedAt` (a frozen weight) may
    /// also be block-quantized.
    func floating(quantizedAt allowed: Set<Int> = []) throws {
        for (i, input) in inputs.enumerated() where !input.dtype.isFloatingPoint {
            if input.dtype.isQuantized && allowed.contains(i) { continue }
            let which = input.dtype.isQuantized ? "only a frozen weight may be \(input.dtype); input \(i) is" : "inputs must be f32, f16 or bf16, got"
            throw error(.dtypeMismatch, "\(which) \(input.dtype)")
        }
    }

    /// Results are written in a float type: a quantized weight is made by `cast`, never written by a product.
    func floatingOutput(_ dtype: DType?) throws {
        if let dtype, !dtype.isFloatingPoint {
            throw error(.dtypeMismatch, "writes f32, f16 or bf16, not \(dtype) (quantize with cast; a quantized weight cannot be accumulated into)")
        }
    }

    /// Only the inputs at `indices` are values (f32, f16, bf16); the others are checked by their own rule.
    func floating(at indices: [Int]) throws {
        for i in indices where !inputs[i].dtype.isFloatingPoint {
            throw error(.dtypeMismatch, "input \(i) must be f32, f16 or bf16, got \(inputs[i].dtype)")
        }
    }

    /// A vector of i32 token ids or positions at input `i`; returns its length.
    func ids(_ i: Int) throws -> Int {
        guard inputs[i].dtype == .i32, inputs[i].shape.rank == 1 else {
            throw error(.dtypeMismatch, "input \(i) must be a vector of i32 ids, got \(inputs[i])")
        }
        return inputs[i].shape[0]
    }

    /// Checks q, k and v and returns (T, H_q, D).
    func attention(_ o: AttentionOptions, q: TensorDescriptor, k: TensorDescriptor, v: TensorDescriptor) throws -> (Int, Int, Int) {
        let (q, k, v) = (q.shape, k.shape, v.shape)
        guard q.rank == 3, k.rank == 3 else { throw error(.shapeMismatch, "q, k and v must be [T, heads, headDim], got \(q) and \(k)") }
        try equal(v, k, "the shapes of k and v")
        try equal(k[0], q[0], "the rows of q and k")
        try equal(k[2], q[2], "the head dimensions of q and k")
        guard k[1] > 0, q[1] % k[1] == 0 else { throw error(.shapeMismatch, "the query heads (\(q[1])) must be a multiple of the KV heads (\(k[1]))") }
        guard o.sequenceLength > 0, q[0] % o.sequenceLength == 0 else {
            throw error(.shapeMismatch, "T = \(q[0]) must be a whole number of sequences of \(o.sequenceLength)")
        }
        if let s = o.scale, !s.isFinite { throw error(.invalidArgument, "scale must be finite, got \(s)") }
        return (q[0], q[1], q[2])
    }

    /// Checks hidden [T, d], weight [V, d] and the labels at input `labels`; returns (T, V, d).
    func linearCrossEntropy(_ o: LinearCrossEntropyOptions, hidden: TensorDescriptor, weight: TensorDescriptor, labels: Int) throws -> (Int, Int, Int) {
        guard hidden.dtype.isFloatingPoint else { throw error(.dtypeMismatch, "hidden must be f32, f16 or bf16, got \(hidden.dtype)") }
        guard weight.dtype.isFloatingPoint || weight.dtype.isQuantized else {
            throw error(.dtypeMismatch, "the weight must be f32, f16, bf16 or block-quantized, got \(weight.dtype)")
        }
        let h = try matrix(hidden, "hidden"), w = try matrix(weight, "the weight")
        try equal(h.1, w.1, "hidden's columns and the weight's columns (d)")
        try equal(try ids(labels), h.0, "the number of labels and hidden's rows")
        guard w.0 > 0 else { throw error(.shapeMismatch, "needs at least one class") }
        guard o.vocabularyChunk > 0, o.rowChunk > 0 else {
            throw error(.invalidArgument, "chunks must hold at least one class and one row, got \(o.vocabularyChunk) and \(o.rowChunk)")
        }
        return (h.0, w.0, h.1)
    }

    func matrix(_ i: Int, _ name: String) throws -> (Int, Int) { try matrix(inputs[i], name) }

    func matrix(_ value: TensorDescriptor, _ name: String) throws -> (Int, Int) {
        let s = value.shape
        guard s.rank == 2 else { throw error(.shapeMismatch, "\(name) must be 2-D, got \(s)") }
        return (s[0], s[1])
    }

    func vector(_ i: Int, _ name: String, _ n: Int) throws { try vector(inputs[i], name, n) }

    func vector(_ value: TensorDescriptor, _ name: String, _ n: Int) throws {
        guard value.shape == Shape([n]) else {
            throw error(.shapeMismatch, "\(name) must be [\(n)], got \(value.shape)")
        }
    }

    func equal<T: Equatable>(_ a: T, _ b: T, _ what: String) throws {
        guard a == b else { throw error(.shapeMismatch, "\(what) differ (\(a) vs \(b))") }
    }

    func lora(_ o: LoRAOptions) throws {
        guard o.dropout >= 0, o.dropout < 1 else {
            throw error(.invalidArgument, "dropout must be in [0, 1), got \(o.dropout)")
        }
        guard o.scale.isFinite else { throw error(.invalidArgument, "scale must be finite, got \(o.scale)") }
    }

    func dora(_ o: DoRAOptions) throws {
        try lora(o.lora)
        guard !o.lora.accumulate else { throw error(.unsupported, "a DoRA adapter cannot accumulate onto another adapter's output") }
    }

    /// Checks x, W, A and B against each other and returns (T, d_in, d_out, r).
    func loraDims(x: TensorDescriptor, w: TensorDescriptor, a: TensorDescriptor, b: TensorDescriptor) throws -> (Int, Int, Int, Int) {
        let x = try matrix(x, "x"), w = try matrix(w, "W"), a = try matrix(a, "A"), b = try matrix(b, "B")
        try equal(x.1, w.1, "x's columns and W's columns (d_in)")
        try equal(a.1, w.1, "A's columns and W's columns (d_in)")
        try equal(b.0, w.0, "B's rows and W's rows (d_out)")
        try equal(b.1, a.0, "B's columns and A's rows (the rank r)")
        guard a.0 > 0 else { throw error(.shapeMismatch, "the rank r must be at least 1") }
        return (x.0, x.1, w.0, a.0)
    }
}

extension Op {
    /// The inputs each output may be written over, by output index, in the order a plan prefers
    /// them (`ExecutionPlan` does when the input dies at this op and has the output's dtype and
    /// bytes). Every backend's kernel reads such an input's element no later than it writes the
    /// output's element at the same index (elementwise ops), or, for the LoRA backward's dx over
    /// x, reads x only in passes that finish before dx is written.
    public var overwritableInputs: [Int: [Int]] {
        switch self {
        case .add, .mul, .gatedActivation, .activationBackward: [0: [0, 1]]
        case .scale, .scaleRows, .activation: [0: [0]]
        // d gate over gate, d up over up, either over G.
        case .gatedActivationBackward: [0: [0, 2], 1: [1, 2]]
        case .loraBackward(let o) where !o.accumulate: [0: [1]]
        default: [:]
        }
    }

    /// The outputs whose values this op leaves unspecified (a backward pass told that no gradient
    /// flows into its input): the cross-checks against another backend and float64 skip them.
    public var unspecifiedOutputs: Set<Int> {
        switch self {
        case .loraBackward(let o): o.inputGradient ? [] : [0]
        case .doraBackward(let o): o.lora.inputGradient ? [] : [0]
        default: []
        }
    }
}
