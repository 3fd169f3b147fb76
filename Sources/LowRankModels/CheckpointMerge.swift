import Glibc
import LowRank

extension HuggingFaceCheckpoint {
    /// Writes this checkpoint with `adapter` merged into its weights to `folder`, in the same
    /// layout: the same weight files (one, or the same shards and index) holding the same tensors
    /// in their original dtypes, and the other files of the folder (config, tokenizer) copied.
    /// `model` must be this checkpoint loaded in f32; the merge runs on its backend.
    ///
    /// The output is written whole into `.<name>.partial` beside `folder` and swapped in at the
    /// end, holding `folder`'s `OutputLock` throughout: a merge that fails (a NaN or infinite
    /// weight, which is an error naming the tensor; a full disk) leaves what was at `folder` as it
    /// was, and no folder it created. Other files are copied only when regular, with their mode; a
    /// symbolic link is followed to the regular file it names, copied with that file's mode (a
    /// model folder in the Hugging Face cache is all links). Returns what was skipped instead, by
    /// name, with what it is (a folder, a FIFO, a socket, a device).
    @discardableResult
    public func write(merging adapter: ModelAdapter, of model: LlamaModel, to folder: String) throws -> [(name: String, kind: String)] {
        guard model.projectionDType == .f32 else {
            throw LowRankError(.invalidArgument, "merging needs the model's weights in f32, not quantized to \(model.projectionDType)")
        }
        guard FileIO.canonicalPath(self.folder) != FileIO.canonicalPath(folder) else {
            throw LowRankError(.invalidArgument, "the merged checkpoint would overwrite the model it is made from; choose another --out", context: [("folder", folder)])
        }
        let created = FileIO.missingFolders(in: FileIO.parent(of: folder))
        do {
            return try OutputLock.holding(folder) {
                try Self.checkReplaceable(folder)
                let staged = FileIO.parent(of: folder) + "/." + FileIO.lastComponent(folder) + ".partial"
                try FileIO.restoreAside(of: folder, staged: staged)
                try FileIO.removeTree(staged)
                do {
                    try FileIO.makeDirectories(staged)
                    let skipped = try writeMerged(adapter, of: model, into: staged)
                    try FileIO.replaceFolder(folder, with: staged)
                    return skipped
                } catch {
                    try? FileIO.removeTree(staged)
                    throw error
                }
            }
        } catch {
            for made in created.reversed() { rmdir(made) }
            throw error
        }
    }

    /// The output replaces `folder` whole, so it must be missing, empty, or a model folder (a
    /// merge made before): never a folder of other things, nor a file.
    private static func checkReplaceable(_ folder: String) throws {
        guard FileIO.exists(folder) else { return }
        guard FileIO.isDirectory(folder), try FileIO.contents(ofDirectory: folder).isEmpty || FileIO.exists(folder + "/config.json") else {
            throw LowRankError(.invalidArgument, "--out exists and is not a model folder (no config.json); the merge replaces its folder whole, so choose another",
                               context: [("folder", folder)])
        }
    }

    private func writeMerged(_ adapter: ModelAdapter, of model: LlamaModel, into folder: String) throws -> [(name: String, kind: String)] {
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
        for (path, bias) in adapter.biases { merged[path + ".bias"] = bias }
        let cpu = CPUBackend.shared
        for (fileName, file) in files {
            let tensors = try file.names.map { name -> (name: String, tensor: Tensor) in
                let entry = try file.entry(name)
                let tensor = try merged[name].map { try Tensor(try $0.floats(), shape: entry.shape, dtype: entry.dtype, on: cpu) } ?? file.tensor(name, on: cpu)
                // Read back in the file's dtype, so that a merged value beyond its range (inf in f16) counts too.
                let count = try tensor.nonFiniteCount()
                guard count == 0 else {
                    let origin = merged[name] == nil ? "in the model" : "after merging the adapter, in \(entry.dtype)"
                    throw LowRankError(.numerical, "\(name) holds \(count) NaN or infinite values \(origin); nothing was written",
                                       context: [("file", file.path), ("tensor", name)])
                }
                return (name, tensor)
            }
            try SafetensorsFile.write(tensors, metadata: file.metadata, to: folder + "/" + fileName)
        }
        let weightFiles = Set(files.map(\.name))
        var skipped: [(name: String, kind: String)] = []
        for name in try FileIO.contents(ofDirectory: self.folder) where !weightFiles.contains(name) {
            let source = self.folder + "/" + name
            if FileIO.isDirectory(source) {
                skipped.append((name, "a folder"))
            } else if let kind = try FileIO.copyRegularFile(source, to: folder + "/" + name) {
                skipped.append((name, kind))
            }
        }
        return skipped
    }
}
