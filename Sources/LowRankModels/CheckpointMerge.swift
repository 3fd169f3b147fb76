import Glibc
import LowRank

extension ModelSource {
    /// Writes this model with `adapter` merged into its weights to `folder` as a Hugging Face
    /// model folder (`writeMerged`: a checkpoint folder in its own layout, a GGUF file as
    /// transformers' GGUF loader reads it). `model` must be this checkpoint
    /// loaded in f32; the merge runs on its backend. The report measures, for each merged tensor,
    /// how much of the adapter's update survived the rounding to the written dtype
    /// (`MergeRounding`): a bf16 checkpoint can round a short fine-tune away.
    ///
    /// The output is written whole into `.<name>.partial` beside `folder` and swapped in at the
    /// end, holding `folder`'s `OutputLock` throughout: a merge that fails (a NaN or infinite
    /// weight, which is an error naming the tensor; a full disk) leaves what was at `folder` as it
    /// was, and no folder it created. Other files are copied only when regular, with their mode; a
    /// symbolic link is followed to the regular file it names, copied with that file's mode (a
    /// model folder in the Hugging Face cache is all links). Returns what was skipped instead, by
    /// name, with what it is (a folder, a FIFO, a socket, a device), in the report.
    @discardableResult
    public func write(merging adapter: ModelAdapter, of model: LlamaModel, to folder: String, dtype: DType? = nil) throws -> MergeReport {
        if let dtype, !dtype.isFloatingPoint {
            throw LowRankError(.invalidArgument, "a merged checkpoint is written in f32, bf16 or f16, not \(dtype)")
        }
        guard !model.projectionDType.isQuantized else {
            throw LowRankError(.invalidArgument, "merging needs the model's weights in f32, bf16 or f16, not quantized to \(model.projectionDType)")
        }
        guard FileIO.canonicalPath(name) != FileIO.canonicalPath(folder) else {
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
                    let report = try writeMerged(adapter, of: model, into: staged, dtype: dtype)
                    try FileIO.replaceFolder(folder, with: staged)
                    return report
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

    /// The adapted weights merged in f32 and rounded once to `dtype(name)`, with what the rounding
    /// kept of each update; the biases, token rows and modules that trained with the adapter in `dtype(name)` too.
    func mergedTensors(_ adapter: ModelAdapter, of model: LlamaModel, dtype: (String) throws -> DType) throws -> (tensors: [String: Tensor], rounding: [MergeRounding]) {
        var merged: [String: Tensor] = [:], rounding: [MergeRounding] = []
        let cpu = CPUBackend.shared
        for (path, layer) in adapter.layers {
            let name = path + ".weight"
            let weight = try model.weight(name)
            let (original, values) = try layer.merged(into: weight, on: model.backend)
            let written = try Tensor(values, shape: weight.shape, dtype: try dtype(name), on: cpu)
            rounding.append(try MergeRounding(tensor: name, dtype: written.dtype, original: original, merged: values, rounded: try written.floats()))
            merged[name] = written
        }
        // The biases that trained with the adapter replace the model's, in the output's dtype.
        for (path, bias) in adapter.biases {
            let name = path + ".bias"
            merged[name] = try Tensor(try bias.floats(), shape: bias.shape, dtype: try dtype(name), on: cpu)
        }
        // The trained token rows replace the embedding's (PEFT's merge: index_copy).
        if let tokens = adapter.tokens {
            let name = "model.embed_tokens.weight"
            let table = try model.weight(name)
            var values = try table.floats()
            let (hidden, rows) = (table.shape[1], try tokens.rows.floats())
            for (k, id) in tokens.indices.enumerated() { values.replaceSubrange((id * hidden)..<((id + 1) * hidden), with: rows[(k * hidden)..<((k + 1) * hidden)]) }
            merged[name] = try Tensor(values, shape: table.shape, dtype: try dtype(name), on: cpu)
        }
        // The modules trained in full replace the model's (PEFT's merge_and_unload keeps the copy).
        // A tied copy (ensure_weight_tying) is the embedding, which the merged model's head is again.
        for module in adapter.saved {
            guard !model.config.tiedEmbeddings || module.tiedHead || ![SavedModule.embedding, SavedModule.head].contains(module.path) else {
                // The merged model's config ties them again, where PEFT trained two copies apart.
                throw LowRankError(.unsupported, "merging modules_to_save (\(module.path)) into a model with tie_word_embeddings is not supported: its LM head and embedding trained apart (ensure_weight_tying false), and the merged model would tie them")
            }
            for (tensor, suffix) in [(module.weight, ".weight")] + (module.bias.map { [($0, ".bias")] } ?? []) {
                let name = module.path + suffix
                merged[name] = try Tensor(try tensor.floats(), shape: tensor.shape, dtype: try dtype(name), on: cpu)
            }
        }
        return (merged, rounding)
    }

    /// `tensor` as it will be written, refused when it holds a NaN or infinity (read back in the
    /// written dtype, so that a value beyond its range, inf in f16, counts too).
    static func checkFinite(_ tensor: Tensor, _ name: String, merged: Bool, stored: DType, file: String) throws -> Tensor {
        let count = try tensor.nonFiniteCount()
        guard count == 0 else {
            let origin = merged ? "after merging the adapter, in \(tensor.dtype)" : tensor.dtype == stored ? "in the model" : "in \(tensor.dtype)"
            throw LowRankError(.numerical, "\(name) holds \(count) NaN or infinite values \(origin); nothing was written",
                               context: [("file", file), ("tensor", name)])
        }
        return tensor
    }
}

extension HuggingFaceCheckpoint {
    /// The same weight files (one, or the same shards and index) holding the same tensors in their
    /// original dtypes, or all of its float tensors in `dtype` when it is given (and `config.json`'s
    /// `torch_dtype`/`dtype` set to it, so that transformers loads them so), and the other files of
    /// the folder (config, tokenizer) copied.
    public func writeMerged(_ adapter: ModelAdapter, of model: LlamaModel, into folder: String, dtype: DType?) throws -> MergeReport {
        let (merged, rounding) = try mergedTensors(adapter, of: model) { name in try dtype ?? file(containing: name).entry(name).dtype }
        let cpu = CPUBackend.shared
        for (fileName, file) in files {
            let tensors = try file.names.map { name -> (name: String, tensor: Tensor) in
                let entry = try file.entry(name)
                let target = entry.dtype.isFloatingPoint ? dtype ?? entry.dtype : entry.dtype
                let tensor = try merged[name] ?? file.tensor(name, as: target, on: cpu)
                return (name, try Self.checkFinite(tensor, name, merged: merged[name] != nil, stored: entry.dtype, file: file.path))
            }
            try SafetensorsFile.write(tensors, metadata: file.metadata, to: folder + "/" + fileName)
        }
        let weightFiles = Set(files.map(\.name))
        var skipped: [(name: String, kind: String)] = []
        for name in try FileIO.contents(ofDirectory: self.folder) where !weightFiles.contains(name) {
            let source = self.folder + "/" + name
            if FileIO.isDirectory(source) {
                skipped.append((name, "a folder"))
            } else if name == "config.json", let dtype {
                try FileIO.writeAtomically(folder + "/" + name, text: try Self.config(String(decoding: try FileIO.read(source), as: UTF8.self),
                                                                                     withDType: dtype, path: source))
            } else if let kind = try FileIO.copyRegularFile(source, to: folder + "/" + name) {
                skipped.append((name, kind))
            }
        }
        return MergeReport(skipped: skipped, rounding: rounding)
    }

    /// `config.json` with every `torch_dtype` and `dtype` field set to `dtype`'s PyTorch name, the
    /// rest of its text as it was: transformers loads a checkpoint in the dtype it names
    /// (`dtype="auto"`, its default since version 5), which would round an f32 merge again.
    static func config(_ text: String, withDType dtype: DType, path: String) throws -> String {
        let torchName = switch dtype {
        case .f16: "float16"
        case .bf16: "bfloat16"
        default: "float32"
        }
        let field = try Regex(#""(torch_dtype|dtype)"(\s*):(\s*)"[^"\\]*""#)
        let rewritten = text.replacing(field) { match in "\"\(match.output[1].substring!)\"\(match.output[2].substring!):\(match.output[3].substring!)\"\(torchName)\"" }
        do { _ = try JSON.parse(Array(rewritten.utf8)) } catch let error as LowRankError {
            throw error.adding("file", path)
        }
        return rewritten
    }
}

extension LayerAdapter {
    /// `W` as `weight` holds it and `W + ΔW`, both in f32: merged in f32 on `backend` whatever dtype
    /// the model holds W in, for each writer to round once to the dtype it writes.
    func merged(into weight: Tensor, on backend: any Backend) throws -> (original: [Float], merged: [Float]) {
        let original = try weight.floats()
        let merged = try Tensor(original, shape: weight.shape, on: backend)
        switch self {
        case .lora(let lora): try lora.merge(into: merged)
        case .dora(let dora): try dora.merge(into: merged)
        }
        return (original, try merged.floats())
    }
}
