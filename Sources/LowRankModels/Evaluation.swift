import Glibc
import LowRank

/// The mean next-token cross-entropy of a model (with an adapter, or without) over a dataset:
/// every predicted token weighs the same, whatever batch it fell in. Always finite: a batch whose
/// loss is not is an error naming its rows and the first op that produced a NaN or infinity.
public struct Evaluation: Sendable {
    public let loss: Double
    public let tokens: Int
    public var perplexity: Double { Glibc.exp(loss) }

    public init(model: LlamaModel, adapter: ModelAdapter?, data: TokenDataset, batchSize: Int) throws {
        try self.init(evaluator: LossEvaluator(model: model, adapter: adapter), data: data, batchSize: batchSize)
    }

    /// Over `evaluator`'s plans, which a caller evaluating again and again (validation) keeps.
    init(evaluator: LossEvaluator, data: TokenDataset, batchSize: Int) throws {
        guard batchSize >= 1 else { throw LowRankError(.invalidArgument, "the batch size must be at least 1, got \(batchSize)") }
        var total = 0.0, tokens = 0
        for start in stride(from: 0, to: data.rows.count, by: batchSize) {
            let batch = data.batch(start..<min(start + batchSize, data.rows.count))
            let loss: Float
            do { loss = try evaluator.loss(of: batch) } catch let error as LowRankError {
                throw error.adding("rows", "\(start)..<\(start + batch.rows) of \(data.path)")
            }
            total += Double(loss) * Double(batch.predictedTokens)
            tokens += batch.predictedTokens
        }
        guard tokens > 0 else { throw LowRankError(.invalidArgument, "the data predicts no token: every row is shorter than 2 tokens", context: [("file", data.path)]) }
        self.loss = total / Double(tokens)
        self.tokens = tokens
    }

    /// `{"loss": …, "tokens": …, "perplexity": …}`.
    public var json: JSON { .object(["loss": .number(loss), "tokens": .number(Double(tokens)), "perplexity": .number(perplexity)]) }
}

/// The loss of one batch at a time, without training (no dropout), for a caller that picks the
/// batches: `Evaluation` over a dataset, or the C ABI.
public final class LossEvaluator {
    private var plans: PlanCache

    public init(model: LlamaModel, adapter: ModelAdapter?) {
        plans = PlanCache(model: model, adapter: adapter, training: false, checkpointing: false)
    }

    /// The mean next-token cross-entropy over the batch's predicted tokens. A NaN or infinite
    /// loss is an error naming the first op that produced a non-finite value.
    public func loss(of batch: TokenBatch) throws -> Float {
        let plan = try plans.plan(for: batch)
        let loss = try plan.run(batch).loss.floats()[0]
        guard loss.isFinite else { throw try plan.nonFiniteLossError(loss, of: batch, seed: 0, what: "the loss", context: []) }
        return loss
    }
}

/// One plan per batch shape met (a short last batch gets its own), built on first use. Each plan
/// holds its intermediates' memory, so only the most recently used few are kept: a caller whose
/// batches come in many shapes (dynamic padding through the C ABI) re-plans instead of holding
/// the memory of every shape it ever used.
struct PlanCache {
    let model: LlamaModel
    let adapter: ModelAdapter?
    let training: Bool
    let checkpointing: Bool
    let residual: DType
    /// Most recently used last.
    private var plans: [(shape: [Int], plan: CausalLMPlan)] = []
    static let capacity = 4

    init(model: LlamaModel, adapter: ModelAdapter?, training: Bool, checkpointing: Bool, residual: DType = .f32) {
        (self.model, self.adapter, self.training, self.checkpointing, self.residual) = (model, adapter, training, checkpointing, residual)
    }

    mutating func plan(for batch: TokenBatch) throws -> CausalLMPlan {
        let shape = [batch.rows, batch.sequence, batch.sequenceStarts == nil ? 0 : 1]
        if let i = plans.firstIndex(where: { $0.shape == shape }) {
            let hit = plans.remove(at: i)
            plans.append(hit)
            return hit.plan
        }
        if plans.count == Self.capacity { plans.removeFirst() }
        let p = try CausalLMPlan(model: model, adapter: adapter, batch: batch.rows, sequence: batch.sequence,
                                 training: training, checkpointing: checkpointing, residual: residual, packed: batch.sequenceStarts != nil)
        plans.append((shape, p))
        return p
    }

    /// The shapes planned (rows, sequence, 1 when packed), least recently used first.
    var shapes: [[Int]] { plans.map(\.shape) }
}
