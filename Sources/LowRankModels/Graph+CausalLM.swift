import LowRank

/// What `Graph.causalLMDecoder` built: the final norm's output `[T, d]` and the tensors that train.
struct CausalLMDecoderGraph {
    var hidden: GraphTensor
    /// Every adapter tensor in `ModelAdapter.parameters` order (the biases, the token rows, then the
    /// modules' copies, last; the LM head's copy is the caller's); empty unless training.
    var trainable: [GraphTensor]
    /// With trainable token rows (PEFT's `trainable_token_indices`): their parameter and the inputs
    /// that pick them, fed per batch by `feeds(ids:)`.
    var tokenRows: (tokens: TrainableTokens, rows: GraphTensor, onehot: GraphTensor, keep: GraphTensor)?
    /// The embedding's trained copy when it is the LM head's too (`SavedModule.tiedHead`): the one
    /// parameter both read, so its gradient sums both uses.
    var tiedHead: GraphTensor?

    /// The token-row inputs for `ids` (none without trainable token rows).
    func feeds(ids: [Int32], on backend: any Backend) throws -> [GraphTensor: Tensor] {
        Dictionary(uniqueKeysWithValues: try feedValues(ids: ids).map { ($0.key, try Tensor($0.value, shape: $0.key.shape, on: backend)) })
    }

    /// The values of `feeds`' tensors.
    func feedValues(ids: [Int32]) -> [GraphTensor: [Float]] {
        guard let (tokens, _, onehot, keep) = tokenRows else { return [:] }
        let selection = tokens.selection(of: ids)
        return [onehot: selection.onehot, keep: selection.keep]
    }
}

/// How the decoder's attention sees earlier tokens.
enum DecoderAttention {
    /// Each row of `sequence` tokens alone (training, evaluation, a whole forward).
    case causal
    /// Rows of `sequence` tokens holding several sequences each (`--pack`), each position's
    /// sequence start in `starts [T]` (`AttentionOptions.packed`).
    case packed(starts: GraphTensor)
    /// After the tokens in KV caches (`Op.cachedAttention`): layer i reads `keys[i]` and
    /// `values[i]`'s first `past` rows; `newRows` receives each layer's rotated k and v.
    case cached(keys: [GraphTensor], values: [GraphTensor], past: GraphTensor, newRows: (Int, GraphTensor, GraphTensor) -> Void)
}

