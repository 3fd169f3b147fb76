import ArgumentParser
import LowRank
import LowRankModels

/// How `train` and `eval` read data files: token ids, or text through the model folder's tokenizer
/// and chat template.
struct TextDataOptions: ParsableArguments {
    @Flag(help: "Count the prompt's tokens in the loss too, not only the completion's ({\"prompt\", \"completion\"} and {\"messages\"} lines).")
    var trainOnPrompt = false

    @Flag(help: "Pack several sequences into each row of --seq-len tokens (best-fit decreasing, as TRL's packing_strategy=\"bfd\"); attention and RoPE positions restart at each sequence, so the loss is the unpacked loss. Prints the padding saved.")
    var pack = false

    /// The data file's rows, for `model` (its tokenizer and chat template read text lines), packed
    /// into rows of `maxLength` with --pack; `report`: print the padding saved, for batches of `batchSize`.
    func dataset(_ path: String, model: any ModelSource, maxLength: Int?, batchSize: Int, report: Bool = false) throws -> TokenDataset {
        let rows = try TokenDataset(contentsOf: path, vocabularySize: model.config.vocabularySize, maxLength: maxLength,
                                    text: { try model.textFormat(trainOnPrompt: trainOnPrompt) })
        guard pack else { return rows }
        guard let maxLength else { throw ValidationError("--pack needs --seq-len, the length of the packed rows") }
        let packed = try rows.packed(into: maxLength)
        if report {
            let run = { (data: TokenDataset) in
                let (positions, tokens) = data.positions(batchSize: batchSize)
                return "\(positions) positions (\(String(format: "%.1f", 100 * Double(positions - tokens) / Double(max(positions, 1))))% padding)"
            }
            printToStandardError("packed \(rows.rows.count) sequences into \(packed.rows.count) rows of at most \(maxLength) tokens; an epoch in batches of "
                                 + "\(batchSize) runs \(run(packed)) packed, \(run(rows)) unpacked")
        }
        return packed
    }
}

/// The data-file help shared by `train` and `eval`.
let dataFormatsHelp = """
    Data: a .npy int32/int64 [N, seq] array, or JSONL with one of these per line: {"input_ids": [...]} with an \
    optional "labels" list (-100: not trained on); {"text": ...}; {"prompt": ..., "completion": ...}; \
    {"messages": [{"role": ..., "content": ...}, ...]}. Text is tokenized with the model's tokenizer (tokenizer.json, or a GGUF file's metadata) as \
    TRL's SFTTrainer does: EOS is appended to text and completions; with the model's chat template a prompt and \
    completion are one user and one assistant turn, and only what follows the last user turn's generation prompt \
    (the reply, its end-of-turn token and what the template adds after it) is in the loss, unless --train-on-prompt.
    """
