import Glibc
import LowRank

extension HuggingFaceCheckpoint {
    /// Writes this checkpoint with `adapter` merged into its weights to `folder`, in the same
    /// layout: the same weight files (one, or the same shards and index) holding the same tensors
    /// in their original dtypes, and every other file of the folder (config, tokenizer) copied.
    /// `model` must be this checkpoint loaded in f32; the merge runs on its backend.
    public func write(merging adapter: ModelAdapter, of model: LlamaModel, to folder: String) throws {
        guard model.projectionDType == .f32 else {
            throw LowRankError(.invalidArgument, "merging needs the model's weights in f32, not quantized to \(model.projectionDType)")
        }
        guard FileIO.canonicalPath(self.folder) != FileIO.canonicalPath(folder) else {
            throw LowRankError(.invalidArgument, "the merged checkpoint would overwrite the model it is made from; choose another --out", context: [("folder", folder)])
        }
        try FileIO.makeDirectories(folder)
        var merged: [String: Tensor] = [:]
        for (path, layer) in adapter.layers {
            let name = path + ".weight"
            let weight = try model.weight(name).copy(to: model.backend)
            switch layer {
            case .lora(let lora): try lora.merge(into: weight)
            case .dora(let dora): try dora.merge(into: weight)
            }
            merged[name] = weight
        }
        for (fileName, file) in files {
            let cpu = CPUBackend.shared
            let tensors = try file.names.map { name -> (name: String, tensor: Tensor) in
                let entry = try file.entry(name)
                guard let weight = merged[name] else { return (name, try file.tensor(name, on: cpu)) }
                return (name, try Tensor(try weight.floats(), shape: entry.shape, dtype: entry.dtype, on: cpu))
            }
            try SafetensorsFile.write(tensors, metadata: file.metadata, to: folder + "/" + fileName)
        }
        let weightFiles = Set(files.map(\.name))
        for name in try FileIO.contents(ofDirectory: self.folder) where !weightFiles.contains(name) && !FileIO.isDirectory(self.folder + "/" + name) {
            try FileIO.read(self.folder + "/" + name).withUnsafeBytes { try FileIO.writeAtomically(folder + "/" + name, $0) }
        }
    }
}