extension Graph {
    /// A Llama-family decoder with its adapters, from token ids to the final norm: token embedding,
    /// the decoder blocks (each projection plain, LoRA or DoRA) and `model.norm`. With `training`
    /// the adapter's tensors are trainable and dropout applies; without it, PEFT's eval mode (no
    /// dropout). `residual` is the dtype the hidden state is held in between blocks (see
    /// `TrainingSettings.residualDType`); every block computes in f32. `observe` is given each
    /// linear layer's input, by module path (EVA's forward hooks).
    func causalLMDecoder(model: LlamaModel, adapter: ModelAdapter?, ids: GraphTensor, positions: GraphTensor, sequence: Int,
                         training: Bool, checkpointing: Bool = false, residual: DType = .f32, attention: DecoderAttention = .causal,
                         observe: ((String, GraphTensor) -> Void)? = nil) throws -> CausalLMDecoderGraph {
        let config = model.config
        let inverseFrequencies = try parameter("rope.inv_freq", model.inverseFrequencies)
        let frozen = { (name: String) in try self.parameter(name, try model.weight(name)) }

        let adapters = Dictionary(uniqueKeysWithValues: (adapter?.layers ?? []).map { ($0.path, $0.adapter) })
        let trainedBiases = Dictionary(uniqueKeysWithValues: (adapter?.biases ?? []).map { ($0.path, $0.tensor) })
        var trainable: [GraphTensor] = []
        var biasParameters: [String: GraphTensor] = [:]
        var moduleIndex: UInt32 = 0
        // The modules trained in full (modules_to_save) in place of the frozen weights, the LM head's aside (see `lmHead`).
        let copies = Dictionary(uniqueKeysWithValues: (adapter?.saved ?? []).map { ($0.path, $0) })
        var copyParameters: [String: GraphTensor] = [:], copyBiasParameters: [String: GraphTensor] = [:]
        let moduleWeight = { (path: String) throws -> GraphTensor in
            guard let copy = copies[path] else { return try frozen(path + ".weight") }
            if let made = copyParameters[path] { return made }  // one parameter, so one gradient, however often it is read
            let weight = try self.parameter(copy.key, copy.weight, trainable: training)
            copyParameters[path] = weight
            return weight
        }
        let project = { (x: GraphTensor, path: String, projection: DecoderProjection) throws -> GraphTensor in
            moduleIndex += 1
            observe?(path, x)
            if let copy = copies[path] {
                // A projection trained in full: its copy (bias too) in place of the module, with no adapter in it.
                let bias = try copy.bias.map { try self.parameter(copy.biasKey, $0, trainable: training) }
                copyBiasParameters[path] = bias
                return try self.linear(x, weight: try moduleWeight(path), bias: bias, label: path)
            }
            let weight = try frozen(path + ".weight")
            let bias: GraphTensor?
            if !config.hasBias(projection.rawValue) {
                bias = nil
            } else if let trained = trainedBiases[path] {
                bias = try self.parameter(path + ".bias", trained, trainable: training)
                biasParameters[path] = bias
            } else {
                bias = try frozen(path + ".bias")
            }
            guard let layer = adapters[path] else { return try self.linear(x, weight: weight, bias: bias, label: path) }
            let lora = layer.lora
            let a = try self.parameter(ModelAdapter.key(path, "lora_A.weight"), lora.a, trainable: training)
            let b = try self.parameter(ModelAdapter.key(path, "lora_B.weight"), lora.b, trainable: training)
            var options = lora.options(seed: moduleIndex)
            if !training { options.dropout = 0 }
            switch layer {
            case .lora:
                trainable += [a, b]
                return try self.lora(x, weight: weight, bias: bias, a: a, b: b, options: options, label: path)
            case .dora(let d):
                let m = try self.parameter(ModelAdapter.key(path, "lora_magnitude_vector"), d.magnitude, trainable: training)
                let normSquared = try self.parameter(path + ".weight_norm_squared", d.weightNormSquared)
                trainable += [a, b, m]
                return try self.dora(x, weight: weight, bias: bias, a: a, b: b, magnitude: m, weightNormSquared: normSquared,
                                     options: DoRAOptions(lora: options, trainableMagnitude: training), label: path)
            }
        }

        let shape = DecoderBlockShape(tokens: ids.descriptor.shape[0], sequence: sequence, queryHeads: config.headCount,
                                      keyValueHeads: config.keyValueHeadCount, headDim: config.headDim, rmsNormEpsilon: config.rmsNormEpsilon,
                                      computeDType: model.computeDType)
        var h = try embedding(try moduleWeight(SavedModule.embedding), ids: ids, label: "embed_tokens")
        var tokenRows: (tokens: TrainableTokens, rows: GraphTensor, onehot: GraphTensor, keep: GraphTensor)?
        if let tokens = adapter?.tokens {
            h = try held(h, in: .f32, label: "embed_tokens.f32")  // the trained rows are f32; a 16-bit table's rows widen exactly
            // PEFT's index_copy of the trained rows, as products that are exact: 0·W[id] + 1·row.
            let t = ids.descriptor.shape[0]
            let onehot = try input("embed_tokens.token_rows", [t, tokens.indices.count])
            let keep = try input("embed_tokens.keep", [t])
            let rows = try parameter(TrainableTokens.key, tokens.rows, trainable: training)
            let chosen = try apply(.matmul(MatmulOptions()), [onehot, rows], label: "embed_tokens.token_rows")[0]
            h = try add(try apply(.scaleRows, [h, keep], label: "embed_tokens.keep")[0], chosen, label: "embed_tokens.trained")
            tokenRows = (tokens, rows, onehot, keep)
        }
        // Into the residual stream's dtype, once: a 16-bit table's rows widen exactly to an f32 stream.
        h = try held(h, in: residual, label: "embed_tokens.\(residual.rawValue)")
        for layer in 0..<config.layerCount {
            let prefix = "model.layers.\(layer)."
            let attend: ((GraphTensor, GraphTensor, GraphTensor) throws -> GraphTensor)?
            switch attention {
            case .causal:
                attend = nil
            case .packed(let starts):
                attend = { q, k, v in
                    try self.attention(q: q, k: k, v: v, starts: starts, options: AttentionOptions(sequenceLength: sequence, packed: true, computeDType: model.computeDType),
                                       label: prefix + "self_attn")
                }
            case .cached(let keys, let values, let past, let newRows):
                attend = { q, k, v in
                    newRows(layer, k, v)
                    return try self.cachedAttention(CachedAttentionOperands(q: q, k: k, v: v, keyCache: keys[layer], valueCache: values[layer], past: past),
                                                    label: prefix + "self_attn")
                }
            }
            let input = h
            let block = {
                let output = try self.decoderBlock(try self.held(input, in: .f32, label: prefix + "f32"), shape: shape, inverseFrequencies: inverseFrequencies,
                                                   positions: positions, prefix: prefix, normWeight: { try moduleWeight(prefix + $0) },
                                                   project: { try project($0, prefix + $1.path, $1) }, attend: attend)
                // Rounded inside the region, so only the narrow value is kept for backward.
                return try self.held(output, in: residual, label: prefix + residual.rawValue)
            }
            h = try checkpointing ? checkpointed(block) : block()
        }
        let final = try rmsNorm(try held(h, in: .f32, label: "model.norm.f32"), weight: try moduleWeight("model.norm"), epsilon: config.rmsNormEpsilon,
                                label: "model.norm")
        // The biases' gradients, then the token rows' and the copies', last, in the adapter's
        // order, as `ModelAdapter.parameters` lists them (the LM head's copy follows, see `lmHead`).
        trainable += (adapter?.biases ?? []).compactMap { biasParameters[$0.path] }
        trainable += tokenRows.map { [$0.rows] } ?? []
        trainable += (adapter?.saved ?? []).flatMap { [copyParameters[$0.path], copyBiasParameters[$0.path]].compactMap { $0 } }
        let tiedHead = copies[SavedModule.embedding]?.tiedHead == true ? copyParameters[SavedModule.embedding] : nil
        return CausalLMDecoderGraph(hidden: final, trainable: training ? trainable : [], tokenRows: tokenRows, tiedHead: tiedHead)
    }

