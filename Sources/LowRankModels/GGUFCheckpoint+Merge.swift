import LowRank
import LowRankText

extension GGUFCheckpoint {
    /// The merged model as the Hugging Face folder transformers' GGUF loader makes of this file:
    /// `config.json`, every weight under its Hugging Face name in one `model.safetensors` (q/k rows
    /// un-permuted; a float tensor in its stored dtype or `dtype`, a block-quantized one dequantized
    /// to `dtype` or f32), and the tokenizer (`tokenizer.json`, and `tokenizer_config.json` with the
    /// special tokens and chat template) when the metadata has one.
    public func writeMerged(_ adapter: ModelAdapter, of model: LlamaModel, into folder: String, dtype: DType?) throws -> MergeReport {
        func written(_ name: String) throws -> DType {
            let stored = try storedDType(name)
            return stored.isQuantized ? dtype ?? .f32 : dtype ?? stored
        }
        let (merged, rounding) = try mergedTensors(adapter, of: model, dtype: written)
        let cpu = CPUBackend.shared
        let tensors = try config.expectedTensors.map { name, _ -> (name: String, tensor: Tensor) in
            let tensor = try merged[name] ?? self.tensor(name, as: try written(name), on: cpu)
            return (name, try Self.checkFinite(tensor, name, merged: merged[name] != nil, stored: try storedDType(name), file: file.path))
        }
        try SafetensorsFile.write(tensors, metadata: ["format": "pt"], to: folder + "/model.safetensors")
        try FileIO.writeAtomically(folder + "/config.json", text: config.json.serialized)
        if let tokenizer = try GGUFTokenizer(file) {
            try FileIO.writeAtomically(folder + "/tokenizer.json", text: tokenizer.json.serialized)
            var settings: [String: JSON] = [:]
            for (key, token) in [("bos_token", tokenizer.bosToken), ("eos_token", tokenizer.eosToken), ("pad_token", tokenizer.padToken)] {
                if let token { settings[key] = .string(token) }
            }
            if let template = file["tokenizer.chat_template"]?.string { settings["chat_template"] = .string(template) }
            try FileIO.writeAtomically(folder + "/tokenizer_config.json", text: JSON.object(settings).serialized)
        }
        return MergeReport(skipped: [], rounding: rounding)
    }
}
