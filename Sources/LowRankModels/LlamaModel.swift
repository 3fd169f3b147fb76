import LowRank

/// A Llama-family decoder's frozen weights on one backend, by their Hugging Face names. The
/// projections may be block-quantized at load (QLoRA); everything else is held in f32.
public final class LlamaModel {
    public let config: LlamaConfig
    /// Where it came from (the checkpoint's folder, or a name such as the default job's), as
    /// adapters record it in `base_model_name_or_path`; nil for an unnamed model.
    public let name: String?
    public let backend: any Backend
    /// The dtype of the projection weights: f32, or a quantized type.
    public let projectionDType: DType
    private let weights: [String: Tensor]
    let inverseFrequencies: Tensor

    /// Loads `checkpoint` onto `backend`, quantizing the seven projections of every block to
    /// `quantize` when it is given.
    public convenience init(checkpoint: HuggingFaceCheckpoint, on backend: any Backend, quantize: DType? = nil) throws {
        try self.init(config: checkpoint.config, name: checkpoint.folder, on: backend, quantize: quantize) { name, dtype in
            try checkpoint.tensor(name, as: dtype, on: backend)
        }
    }

    /// A model with weights drawn from `seed` (N(0, 0.3²)-ish projections, norms near 1): the
    /// embedded default job's, and tests'.
    public convenience init(config: LlamaConfig, seed: UInt64, name: String? = nil, on backend: any Backend) throws {
        var random = SplitMix(seed: seed)
        let shapes = Dictionary(uniqueKeysWithValues: config.expectedTensors.map { ($0.name, $0.shape) })
        try self.init(config: config, name: name, on: backend, quantize: nil) { name, dtype in
            let shape = shapes[name]!
            let isNorm = name.hasSuffix("norm.weight")
            let scale = Float(isNorm ? 0.1 : 1 / Double(shape.columns).squareRoot())
            let values = (0..<shape.count).map { _ in (isNorm ? 1 : 0) + scale * Float(random.normal()) }
            return try Tensor(values, shape: shape, dtype: dtype, on: backend)
        }
    }

    private init(config: LlamaConfig, name: String?, on backend: any Backend, quantize: DType?, load: (String, DType) throws -> Tensor) throws {
        if let quantize, !quantize.isQuantized {
            throw LowRankError(.invalidArgument, "--quantize takes nf4, q8_0 or q4_0, not \(quantize)")
        }
        (self.config, self.name) = (config, name)
        self.backend = backend
        projectionDType = quantize ?? .f32
        var weights: [String: Tensor] = [:]
        let projections = Set((0..<config.layerCount).flatMap { layer in
            config.projections.map { "model.layers.\(layer).\($0.path).weight" }
        })
        for (name, _) in config.expectedTensors {
            do {
                weights[name] = try load(name, projections.contains(name) ? projectionDType : .f32)
            } catch let error as LowRankError {
                throw error.adding("tensor", name)
            }
        }
        self.weights = weights
        inverseFrequencies = try Tensor(config.inverseFrequencies, shape: [config.headDim / 2], on: backend)
    }

    public func weight(_ name: String) throws -> Tensor {
        guard let w = weights[name] else { throw LowRankError(.invalidArgument, "the model has no tensor \(name)", context: [("tensor", name)]) }
        return w
    }

    /// Every linear layer an adapter may target, by module path and projection name, in model order.
    public var linearModules: [(path: String, name: String)] {
        (0..<config.layerCount).flatMap { layer in config.projections.map { ("model.layers.\(layer).\($0.path)", $0.name) } }
    }

    /// Every weight, by name, with the dtype it is held in.
    public var tensors: [(name: String, tensor: Tensor)] {
        config.expectedTensors.map { ($0.name, weights[$0.name]!) }
    }
}
