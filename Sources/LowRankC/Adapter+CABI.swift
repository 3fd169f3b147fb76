import CLowRank
import LowRank
import LowRankModels

@c public func lowrank_adapter_options_init(_ options: UnsafeMutablePointer<lowrank_adapter_options>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(options, "options")
        let d = try AdapterSettings()
        out.pointee = lowrank_adapter_options(size: UInt32(MemoryLayout<lowrank_adapter_options>.size), r: Int32(d.rank), alpha: d.alpha,
                                              dropout: d.dropout, rslora: d.rsLoRA ? 1 : 0, dora: d.dora ? 1 : 0, targets: nil, seed: 0,
                                              peft_config: nil)
    }
}

@c public func lowrank_model_add_adapter(_ model: UInt64, _ options: UnsafePointer<lowrank_adapter_options>?) -> Int32 {
    ABI.addingAdapter(options, to: model) { state, settings, initialization, seed in
        try ModelAdapter.starting(settings, as: initialization, on: state.model, seed: seed)
    }
}

@c public func lowrank_model_add_adapter_with_data(_ model: UInt64, _ options: UnsafePointer<lowrank_adapter_options>?, _ inputIDs: UnsafePointer<Int32>?,
                                                   _ labels: UnsafePointer<Int32>?, _ rows: Int64, _ sequence: Int64, _ batchSize: Int64) -> Int32 {
    ABI.addingAdapter(options, to: model) { state, settings, initialization, seed in
        switch initialization {
        case .eva, .split(.corda): break
        default: throw ABIError(LOWRANK_INVALID_ARGUMENT, "lowrank_model_add_adapter_with_data starts init_lora_weights \"eva\" or \"corda\", not \(initialization.peftName)")
        }
        guard batchSize >= 1 else { throw ABIError(LOWRANK_INVALID_ARGUMENT, "batch_size must be at least 1, got \(batchSize)") }
        let batch = try ABI.batch(inputIDs, labels, rows, sequence, vocabularySize: state.model.config.vocabularySize)
        let n = Int(sequence)
        let split = { (values: [Int32]) in (0..<Int(rows)).map { Array(values[($0 * n)..<(($0 + 1) * n)]) } }
        let data = try TokenDataset(rows: split(batch.inputIDs), labels: try labels.map { split(try ABI.elements($0, Int(rows) * n, "labels")) },
                                    vocabularySize: state.model.config.vocabularySize)
        return try ModelAdapter.starting(settings, as: initialization, on: state.model, seed: seed, data: data, batchSize: Int(batchSize))
    }
}

@c public func lowrank_model_load_adapter(_ model: UInt64, _ folder: UnsafePointer<CChar>?) -> Int32 {
    ABI.withFolder(folder, of: model) { state, path in state.attach(try ModelAdapter(contentsOf: path, on: state.model)) }
}

@c public func lowrank_model_load_adapter_forced(_ model: UInt64, _ folder: UnsafePointer<CChar>?) -> Int32 {
    ABI.withFolder(folder, of: model) { state, path in state.attach(try ModelAdapter(contentsOf: path, on: state.model, force: true)) }
}

@c public func lowrank_model_save_adapter(_ model: UInt64, _ folder: UnsafePointer<CChar>?) -> Int32 {
    ABI.withFolder(folder, of: model) { state, path in
        let adapter = try state.requireAdapter()
        try adapter.checkFinite(what: "it")
        try OutputLock.holding(path) { try adapter.save(to: path) }
    }
}

@c public func lowrank_model_adapter_tensor_count(_ model: UInt64, _ count: UnsafeMutablePointer<Int64>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(count, "count")
        out.pointee = Int64(try HandleTable.model(model).withState { try $0.requireAdapter().parameters.count })
    }
}

@c public func lowrank_model_adapter_tensor_name(_ model: UInt64, _ index: Int64, _ buffer: UnsafeMutablePointer<CChar>?,
                                                 _ capacity: size_t, _ length: UnsafeMutablePointer<size_t>?) -> Int32 {
    ABI.call {
        let names = try HandleTable.model(model).withState { try $0.requireAdapter().parameters.map(\.name) }
        guard index >= 0, index < names.count else {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "tensor index \(index) is outside 0..<\(names.count)")
        }
        try ABI.copy(names[Int(index)], to: buffer, capacity: capacity, length: length)
    }
}

@c public func lowrank_model_adapter_tensor_shape(_ model: UInt64, _ name: UnsafePointer<CChar>?, _ shape: UnsafeMutablePointer<Int64>?,
                                                  _ rank: UnsafeMutablePointer<Int32>?) -> Int32 {
    ABI.call {
        let (shapeOut, rankOut) = (try ABI.required(shape, "shape"), try ABI.required(rank, "rank"))
        let dims = try HandleTable.model(model).withState { try $0.adapterTensor(try ABI.string(name, "name")).shape.dims }
        for (i, d) in dims.enumerated() { shapeOut[i] = Int64(d) }
        rankOut.pointee = Int32(dims.count)
    }
}

@c public func lowrank_model_read_adapter_tensor(_ model: UInt64, _ name: UnsafePointer<CChar>?, _ values: UnsafeMutablePointer<Float>?,
                                                 _ count: Int64) -> Int32 {
    ABI.call {
        let out = try ABI.required(values, "values")
        let floats = try HandleTable.model(model).withState { state in
            let tensor = try state.adapterTensor(try ABI.string(name, "name"))
            try ABI.checkCount(count, tensor)
            return try tensor.floats()
        }
        floats.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: floats.count) }
    }
}