    /// `x` in `dtype`: itself, or cast (a 16-bit residual stream rounds to nearest even, and widens exactly).
    func held(_ x: GraphTensor, in dtype: DType, label: String) throws -> GraphTensor {
        x.dtype == dtype ? x : try apply(.cast(dtype), [x], label: label)[0]
    }

    /// The LM head's weight: the adapter's trained copy (`modules_to_save`), trainable with
    /// `training`, or the embedding's when tied to it (`decoder.tiedHead`); else the model's, the token embedding when tied, whose trained token rows
    /// (`decoder.tokenRows`) then replace the head's rows of their ids too, as PEFT ties its
    /// `TrainableTokensWrapper` to the LM head: `keep ⊙ W + onehot·rows` over the vocabulary, exact.
    func lmHead(_ model: LlamaModel, adapter: ModelAdapter?, decoder: CausalLMDecoderGraph, training: Bool = false) throws -> GraphTensor {
        if let tied = decoder.tiedHead { return tied }
        if let copy = adapter?.saved.first(where: { $0.path == SavedModule.head }) {
            return try parameter(copy.key, copy.weight, trainable: training)
        }
        let name = model.config.tiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"
        var weight = try parameter(name, try model.weight(name))
        guard model.config.tiedEmbeddings, let (tokens, rows, _, _) = decoder.tokenRows else { return weight }
        let vocabulary = model.config.vocabularySize
        let selection = tokens.selection(of: (0..<vocabulary).map { Int32($0) })
        let onehot = try parameter("lm_head.token_rows", try Tensor(selection.onehot, shape: [vocabulary, tokens.indices.count], on: model.backend))
        let keep = try parameter("lm_head.keep", try Tensor(selection.keep, shape: [vocabulary], on: model.backend))
        if weight.dtype != .f32 { weight = try apply(.cast(.f32), [weight], label: "lm_head.f32")[0] }
        let chosen = try apply(.matmul(MatmulOptions()), [onehot, rows], label: "lm_head.token_rows")[0]
        return try add(try apply(.scaleRows, [weight, keep], label: "lm_head.keep")[0], chosen, label: "lm_head.trained")
    }
}
