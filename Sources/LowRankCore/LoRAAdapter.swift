import Glibc

/// Hyperparameters of one LoRA adapter, PEFT's names and meaning.
public struct LoRAConfig: Hashable, Sendable {
    public var rank: Int
    public var alpha: Float
    public var rsLoRA: Bool
    public var dropout: Float

    public init(rank: Int, alpha: Float, rsLoRA: Bool = false, dropout: Float = 0) {
        self.rank = rank
        self.alpha = alpha
        self.rsLoRA = rsLoRA
        self.dropout = dropout
    }

    /// `alpha / r`, or `alpha / √r` with rsLoRA.
    public var scale: Float { rsLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }
}

/// How A starts (B always starts at zero, so a new adapter leaves the layer unchanged).
public enum LoRAInitialization: Sendable {
    /// PEFT's default: `kaiming_uniform_(a=√5)`, i.e. U(−1/√d_in, 1/√d_in).
    case kaimingUniform
    /// PEFT's `init_lora_weights="gaussian"`: N(0, σ = 1/r).
    case gaussian
}

/// One adapter's trainable factors A `[r, d_in]` and B `[d_out, r]` (f32), on a backend.
public final class LoRAAdapter {
    public let config: LoRAConfig
    public var a: Tensor
    public var b: Tensor

    public init(inFeatures: Int, outFeatures: Int, config: LoRAConfig, initialization: LoRAInitialization = .kaimingUniform,
                seed: UInt32, on backend: any Backend) throws {
        guard config.rank >= 1, inFeatures >= 1, outFeatures >= 1 else {
            throw LowRankError(.invalidArgument, "LoRA needs rank, d_in and d_out of at least 1",
                               context: [("rank", "\(config.rank)"), ("d_in", "\(inFeatures)"), ("d_out", "\(outFeatures)")])
        }
        guard config.dropout >= 0, config.dropout < 1 else {
            throw LowRankError(.invalidArgument, "dropout must be in [0, 1), got \(config.dropout)")
        }
        self.config = config
        var random = SplitMix(seed: UInt64(seed))
        let count = config.rank * inFeatures
        let values: [Float] = switch initialization {
        case .kaimingUniform:
            (0..<count).map { _ in (Float(random.unit()) * 2 - 1) / Float(inFeatures).squareRoot() }
        case .gaussian:
            (0..<count).map { _ in Float(random.normal()) / Float(config.rank) }
        }
        a = try Tensor(values, shape: [config.rank, inFeatures], on: backend)
        b = try Tensor.zeros([outFeatures, config.rank], on: backend)
    }

    /// An adapter from existing factors (loaded, or initialised elsewhere): A `[r, d_in]`, B `[d_out, r]`.
    public init(config: LoRAConfig, a: Tensor, b: Tensor) throws {
        guard a.shape.rank == 2, b.shape.rank == 2, a.shape[0] == config.rank, b.shape[1] == config.rank else {
            throw LowRankError(.shapeMismatch, "LoRA factors must be A [r, d_in] and B [d_out, r] with r = \(config.rank), got A \(a.shape) and B \(b.shape)")
        }
        guard a.backend === b.backend else { throw LowRankError(.invalidArgument, "A and B live on different backends") }
        self.config = config
        self.a = a
        self.b = b
    }

    /// `W += s·B·A` on W's backend, so the adapter costs nothing at inference.
    public func merge(into weight: Tensor) throws {
        try Ops.matmul(b, a, alpha: config.scale, accumulatingInto: weight)
    }

    /// `W −= s·B·A`, undoing `merge` up to the rounding of W's dtype.
    public func unmerge(from weight: Tensor) throws {
        try Ops.matmul(b, a, alpha: -config.scale, accumulatingInto: weight)
    }

    /// Forward options for this adapter (`seed` picks the dropout mask of this step).
    public func options(seed: UInt32, hasBias: Bool = false, outputDType: DType? = nil) -> LoRAOptions {
        LoRAOptions(scale: config.scale, dropout: config.dropout, seed: seed, hasBias: hasBias, outputDType: outputDType)
    }
}
