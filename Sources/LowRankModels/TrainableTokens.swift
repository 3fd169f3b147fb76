import LowRank

/// PEFT's trainable token rows (`trainable_token_indices`, its `TrainableTokensLayer` on the token
/// embedding): for each listed id a row that replaces the embedding's row of that id, starting as
/// a copy of it. Only these rows train; the embedding stays frozen.
public struct TrainableTokens {
    /// The token ids, in the order of `rows`.
    public let indices: [Int]
    /// The replacement rows [indices.count, hidden] f32 (PEFT's `trainable_tokens_delta`, which
    /// despite its name holds whole rows, not differences).
    public let rows: Tensor

    /// PEFT's name for `rows` in `adapter_model.safetensors`.
    public static let key = ModelAdapter.key("model.embed_tokens", "token_adapter.trainable_tokens_delta")

    init(indices: [Int], rows: Tensor) {
        (self.indices, self.rows) = (indices, rows)
    }

    /// The rows `settings` lists, copied from `model`'s embedding (PEFT's `init_weights=True`); nil
    /// when it lists none. An id outside the vocabulary is refused. With tie_word_embeddings the
    /// rows replace the LM head's too (`Graph.lmHead`), as PEFT ties them.
    static func starting(_ settings: AdapterSettings, on model: LlamaModel) throws -> TrainableTokens? {
        guard let indices = try checkedIndices(settings, model) else { return nil }
        // Gathered on the device (a planning backend holds no values to read), widened to f32.
        let ids = try Tensor(ids: indices.map { Int32($0) }, on: model.backend)
        let rows = try Ops.execute(.embedding, [try model.weight("model.embed_tokens.weight"), ids])[0]
        return TrainableTokens(indices: indices, rows: rows.dtype == .f32 ? rows : try Ops.cast(rows, to: .f32))
    }

    /// The ids `settings` lists, checked against `model`.
    static func checkedIndices(_ settings: AdapterSettings, _ model: LlamaModel) throws -> [Int]? {
        guard let indices = settings.trainableTokenIndices else { return nil }
        let config = model.config
        if let outside = indices.first(where: { $0 >= config.vocabularySize }) {
            throw LowRankError(.invalidArgument, "trainable_token_indices holds \(outside), outside the model's vocabulary of \(config.vocabularySize) tokens")
        }
        return indices
    }

    /// For a batch's token ids, the graph's inputs that apply the rows: a one-hot [T, n] choosing
    /// each token's row (all zero for an unlisted id) and [T] factors keeping the embedding's row
    /// (0 for a listed id, 1 otherwise), so `keep ⊙ W[id] + onehot·rows` is PEFT's `index_copy`
    /// exactly.
    func selection(of ids: [Int32]) -> (onehot: [Float], keep: [Float]) {
        let row = Dictionary(uniqueKeysWithValues: indices.enumerated().map { (Int32(truncatingIfNeeded: $1), $0) })
        var onehot = [Float](repeating: 0, count: ids.count * indices.count)
        var keep = [Float](repeating: 1, count: ids.count)
        for (t, id) in ids.enumerated() {
            guard let k = row[id] else { continue }
            onehot[t * indices.count + k] = 1
            keep[t] = 0
        }
        return (onehot, keep)
    }
}
