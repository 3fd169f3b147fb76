import ArgumentParser
import LowRank
import LowRankModels

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mean next-token loss and perplexity of a checkpoint, with or without an adapter, over token or text data.",
        discussion: dataFormatsHelp)

    @Option(help: "A Hugging Face model folder or a GGUF file.") var model: String
    @Option(help: "A PEFT adapter folder (adapter_config.json and adapter_model.safetensors).") var adapter: String?
    @Flag(help: "Load --adapter even if it names another base model or architecture (its tensors' shapes are still checked).")
    var forceAdapter = false
    @Option(help: "Quantize the frozen projections at load, as train --quantize does, to evaluate a QLoRA adapter on the weights it was trained on.")
    var quantize: Quantization?
    @Option(help: "Data: .jsonl (token ids, text, prompt/completion or messages) or .npy token ids.") var data: String
    @Option(help: "Rows per batch.") var batchSize = 8
    @Option(help: "Split rows into windows of at most this many tokens.") var seqLen: Int?
    @Flag(help: "Print {\"loss\": …, \"tokens\": …, \"perplexity\": …} only.") var json = false
    @OptionGroup var textData: TextDataOptions
    @OptionGroup var device: DeviceOptions
    @OptionGroup var weights: FrozenWeightOptions

    func validate() throws {
        if forceAdapter, adapter == nil { throw ValidationError("--force-adapter applies to --adapter") }
        try validateSequenceLength(seqLen)
        if textData.pack, seqLen == nil { throw ValidationError("--pack needs --seq-len, the length of the packed rows") }
    }

    func run() throws {
        do {
            try evaluate()
        } catch let error as LowRankError where json {
            // Whatever happens, --json prints JSON: the error, then the failing exit status.
            print(JSON.object(["error": .string(error.description), "kind": .string(error.kind.rawValue)]).serialized)
            throw error
        }
    }

    private func evaluate() throws {
        let backend = weights.apply(to: try Engine.backend(try device.request, validation: device.validationEnabled))
        let source = try ModelSources.open(model)
        let llama = try LlamaModel(checkpoint: source, on: backend, quantize: quantize?.dtype, dtype: weights.dtype?.dtype)
        let adapter = try self.adapter.map { try ModelAdapter(contentsOf: $0, on: llama, force: forceAdapter) }
        let dataset = try textData.dataset(data, model: source, maxLength: seqLen, batchSize: batchSize, report: !json)
        let result = try Evaluation(model: llama, adapter: adapter, data: dataset, batchSize: batchSize)
        if json {
            print(result.json.serialized)
        } else {
            print("loss \(result.loss), perplexity \(result.perplexity) over \(result.tokens) predicted tokens (\(backend.identifier))")
        }
    }
}
