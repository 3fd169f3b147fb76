/// How matmul operands may be computed, as `torch.set_float32_matmul_precision` states it. Each
/// backend has its default (`CPUBackend.defaultMatmulPrecision`: `medium`; Vulkan: `highest`);
/// `LOWRANK_MATMUL_PRECISION`, `--precision` and `configure_training(matmul_precision=)` choose.
/// 16-bit operands (f16, bf16 on both sides) use cooperative matrices on Vulkan wherever the device
/// has them, whatever this says.
public enum MatmulPrecision: String, Sendable, CaseIterable {
    /// f32 operands stay exact: the f32 scalar path on Vulkan (its default), sgemm on the CPU with
    /// 16-bit weights widened exactly (PyTorch's "highest").
    case highest
    /// f32 operands may use cooperative matrices on Vulkan: each tile scaled by a power of two and
    /// rounded to f16 (11 significant bits, f32's range; PyTorch's "high" allows TF32, also 11),
    /// f32 accumulation. The CPU stays exact.
    case high
    /// bfloat16 internal computations (PyTorch's "medium"), what a bfloat16 model does in PyTorch:
    /// on the CPU (its default) the f32 activations multiplying a bfloat16 frozen weight are rounded
    /// to bfloat16 (8 significant bits), f32 sums (`CPUBackend+BFloat16Products.swift`); f16 weights
    /// stay widened to f32 there (no f16 dot product), and f32 weights stay exact. Vulkan computes as `high`
    /// on its coopmat path and holds the scalar kernel's f32 and dequantized tiles in bf16 (`MatmulKernel.bf16Tiles`).
    case medium

    /// `LOWRANK_MATMUL_PRECISION`, nil when unset (the backend's default); another value is an error naming the variable.
    public static func fromEnvironment() throws -> MatmulPrecision? {
        guard let value = FileIO.environment("LOWRANK_MATMUL_PRECISION"), !value.isEmpty else { return nil }
        return try named(value, "LOWRANK_MATMUL_PRECISION")
    }

    /// The precision called `name`; another name is an error naming `setting` (the variable, option or field).
    public static func named(_ name: String, _ setting: String) throws -> MatmulPrecision {
        guard let precision = MatmulPrecision(rawValue: name) else {
            throw LowRankError(.invalidArgument, "\(setting) must be highest, high or medium, not '\(name)'", context: [("setting", setting)])
        }
        return precision
    }
}

/// A backend whose products follow a `MatmulPrecision` (`CPUBackend`, `VulkanBackend`), set for every
/// model on it from then on. `Engine.matmulPrecision(of:)` and `--precision` reach any backend through this.
public protocol MatmulPrecisionSetting: AnyObject {
    var matmulPrecision: MatmulPrecision { get set }
}
