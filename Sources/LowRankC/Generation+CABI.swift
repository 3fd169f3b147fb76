import CLowRank
import LowRank
import LowRankModels
import LowRankText

@c public func lowrank_generation_options_init(_ options: UnsafeMutablePointer<lowrank_generation_options>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(options, "options")
        let d = SamplingSettings()
        out.pointee = lowrank_generation_options(size: UInt32(MemoryLayout<lowrank_generation_options>.size), max_new_tokens: 256,
                                                 temperature: d.temperature, top_k: Int32(d.topK), top_p: d.topP, seed: d.seed)
    }
}

@c public func lowrank_model_stop_tokens(_ model: UInt64, _ ids: UnsafeMutablePointer<Int32>?, _ capacity: Int64,
                                         _ count: UnsafeMutablePointer<Int64>?) -> Int32 {
    ABI.call {
        let stops = try HandleTable.model(model).stopTokens()
        try ABI.copy(stops.sorted(), to: ids, capacity: capacity, count: count)
    }
}

@c public func lowrank_model_generate(_ model: UInt64, _ prompt: UnsafePointer<Int32>?, _ promptCount: Int64,
                                      _ options: UnsafePointer<lowrank_generation_options>?, _ stopIDs: UnsafePointer<Int32>?,
                                      _ stopCount: Int64, _ ids: UnsafeMutablePointer<Int32>?, _ capacity: Int64,
                                      _ count: UnsafeMutablePointer<Int64>?) -> Int32 {
    ABI.call {
        var o = lowrank_generation_options()
        if let options {
            o = options.pointee
            try ABI.checkSize(o.size, of: lowrank_generation_options.self, "lowrank_generation_options", initializer: "lowrank_generation_options_init")
        } else {
            _ = lowrank_generation_options_init(&o)
        }
        guard promptCount >= 1, stopCount >= 0 else {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "the prompt needs at least one id and stop_count must not be negative, got \(promptCount) and \(stopCount)")
        }
        guard o.max_new_tokens >= 1, capacity >= o.max_new_tokens else {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "max_new_tokens must be at least 1 and capacity at least max_new_tokens, got \(o.max_new_tokens) and \(capacity)")
        }
        let out = try ABI.required(ids, "ids")
        _ = try ABI.required(count, "count")
        let promptIDs = try ABI.elements(prompt, Int(promptCount), "prompt")
        let given = try stopIDs.map { try ABI.elements($0, Int(stopCount), "stop_ids") }
        let sampling = SamplingSettings(temperature: o.temperature, topK: Int(o.top_k), topP: o.top_p, seed: o.seed)
        let session = try HandleTable.model(model)
        let stops = try given.map(Set.init) ?? session.stopTokens()
        let generated = try session.withState { state in
            try state.currentGenerator().generate(prompt: promptIDs, maxNewTokens: Int(o.max_new_tokens), sampling: sampling, stopTokens: stops)
        }
        try ABI.copy(generated, to: out, capacity: capacity, count: count)
    }
}

extension ModelSession {
    /// The model's stop tokens (none for the built-in model, which has no file).
    func stopTokens() throws -> Set<Int32> {
        guard let path = try withState({ $0.model.name }), FileIO.isDirectory(path) || ModelSources.isGGUF(path) else { return [] }
        guard let text = try text.get() else { return try StopTokens.of(modelDirectory: path, tokenizer: nil, chatTemplate: nil) }
        return try text.with { try StopTokens.of(modelDirectory: path, tokenizer: $0.tokenizer, chatTemplate: $0.chatTemplate) }
    }
}

extension ModelSession.State {

    /// The generator of the current adapter, made at the first generation after it changes.
    mutating func currentGenerator() -> TextGenerator {
        if let generator { return generator }
        let made = TextGenerator(model: model, adapter: adapter)
        generator = made
        return made
    }
}
