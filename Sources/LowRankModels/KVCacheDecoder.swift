import LowRank

/// Runs a model (with its adapter unmerged, as PEFT's `PeftModel` does in eval mode) over a
/// sequence a few tokens at a time, keeping every layer's rotated keys and values in a KV cache:
/// the prompt is run once, then each new token attends to the cache (`Op.cachedAttention`) instead
/// of the whole sequence being run again. One plan per number of new tokens (the prompt's, and 1
/// for each step after it), reused from step to step: the cache's filled length is an input.
public final class KVCacheDecoder {
    public let model: LlamaModel
    public let adapter: ModelAdapter?
    /// Tokens the cache holds at most.
    public let capacity: Int
    /// Tokens in the cache.
    public private(set) var count = 0
    private let keys: [Tensor]
    private let values: [Tensor]
    private var plans: [Int: StepPlan] = [:]

    /// The graph for `rows` new tokens: their logits `[rows, V]`, then each layer's rotated k, then
    /// each layer's v.
    private struct StepPlan {
        let plan: ExecutionPlan
        let ids, positions, past: GraphTensor
        let decoder: CausalLMDecoderGraph
    }

    public init(model: LlamaModel, adapter: ModelAdapter?, capacity: Int) throws {
        let config = model.config
        guard capacity >= 1 else { throw LowRankError(.invalidArgument, "a KV cache must hold at least one token, got \(capacity)") }
        if let window = config.slidingWindow, capacity > window {
            throw LowRankError(.unsupported, "a sequence of \(capacity) tokens exceeds the model's sliding window of \(window), which this engine does not apply; generate fewer tokens or shorten the prompt")
        }
        (self.model, self.adapter, self.capacity) = (model, adapter, capacity)
        let shape: Shape = [capacity, config.keyValueHeadCount, config.headDim]
        keys = try (0..<config.layerCount).map { _ in try Tensor(empty: shape, dtype: .f32, on: model.backend) }
        values = try (0..<config.layerCount).map { _ in try Tensor(empty: shape, dtype: .f32, on: model.backend) }
    }

    /// Empties the cache (its memory is kept).
    public func reset() { count = 0 }

    /// Runs `ids` after the tokens in the cache and adds them to it; returns the logits that
    /// predict the token after the last of them (`[V]`, f32).
    public func logits(after ids: [Int32]) throws -> [Float] {
        guard !ids.isEmpty else { throw LowRankError(.invalidArgument, "no tokens to run") }
        guard count + ids.count <= capacity else {
            throw LowRankError(.invalidArgument, "\(count) cached tokens and \(ids.count) new ones exceed the KV cache's \(capacity)")
        }
        let vocabulary = model.config.vocabularySize
        if let bad = ids.first(where: { !(0..<Int32(vocabulary)).contains($0) }) {
            throw LowRankError(.invalidArgument, "token id \(bad) is outside the model's vocabulary of \(vocabulary)")
        }
        let step = try plan(rows: ids.count)
        let backend = model.backend
        let out = try step.plan.run(try step.decoder.feeds(ids: ids, on: backend).merging([
            step.ids: try Tensor(ids: ids, on: backend),
            step.positions: try Tensor(ids: (count..<count + ids.count).map(Int32.init), on: backend),
            step.past: try Tensor(ids: [Int32(count)], on: backend)]) { $1 })
        let rowBytes = model.config.keyValueHeadCount * model.config.headDim * 4
        for (i, cache) in (keys + values).enumerated() {
            try out[1 + i].bytes().withUnsafeBytes { try backend.write($0, to: cache.storage, offset: count * rowBytes) }
        }
        count += ids.count
        let logits = try out[0].floats()
        return Array(logits[(ids.count - 1) * vocabulary..<ids.count * vocabulary])
    }

    private func plan(rows: Int) throws -> StepPlan {
        if let plan = plans[rows] { return plan }
        let g = Graph(backend: model.backend)
        let ids = try g.input("input_ids", [rows], dtype: .i32)
        let positions = try g.input("positions", [rows], dtype: .i32)
        let past = try g.input("past", [1], dtype: .i32)
        let layers = model.config.layerCount
        var newKeys = [GraphTensor?](repeating: nil, count: layers), newValues = newKeys
        let attention = DecoderAttention.cached(
            keys: try keys.enumerated().map { try g.parameter("kv_cache.\($0.offset).k", $0.element) },
            values: try values.enumerated().map { try g.parameter("kv_cache.\($0.offset).v", $0.element) },
            past: past, newRows: { newKeys[$0] = $1; newValues[$0] = $2 })
        let decoder = try g.causalLMDecoder(model: model, adapter: adapter, ids: ids, positions: positions, sequence: rows,
                                            training: false, attention: attention)
        let logits = try g.linear(decoder.hidden, weight: try g.lmHead(model, adapter: adapter, decoder: decoder), label: "lm_head")
        let step = StepPlan(plan: try g.compile(outputs: [logits] + (newKeys + newValues).map { $0! }), ids: ids, positions: positions, past: past,
                            decoder: decoder)
        // The one-token plan serves every step; of prompt lengths only the latest is kept.
        plans = plans.filter { $0.key == 1 }
        plans[rows] = step
        return step
    }
}
