import CLowRank
import LowRank
import LowRankModels

@c public func lowrank_model_load(_ engine: UInt64, _ path: UnsafePointer<CChar>?, _ quantize: UnsafePointer<CChar>?,
                                  _ model: UnsafeMutablePointer<UInt64>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(model, "model")
        let entry = try HandleTable.engine(engine)
        let folder = try ABI.string(path, "path")
        let dtype = try quantize.map { pointer -> DType in
            let name = try ABI.string(pointer, "quantize")
            guard let t = DType(rawValue: name), t.hasQuantizer else {
                throw ABIError(LOWRANK_INVALID_ARGUMENT, "quantize takes nf4, q8_0 or q4_0, not \(name)")
            }
            return t
        }
        let source = try ModelSources.open(folder)
        let llama = try LlamaModel(checkpoint: source, on: entry.backend, quantize: dtype)
        let text: Result<TokenizerSession?, LowRankError>
        do {
            if let format = try source.textFormat(trainOnPrompt: false) {
                text = .success(TokenizerSession(format))
            } else {
                text = .success(nil)
            }
        } catch let error as LowRankError {
            text = .failure(error)
        }
        out.pointee = HandleTable.openModel(ModelSession(engineHandle: engine, engine: entry, model: llama, text: text))
    }
}

@c public func lowrank_model_create_default(_ engine: UInt64, _ model: UnsafeMutablePointer<UInt64>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(model, "model")
        let entry = try HandleTable.engine(engine)
        out.pointee = HandleTable.openModel(ModelSession(engineHandle: engine, engine: entry, model: try DefaultJob.model(on: entry.backend)))
    }
}

@c public func lowrank_model_config(_ model: UInt64, _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: size_t,
                                    _ length: UnsafeMutablePointer<size_t>?) -> Int32 {
    ABI.call {
        let json = try HandleTable.model(model).withState { $0.model.config.json.serialized }
        try ABI.copy(json, to: buffer, capacity: capacity, length: length)
    }
}

@c public func lowrank_model_close(_ model: UInt64) -> Int32 {
    ABI.call { try HandleTable.closeModel(model) }
}

@c public func lowrank_default_corpus(_ buffer: UnsafeMutablePointer<CChar>?, _ capacity: size_t, _ length: UnsafeMutablePointer<size_t>?) -> Int32 {
    ABI.call { try ABI.copy(DefaultJob.corpus, to: buffer, capacity: capacity, length: length) }
}
