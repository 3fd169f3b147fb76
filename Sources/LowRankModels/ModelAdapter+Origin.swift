import LowRank

extension ModelAdapter {
    /// Refuses an adapter trained on another model whose shapes happen to fit this one (a Llama
    /// adapter on a Qwen2 model of the same widths): the architecture PEFT recorded must be the
    /// model's, and `base_model_name_or_path` must name the model's folder. Names compare by their
    /// last path component, so a hub id `org/Llama-3-8B` matches a local folder `…/Llama-3-8B/`
    /// and a relative path the absolute one. What an adapter does not record is not checked.
    static func checkOrigin(_ settings: AdapterSettings, path: String, model: LlamaModel) throws {
        let advice = "pass --force-adapter (Python: force=True) to load it anyway"
        if let recorded = settings.architecture, recorded != model.config.architecture {
            throw LowRankError(.invalidArgument, "the adapter was trained on a \(recorded), this model is a \(model.config.architecture); \(advice)",
                               context: [("file", path), ("field", "auto_mapping.base_model_class")])
        }
        guard let name = model.name, !settings.baseModel.isEmpty, lastComponent(settings.baseModel) != lastComponent(name) else { return }
        throw LowRankError(.invalidArgument, "the adapter was trained on \(settings.baseModel), not on this model (\(name)); \(advice)",
                           context: [("file", path), ("field", "base_model_name_or_path")])
    }

    private static func lastComponent(_ name: String) -> Substring {
        name.split(separator: "/").last ?? Substring(name)
    }
}
