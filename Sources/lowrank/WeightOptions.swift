import ArgumentParser
import LowRank
import LowRankModels

/// The float dtypes a tensor can be held in (`--dtype`, `--residual-dtype`, `merge --dtype`, `export-gguf --outtype`).
enum FloatDType: String, CaseIterable, ExpressibleByArgument {
    case f32, bf16, f16

    var dtype: DType { DType(rawValue: rawValue)! }
}

/// `--dtype` and `--precision`: what the frozen matrices are held in on the device, and how their products compute.
struct FrozenWeightOptions: ParsableArguments {
    @Option(help: """
        Hold the frozen matrices (projections, embedding, LM head) in this dtype (default: each tensor's dtype in the \
        checkpoint, so a bf16 model takes half the memory of f32). Storage, and what --precision medium rounds activations \
        to: activations, norms, softmax, the loss, the adapter and the optimizer's state stay f32, and f32 matrices compute \
        exactly in f32.
        """)
    var dtype: FloatDType?

    @Option(help: """
        How products with the frozen matrices compute (default: LOWRANK_MATMUL_PRECISION, else the backend's). medium, the \
        CPU's default: a bf16 matrix multiplies activations rounded to bf16, with f32 sums, as PyTorch computes a bf16 model \
        (on a CPU with AVX-512 BF16; f16 and quantized matrices are read into f32 exactly). highest, Vulkan's default: every \
        product exact in f32 (16-bit operands on both sides still take cooperative matrices). On Vulkan, high and medium \
        let f32 operands be rounded to f16 for cooperative matrices, and medium holds the scalar kernel's f32 and dequantized \
        tiles in bf16 where there are none.
        """)
    var precision: MatmulPrecision?

    /// Sets `--precision` on `backend`, which every model on it then computes with.
    func apply(to backend: any Backend) -> any Backend {
        if let precision { Engine.setMatmulPrecision(precision, on: backend) }
        return backend
    }
}

/// `train --dry-run [--json]`.
struct DryRunOptions: ParsableArguments {
    @Flag(help: """
        Print the device bytes the run would take (weights, adapter and optimizer, activations, workspace), planned from \
        --model's config.json alone (no weight files needed; a GGUF file's header), and stop. Every run prints this figure at its start and \
        stops before loading when it does not fit the device.
        """)
    var dryRun = false
    @Flag(help: "With --dry-run: print {\"planned_bytes\", \"weights_bytes\", \"adapter_and_optimizer_bytes\", \"activations_bytes\", \"workspace_bytes\"} only.")
    var json = false

    func validate() throws {
        if json, !dryRun { throw ValidationError("--json applies to --dry-run") }
    }
}
