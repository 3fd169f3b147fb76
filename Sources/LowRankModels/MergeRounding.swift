import LowRank

/// How much of one merged tensor's update survived its rounding to the output dtype: with `W` the
/// weight as loaded and `ΔW` what the adapter adds to it (`s·B·A`, or DoRA's `(m/n)⊙(W + s·B·A) − W`)
/// in f32, the merge writes `round(W + ΔW)` where the model had `round(W)`, so the update the
/// merged checkpoint carries is `R = round(W + ΔW) − round(W)`.
///
/// A weight stored in bf16 has 8 significant bits: an update smaller than half a unit in the last
/// place of its weight (2⁻⁹ of it) rounds away entirely, so a short fine-tune merged into a bf16
/// checkpoint can lose most of what it learned. `lost` says how much; an f32 output keeps it all.
public struct MergeRounding: Sendable, Equatable {
    public let tensor: String
    public let dtype: DType
    /// `‖ΔW‖`; 0 for an adapter that changes nothing (B = 0), whose update nothing can lose.
    public let updateNorm: Double
    /// `‖R‖`: near `updateNorm` when the update survived, 0 when rounding erased it.
    public let keptNorm: Double
    /// `‖R − ΔW‖`: what rounding took from the update or added to it.
    public let errorNorm: Double

    /// `‖R‖ / ‖ΔW‖`: 1 for an f32 output, 0 when the update rounded away. It can pass 1: an
    /// update element between half and one unit in the last place rounds up to a whole one.
    public var kept: Double { updateNorm > 0 ? keptNorm / updateNorm : 1 }
    /// `‖R − ΔW‖ / ‖ΔW‖`: the share of the update that rounding lost (1 when it erased it, 0 in f32).
    public var lost: Double { updateNorm > 0 ? errorNorm / updateNorm : 0 }

    /// A merged tensor that loses more than this share of its update is reported (`lowrank merge`
    /// warns): past half, that tensor of the merged checkpoint carries more rounding error than
    /// fine-tune. Measured on the fixtures (`MergeRoundingTests`): the Qwen2 adapter PEFT trained
    /// loses 0.36% of its update in bf16, and its merged loss is the adapter's within 1e-2; an update
    /// of 2⁻¹² of its weights' RMS loses 98%, and the bf16 merge keeps 3% of its change of the loss.
    public static let warningThreshold = 0.5

    /// Measures the rounding of `merged` (`W + ΔW` in f32) written as `dtype`, given `original` (`W`
    /// as loaded, in f32) and `rounded`, `merged` as the file holds it.
    init(tensor: String, dtype: DType, original: [Float], merged: [Float], rounded: [Float]) throws {
        let base = dtype == .f32 ? original : try Tensor(original, shape: [original.count], dtype: dtype, on: CPUBackend.shared).floats()
        var update = 0.0, kept = 0.0, error = 0.0
        for i in original.indices {
            let delta = Double(merged[i]) - Double(original[i]), carried = Double(rounded[i]) - Double(base[i])
            update += delta * delta
            kept += carried * carried
            error += (carried - delta) * (carried - delta)
        }
        (self.tensor, self.dtype) = (tensor, dtype)
        (updateNorm, keptNorm, errorNorm) = (update.squareRoot(), kept.squareRoot(), error.squareRoot())
    }
}

/// What `HuggingFaceCheckpoint.write(merging:of:to:dtype:)` did besides writing the weights.
public struct MergeReport: Sendable {
    /// The model folder's entries not copied (only regular files are), with what each is.
    public let skipped: [(name: String, kind: String)]
    /// Every merged tensor's rounding, in the order of the adapter's modules.
    public let rounding: [MergeRounding]

    /// The merged tensors that lost more than `MergeRounding.warningThreshold` of their update.
    public var heavilyRounded: [MergeRounding] { rounding.filter { $0.lost > MergeRounding.warningThreshold } }

    /// `‖R − ΔW‖ / ‖ΔW‖` over every merged tensor together.
    public var lost: Double {
        let update = rounding.reduce(0) { $0 + $1.updateNorm * $1.updateNorm }
        return update > 0 ? rounding.reduce(0) { $0 + $1.errorNorm * $1.errorNorm }.squareRoot() / update.squareRoot() : 0
    }

    /// A warning for the user, with the figures and the fix, when any tensor lost more than the
    /// threshold; nil otherwise.
    public var roundingWarning: String? { roundingWarning(fix: "--dtype f32") }

    /// `roundingWarning` with `fix`, the option that writes f32, named as the fix.
    public func roundingWarning(fix: String) -> String? {
        let heavy = heavilyRounded
        guard let worst = heavy.max(by: { $0.lost < $1.lost }) else { return nil }
        let percent = { (share: Double) in "\(Int((share * 100).rounded()))%" }
        let dtypes = Set(heavy.map(\.dtype.rawValue)).sorted().joined(separator: ", ")
        return "warning: rounding to \(dtypes) lost more than \(percent(MergeRounding.warningThreshold)) of the adapter's update "
            + "in \(heavy.count) of \(rounding.count) merged tensors (worst \(worst.tensor): \(percent(worst.lost)) lost, "
            + "‖round(W+ΔW) − round(W) − ΔW‖ / ‖ΔW‖); \(percent(lost)) of the whole update is lost, so the merged model "
            + "does not carry the fine-tune. Merge with \(fix) to keep it."
    }
}
