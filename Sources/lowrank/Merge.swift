import ArgumentParser
import LowRank
import LowRankModels

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a PEFT adapter into a checkpoint's weights and write it in the same Hugging Face layout.")

    @Option(help: "A Hugging Face model folder.") var model: String
    @Option(help: "A PEFT adapter folder.") var adapter: String
    @Flag(help: "Merge --adapter even if it names another base model or architecture (its tensors' shapes are still checked).")
    var forceAdapter = false
    @Option(help: "The folder to write the merged checkpoint to.") var out: String
    @OptionGroup var device: DeviceOptions

    func run() throws {
        let backend = try Engine.backend(try device.request, validation: device.validationEnabled)
        let checkpoint = try HuggingFaceCheckpoint(folder: model)
        let llama = try LlamaModel(checkpoint: checkpoint, on: backend)
        let loaded = try ModelAdapter(contentsOf: adapter, on: llama, force: forceAdapter)
        let skipped = try checkpoint.write(merging: loaded, of: llama, to: out)
        for (name, kind) in skipped { printToStandardError("not copied: \(name) (\(kind); only regular files are)") }
        print("merged \(loaded.layers.count) adapted modules into \(out)/")
    }
}
