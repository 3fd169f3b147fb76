/// How f32 matmul operands may be computed, as `torch.set_float32_matmul_precision` states it.
/// 16-bit operands (f16, bf16) use cooperative matrices on Vulkan wherever the device has them, whatever this says.
public enum MatmulPrecision: String, Sendable, CaseIterable {
    /// f32 operands stay exact: the f32 scalar path on Vulkan, sgemm (16-bit weights widened) on
    /// the CPU (the default, PyTorch's "highest").
    case highest
    /// f32 operands may use cooperative matrices on Vulkan: each tile scaled by a power of two and
    /// rounded to f16 (11 significant bits, f32's range; PyTorch's "high" allows TF32, also 11),
    /// f32 accumulation. The CPU stays exact.
    case high
    /// bfloat16 internal computations (PyTorch's "medium"), what a bfloat16 model does in PyTorch:
    /// on the CPU the f32 activations multiplying a bfloat16 weight are rounded to bfloat16 (8
    /// significant bits), f32 sums (`CPUBackend+BFloat16Products.swift`); Vulkan computes as `high`.
    case medium

    /// `LOWRANK_MATMUL_PRECISION`, `highest` when unset; another value is an error naming the variable.
    public static func fromEnvironment() throws -> MatmulPrecision {
        guard let value = FileIO.environment("LOWRANK_MATMUL_PRECISION"), !value.isEmpty else { return .highest }
        guard let precision = MatmulPrecision(rawValue: value) else {
            throw LowRankError(.invalidArgument, "LOWRANK_MATMUL_PRECISION must be highest, high or medium, not '\(value)'",
                               context: [("variable", "LOWRANK_MATMUL_PRECISION")])
        }
        return precision
    }
}
