import ArgumentParser
import LowRank
import LowRankModels

/// How `train` and `eval` read data files: token ids, or text through the model folder's tokenizer
/// and chat template.
struct TextDataOptions: ParsableArguments {
    @Flag(help: "Count the prompt's tokens in the loss too, not only the completion's ({\"prompt\", \"completion\"} and {\"messages\"} lines).")
    var trainOnPrompt = false

    /// The data file's rows, for `model` (its tokenizer and chat template read text lines).
    func dataset(_ path: String, model: any ModelSource, maxLength: Int?) throws -> TokenDataset {
        try TokenDataset(contentsOf: path, vocabularySize: model.config.vocabularySize, maxLength: maxLength,
                         text: { try model.textFormat(trainOnPrompt: trainOnPrompt) })
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
