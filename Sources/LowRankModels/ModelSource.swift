import LowRank

/// Where a model's configuration, weights and text tools come from: a Hugging Face folder
/// (`HuggingFaceCheckpoint`) or a GGUF file (`GGUFCheckpoint`). Weights are named and shaped as
/// Hugging Face's, whatever the file.
public protocol ModelSource: Sendable {
    var config: LlamaConfig { get }
    /// The path it was opened from, as adapters record it in `base_model_name_or_path`.
    var name: String { get }
    /// The dtype each matrix loads as: `override` when given and the tensor is a float one, else the file's own.
    func matrixDType(_ override: DType?) -> @Sendable (String) throws -> DType
    /// Tensor `name` (a Hugging Face name) on `backend` as `dtype`.
    func tensor(_ name: String, as dtype: DType, on backend: any Backend) throws -> Tensor
    /// The tokenizer and chat template, or nil when the source has no tokenizer.
    func textFormat(trainOnPrompt: Bool) throws -> TextFormat?
    /// This model with `adapter` merged, as a Hugging Face model folder written into the new,
    /// empty `folder`, every float tensor in `dtype` when given (`write(merging:…)` stages and swaps it in).
    func writeMerged(_ adapter: ModelAdapter, of model: LlamaModel, into folder: String, dtype: DType?) throws -> MergeReport
    /// The GGUF metadata a merged model written from this one carries (configuration, tokenizer,
    /// chat template).
    var ggufMetadata: any GGUFMetadataSource { get }
}

public enum ModelSources {
    /// A `.gguf` file, or a Hugging Face model folder. `dequantizing` loads a GGUF file's
    /// block-quantized matrices as f32 (as merging needs them).
    public static func open(_ path: String, dequantizing: Bool = false) throws -> any ModelSource {
        isGGUF(path) ? try GGUFCheckpoint(path: path, dequantizing: dequantizing) : try HuggingFaceCheckpoint(folder: path)
    }

    /// Whether `path` names a GGUF file (by its extension, as llama.cpp and transformers take them).
    public static func isGGUF(_ path: String) -> Bool {
        path.lowercased().hasSuffix(".gguf")
    }
}
