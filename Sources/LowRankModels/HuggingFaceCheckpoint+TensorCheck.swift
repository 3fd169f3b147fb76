import LowRank

extension HuggingFaceCheckpoint {
    /// Checks `config.json` against the tensors the weight files' headers list, before anything
    /// is read or allocated: the layer count first (a count past the checkpoint's layers is an error
    /// naming num_hidden_layers and how many layers it holds, not only a missing tensor), then every tensor the config implies
    /// (present, shaped as it says, a float dtype), then that no tensor is left unused (a config
    /// of one layer on a checkpoint of two would otherwise drop layer 1 silently).
    func checkTensors() throws {
        let layers = Set(location.keys.compactMap(Self.layerIndex))
        if config.layerCount > layers.count {
            // More layers than the checkpoint has indices: one of the first layers.count + 1 is missing.
            let missing = (0...layers.count).first { !layers.contains($0) }!
            let name = "model.layers.\(missing).input_layernorm.weight"
            throw LowRankError(.fileFormat, "config.json's num_hidden_layers is \(config.layerCount), but the checkpoint holds \(layers.count) layers: it has no tensor \(name)",
                               context: [("folder", folder), ("field", "num_hidden_layers"), ("tensor", name)])
        }
        let expected = config.expectedTensors
        for (name, shape) in expected {
            guard let i = location[name] else {
                throw LowRankError(.fileFormat, "the checkpoint has no tensor \(name), which config.json implies",
                                   context: [("folder", folder), ("tensor", name)])
            }
            let entry = try files[i].file.entry(name)
            guard entry.shape == shape else {
                throw LowRankError(.shapeMismatch, "\(name) is \(entry.shape) but config.json implies \(shape)",
                                   context: [("file", files[i].file.path), ("tensor", name)])
            }
            guard entry.dtype.isFloatingPoint else {
                throw LowRankError(.dtypeMismatch, "\(name) is \(entry.dtype); weights must be F32, F16 or BF16",
                                   context: [("file", files[i].file.path), ("tensor", name)])
            }
        }
        let used = Set(expected.map(\.name))
        let unused = location.keys.filter { !used.contains($0) && !isIgnoredByTransformers($0) }.sorted()
        guard unused.isEmpty else {
            throw LowRankError(.fileFormat, "the checkpoint holds \(unused.count) tensor\(unused.count == 1 ? "" : "s") that config.json leaves unused, "
                               + "such as \(unused.prefix(3).joined(separator: ", ")) (is config.json this checkpoint's?)",
                               context: [("folder", folder), ("tensor", unused[0])])
        }
    }

    /// The N of `model.layers.N.…`.
    private static func layerIndex(_ name: String) -> Int? {
        let prefix = "model.layers."
        guard name.hasPrefix(prefix) else { return nil }
        return Int(name.dropFirst(prefix.count).prefix { $0 != "." })
    }

    /// What transformers drops on load without a word: the RoPE inverse frequencies older
    /// versions saved as a buffer, and an LM head that tied embeddings replace.
    private func isIgnoredByTransformers(_ name: String) -> Bool {
        name.hasSuffix(".self_attn.rotary_emb.inv_freq") || (config.tiedEmbeddings && name == "lm_head.weight")
    }
}
