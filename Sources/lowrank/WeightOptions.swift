import ArgumentParser
import LowRank
import LowRankModels

/// The float dtypes a tensor can be held in (`--dtype`, `--residual-dtype`, `merge --dtype`, `export-gguf --outtype`).
enum FloatDType: String, CaseIterable, ExpressibleByArgument {
    case f32, bf16, f16

    var dtype: DType { DType(rawValue: rawValue)! }
}

/// `--dtype`: what the frozen matrices are held in on the device.
struct WeightDTypeOption: ParsableArguments {
    @Option(help: """
        Hold the frozen matrices (projections, embedding, LM head) in this dtype (default: each tensor's dtype in the \
        checkpoint, so a bf16 model takes half the memory of f32). Only storage: every op computes and accumulates in \
        f32, and activations, norms, softmax, the loss, the adapter and the optimizer's state stay f32.
        """)
    var dtype: FloatDType?
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
