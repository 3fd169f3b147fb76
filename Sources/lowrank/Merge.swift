import ArgumentParser
import LowRank
import LowRankModels

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a PEFT adapter into a checkpoint's weights and write it in the same Hugging Face layout (a GGUF file: as transformers' GGUF loader reads it).",
        discussion: """
        Each merged weight is W + ΔW rounded to the output dtype. A bf16 weight keeps 8 significant bits, so an \
        update below half a unit in its last place rounds away: for each merged tensor the merge measures the share \
        of ΔW lost (‖round(W+ΔW) − round(W) − ΔW‖ / ‖ΔW‖) and warns on stderr when it is over \
        \(Int(MergeRounding.warningThreshold * 100))% in any tensor. --dtype f32 keeps the whole update.
        """)

    @Option(help: "A Hugging Face model folder or a GGUF file.") var model: String
    @Option(help: "A PEFT adapter folder.") var adapter: String
    @Flag(help: "Merge --adapter even if it names another base model or architecture (its tensors' shapes are still checked).")
    var forceAdapter = false
    @Option(help: "The folder to write the merged checkpoint to.") var out: String
    @Option(help: "Write every weight in this dtype (default: each tensor's dtype in the checkpoint).")
    var dtype: WeightDType?
    @OptionGroup var device: DeviceOptions

    func run() throws {
        let backend = try Engine.backend(try device.request, validation: device.validationEnabled)
        let checkpoint = try ModelSources.open(model, dequantizing: true)
        let llama = try LlamaModel(checkpoint: checkpoint, on: backend)
        let loaded = try ModelAdapter(contentsOf: adapter, on: llama, force: forceAdapter)
        let report = try checkpoint.write(merging: loaded, of: llama, to: out, dtype: dtype?.dtype)
        for (name, kind) in report.skipped { printToStandardError("not copied: \(name) (\(kind); only regular files are)") }
        if let warning = report.roundingWarning { printToStandardError(warning) }
        print("merged \(loaded.layers.count) adapted modules into \(out)/")
    }
}
