import Glibc
import LowRank

/// How `generate` picks each token from the logits, as transformers' `generate` with its logits
/// warpers: the temperature divides the logits, then top-k keeps the k largest (ties at the k-th
/// kept), then top-p keeps the smallest set of the most probable tokens whose probability reaches
/// p, and a token is drawn from the softmax of what is left. A temperature of 0 is greedy: the
/// first largest logit, as `do_sample=False`.
public struct SamplingSettings: Sendable, Hashable {
    /// 0: greedy.
    public var temperature: Float
    /// 0: every token.
    public var topK: Int
    /// 1: every token.
    public var topP: Float
    /// Picks the draws (SplitMix64, not PyTorch's stream).
    public var seed: UInt64

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        (self.temperature, self.topK, self.topP, self.seed) = (temperature, topK, topP, seed)
    }

    public static let greedy = SamplingSettings()

    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else { throw LowRankError(.invalidArgument, "the temperature must be 0 (greedy) or more, got \(temperature)") }
        guard topK >= 0 else { throw LowRankError(.invalidArgument, "top-k must be 0 (off) or more, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw LowRankError(.invalidArgument, "top-p must be in (0, 1], got \(topP)") }
    }
}

/// Draws tokens from logits under `SamplingSettings`.
public struct TokenSampler: Sendable {
    public let settings: SamplingSettings
    private var random: SplitMix

    public init(_ settings: SamplingSettings) throws {
        try settings.validate()
        self.settings = settings
        random = SplitMix(seed: settings.seed)
    }

    /// The next token for `logits` (`[V]`). A NaN logit is an error: nothing sound can be drawn.
    public mutating func next(_ logits: [Float]) throws -> Int32 {
        guard !logits.contains(where: \.isNaN) else { throw LowRankError(.numerical, "the logits hold NaN: the model's output is not finite") }
        guard settings.temperature > 0 else {
            var best = 0
            for i in logits.indices where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        var candidates = logits.indices.map { (id: $0, logit: Double(logits[$0]) / Double(settings.temperature)) }
        candidates.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if settings.topK > 0, settings.topK < candidates.count {
            let kth = candidates[settings.topK - 1].logit
            candidates = Array(candidates.prefix { $0.logit >= kth })
        }
        let largest = candidates[0].logit
        var weights = candidates.map { exp($0.logit - largest) }
        let total = weights.reduce(0, +)
        if settings.topP < 1 {
            // transformers drops the tokens whose ascending cumulative probability stays at or
            // below 1 − p; from the top, that keeps every token until the sum first exceeds p
            // (always the most probable one).
            var kept = 0, cumulative = 0.0
            for w in weights.reversed() {
                cumulative += w / total
                if cumulative <= 1 - Double(settings.topP) { kept += 1 } else { break }
            }
            let keep = max(weights.count - kept, 1)
            candidates.removeLast(candidates.count - keep)
            weights.removeLast(weights.count - keep)
        }
        let draw = random.unit() * weights.reduce(0, +)
        var sum = 0.0
        for (candidate, w) in zip(candidates, weights) {
            sum += w
            if draw < sum { return Int32(candidate.id) }
        }
        return Int32(candidates[candidates.count - 1].id)
    }
}