@c public func lowrank_model_write_adapter_tensor(_ model: UInt64, _ name: UnsafePointer<CChar>?, _ values: UnsafePointer<Float>?,
                                                  _ count: Int64) -> Int32 {
    ABI.call {
        try HandleTable.model(model).withState { state in
            let tensor = try state.adapterTensor(try ABI.string(name, "name"))
            try ABI.checkCount(count, tensor)
            try tensor.assign(try ABI.elements(values, Int(count), "values"))
        }
    }
}

extension ModelSession.State {
    func adapterTensor(_ name: String) throws -> Tensor {
        let parameters = try requireAdapter().parameters
        guard let tensor = parameters.first(where: { $0.name == name })?.tensor else {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "the adapter has no tensor \(name) (it has \(parameters.count), such as \(parameters[0].name))")
        }
        return tensor
    }
}

extension ABI {
    /// What the entry points that take a folder share: its path read, then `body` under the
    /// model's lock.
    /// Attaches the adapter `start` makes from the settings and initialisation `options` give
    /// (its members, and `peft_config`'s fields) for `model`, and its seed.
    static func addingAdapter(_ options: UnsafePointer<lowrank_adapter_options>?, to model: UInt64,
                              _ start: (inout ModelSession.State, AdapterSettings, AdapterInitialization, UInt64) throws -> ModelAdapter) -> Int32 {
        call {
            let o = try required(options, "options").pointee
            try checkSize(o.size, of: lowrank_adapter_options.self, "lowrank_adapter_options", initializer: "lowrank_adapter_options_init")
            let targets = try o.targets.map { AdapterSettings.targets(parsing: try string($0, "options.targets")) } ?? AdapterSettings().targets
            let extra = try o.peft_config.map { try string($0, "options.peft_config") }
            try HandleTable.model(model).withState { state in
                let settings = try AdapterSettings(rank: Int(o.r), alpha: o.alpha, dropout: o.dropout, rsLoRA: o.rslora != 0, dora: o.dora != 0,
                                                   targets: targets, baseModel: state.model.name ?? "")
                let (withExtra, initialization) = try extra.map { try peftConfig($0, over: settings) } ?? (settings, .kaiming)
                state.attach(try start(&state, withExtra, initialization, o.seed))
            }
        }
    }

    static func withFolder(_ folder: UnsafePointer<CChar>?, of model: UInt64,
                           _ body: (inout ModelSession.State, String) throws -> Void) -> Int32 {
        call {
            let path = try string(folder, "folder")
            try HandleTable.model(model).withState { state in try body(&state, path) }
        }
    }

    /// The `size` field of an options struct: the caller initialised it with this header's layout.
    /// `settings` with the PEFT `LoraConfig` fields of the JSON object `text` added, and its
    /// `init_lora_weights`. Fields the options struct carries are refused, so a value is never
    /// given twice.
    static func peftConfig(_ text: String, over settings: AdapterSettings) throws -> (AdapterSettings, AdapterInitialization) {
        let field = "options.peft_config"
        guard case .object(var extra) = try JSON.parse(Array(text.utf8)) else { throw ABIError(LOWRANK_INVALID_ARGUMENT, "\(field) must be a JSON object") }
        let members = ["r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "use_rslora": "rslora", "use_dora": "dora", "target_modules": "targets"]
        if let (key, member) = members.sorted(by: { $0.key < $1.key }).first(where: { extra[$0.key] != nil }) {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "\(field) sets \(key), which options.\(member) sets")
        }
        var initialization = AdapterInitialization.kaiming
        switch extra.removeValue(forKey: "init_lora_weights") {
        case nil, .bool(true)?: break
        case .string(let name)? where AdapterInitialization(peftName: name) != nil: initialization = AdapterInitialization(peftName: name)!
        case let value?:
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "\(field): init_lora_weights must be true or one of \(AdapterInitialization.peftNames.joined(separator: ", ")), got \(value.serialized)")
        }
        switch (extra.removeValue(forKey: "eva_config"), initialization) {
        case (nil, _), (.null?, _): break
        case (let eva?, .eva): initialization = .eva(try EVASettings(json: eva, path: field + ".eva_config"))
        case (_?, _): throw ABIError(LOWRANK_INVALID_ARGUMENT, "\(field): eva_config applies to init_lora_weights \"eva\"")
        }
        switch (extra.removeValue(forKey: "corda_config"), initialization) {
        case (nil, _), (.null?, _): break
        case (let corda?, .split(.corda)): initialization = .split(.corda(try CorDAMethod(json: corda, path: field + ".corda_config")))
        case (_?, _): throw ABIError(LOWRANK_INVALID_ARGUMENT, "\(field): corda_config applies to init_lora_weights \"corda\"")
        }
        guard case .object(var merged) = settings.json else { preconditionFailure("AdapterSettings.json is an object") }
        merged.merge(extra) { $1 }
        let withExtra = try AdapterSettings(json: .object(merged), path: field)
        // PEFT's loftq_config gives LoftQ its iterations.
        if case .loftq = initialization, let iterations = withExtra.loftqIterations { initialization = .loftq(iterations: iterations) }
        return (withExtra, initialization)
    }

    static func checkSize<T>(_ size: UInt32, of: T.Type, _ name: String, initializer: String) throws {
        guard size == MemoryLayout<T>.size else {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "\(name).size is \(size), not \(MemoryLayout<T>.size): fill the struct with \(initializer) first")
        }
    }

    static func checkCount(_ count: Int64, _ tensor: Tensor) throws {
        guard count == Int64(tensor.shape.count) else {
            throw ABIError(LOWRANK_SHAPE_MISMATCH, "the buffer holds \(count) values, the tensor \(tensor.shape.count) (shape \(tensor.shape.dims))")
        }
    }
}
