import Glibc

/// How the learning rate moves over training, as Hugging Face's `get_*_schedule_with_warmup`
/// defines it: optimizer step t (from 1) uses `base · multiplier(t − 1)`, so with warm-up the first
/// step's rate is 0.
public enum LearningRateSchedule: Hashable, Sendable {
    /// The base rate after a linear warm-up (`get_constant_schedule_with_warmup`).
    case constant(warmupSteps: Int = 0)
    /// Linear warm-up, then linear decay to 0 at `totalSteps` (`get_linear_schedule_with_warmup`).
    case linear(warmupSteps: Int, totalSteps: Int)
    /// Linear warm-up, then half a cosine down to 0 at `totalSteps` (`get_cosine_schedule_with_warmup`).
    case cosine(warmupSteps: Int, totalSteps: Int)

    /// The factor on the base rate after `completed` optimizer steps.
    public func multiplier(afterSteps completed: Int) -> Double {
        let s = Double(completed)
        switch self {
        case .constant(let warmup):
            return completed < warmup ? s / Double(max(1, warmup)) : 1
        case .linear(let warmup, let total):
            if completed < warmup { return s / Double(max(1, warmup)) }
            return max(0, Double(total - completed) / Double(max(1, total - warmup)))
        case .cosine(let warmup, let total):
            if completed < warmup { return s / Double(max(1, warmup)) }
            let progress = Double(completed - warmup) / Double(max(1, total - warmup))
            return max(0, 0.5 * (1 + cos(Double.pi * progress)))
        }
    }

    public func validate() throws {
        switch self {
        case .constant(let warmup) where warmup >= 0: return
        case .linear(let warmup, let total) where warmup >= 0 && total > warmup,
             .cosine(let warmup, let total) where warmup >= 0 && total > warmup: return
        default:
            throw LowRankError(.invalidArgument, "a schedule needs warm-up steps >= 0 and total steps beyond them; got \(self)")
        }
    }
}

extension LearningRateSchedule {
    /// A schedule's shape without its lengths: what `lowrank train --schedule`, `TrainingSettings`,
    /// the C ABI's `lowrank_schedule` (the case's position in `allCases`) and Python's `SCHEDULES`
    /// name. This is their one source: a test checks lowrank.h and the Python package against it.
    public enum Kind: String, CaseIterable, Hashable, Sendable {
        case constant, linear, cosine
    }

    public var kind: Kind {
        switch self {
        case .constant: .constant
        case .linear: .linear
        case .cosine: .cosine
        }
    }

    /// A schedule of `kind` after `warmupSteps`; linear and cosine need their length, `totalSteps`.
    public init(_ kind: Kind, warmupSteps: Int, totalSteps: Int?) throws {
        switch (kind, totalSteps) {
        case (.constant, _): self = .constant(warmupSteps: warmupSteps)
        case (.linear, let total?) where total >= 1: self = .linear(warmupSteps: warmupSteps, totalSteps: total)
        case (.cosine, let total?) where total >= 1: self = .cosine(warmupSteps: warmupSteps, totalSteps: total)
        default:
            throw LowRankError(.invalidArgument, "a \(kind.rawValue) schedule needs its length in steps (at least 1), got \(totalSteps.map(String.init) ?? "none")")
        }
        try validate()
    }
}
