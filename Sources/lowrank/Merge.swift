import ArgumentParser
import LowRank
import LowRankModels

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a PEFT adapter into a checkpoint's weights (a Hugging Face folder or a GGUF file) and write it as a Hugging Face folder, or as a GGUF file for llama.cpp.",
        discussion: """
        Each merged weight is W + ΔW rounded to the output dtype. A bf16 weight keeps 8 significant bits, so an \
        update below half a unit in its last place rounds away: for each merged tensor the merge measures the share \
        of ΔW lost (‖round(W+ΔW) − round(W) − ΔW‖ / ‖ΔW‖) and warns on stderr when it is over \
        \(Int(MergeRounding.warningThreshold * 100))% in any tensor. --dtype f32 keeps the whole update.

        With --out FILE.gguf the merged model is written as llama.cpp's converter writes a Llama model: tensors under \
        llama.cpp's names (q and k rows in its RoPE order), norms in F32, matrices in --gguf-type, and the configuration, \
        tokenizer and chat template of --model as GGUF metadata. This is how a DoRA or rsLoRA fine-tune reaches llama.cpp.
        """)

    @Option(help: "A Hugging Face model folder or a GGUF file.") var model: String
    @Option(help: "A PEFT adapter folder.") var adapter: String
    @Flag(help: "Merge --adapter even if it names another base model or architecture (its tensors' shapes are still checked).")
    var forceAdapter = false
    @Option(help: "The folder to write the merged checkpoint to, or a file ending in .gguf for llama.cpp.") var out: String
    @Option(help: "Write every weight in this dtype (default: each tensor's dtype in the checkpoint).")
    var dtype: FloatDType?
    @Option(help: "With --out FILE.gguf: the matrices' type, f16 (default, as llama.cpp's converter), bf16, f32, q8_0 or q4_0; norms stay F32.")
    var ggufType: GGUFMatrixType?
    @OptionGroup var device: DeviceOptions

    var writesGGUF: Bool { out.hasSuffix(".gguf") }

    func validate() throws {
        if writesGGUF, dtype != nil { throw ValidationError("--dtype applies to a Hugging Face folder; a .gguf output takes --gguf-type") }
        if !writesGGUF, ggufType != nil { throw ValidationError("--gguf-type applies to an --out ending in .gguf") }
    }

    func run() throws {
        let backend = try Engine.backend(try device.request, validation: device.validationEnabled)
        let checkpoint = try ModelSources.open(model, dequantizing: true)
        // LoftQ's own NF4 base (more than one iteration) replaces the adapted weights: held in f32, as its dequantized values are, whatever the checkpoint's dtype.
        let loftqBase = try AdapterSettings(contentsOf: adapter + "/" + ModelAdapter.configName).loftqIterations ?? 1 > 1
        let llama = try LlamaModel(checkpoint: checkpoint, on: backend, dtype: loftqBase ? .f32 : nil)
        let loaded = try ModelAdapter(contentsOf: adapter, on: llama, force: forceAdapter)
        if writesGGUF {
            let (report, warnings) = try GGUFModelExport.write(merging: loaded, of: llama, to: out, type: (ggufType ?? .f16).type, metadata: checkpoint.ggufMetadata)
            for warning in warnings { printToStandardError(warning) }
            if let warning = report.roundingWarning(fix: "--gguf-type f32") { printToStandardError(warning) }
            print("merged \(loaded.layers.count) adapted modules into \(out)")
            return
        }
        let report = try checkpoint.write(merging: loaded, of: llama, to: out, dtype: dtype?.dtype)
        for (name, kind) in report.skipped { printToStandardError("not copied: \(name) (\(kind); only regular files are)") }
        if let warning = report.roundingWarning { printToStandardError(warning) }
        print("merged \(loaded.layers.count) adapted modules into \(out)/")
    }
}

/// `--gguf-type`: the matrix types of a merged GGUF file.
enum GGUFMatrixType: String, CaseIterable, ExpressibleByArgument {
    case f16, bf16, f32, q8_0, q4_0

    var type: GGUF.TensorType {
        switch self {
        case .f16: .f16
        case .bf16: .bf16
        case .f32: .f32
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        }
    }
}
