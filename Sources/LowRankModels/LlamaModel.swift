import LowRank

/// A Llama-family decoder's frozen weights on one backend, by their Hugging Face names. The
/// matrices (the projections, the token embedding and the LM head) are held in the checkpoint's
/// dtype (bf16 or f16 stay 16-bit) or in a chosen one, and the projections may instead be
/// block-quantized at load (QLoRA). The vectors (norm weights, biases) are held in f32: they are a
/// few thousand values per block, and their ops compute in f32 anyway. Only storage is 16-bit:
/// every op reads a 16-bit weight into f32 and accumulates in f32, and activations, norm
/// statistics, softmax, the loss, adapters, their gradients and the optimizer's state stay f32;
/// only the hidden state between decoder blocks follows the weights' dtype in training
/// (`residualDType(_:)`).
public final class LlamaModel {
    public let config: LlamaConfig
    /// Where it came from (the checkpoint's folder, or a name such as the default job's), as
    /// adapters record it in `base_model_name_or_path`; nil for an unnamed model.
    public let name: String?
    public let backend: any Backend
    /// The dtype of the projection weights: f32, bf16, f16, or a quantized type.
    public let projectionDType: DType
    /// The float dtype the projections come in before any `--quantize` (bf16 for a bf16 checkpoint
    /// quantized to NF4 at load, as bitsandbytes' 4-bit layers compute in the checkpoint's
    /// `torch_dtype`); f32 for a checkpoint whose projections are stored block-quantized (GGUF).
    let computeDType: DType
    private let weights: [String: Tensor]
    let inverseFrequencies: Tensor

    /// Loads `checkpoint` onto `backend`, tensor by tensor from the mapped files. Each float matrix
    /// is held in `dtype` (f32, bf16 or f16), or in the checkpoint's own dtype when it is nil; the
    /// seven projections of every block are quantized to `quantize` instead when it is given.
    public convenience init(checkpoint: any ModelSource, on backend: any Backend, quantize: DType? = nil, dtype: DType? = nil) throws {
        if let dtype, !dtype.isFloatingPoint {
            throw LowRankError(.invalidArgument, "--dtype takes f32, bf16 or f16, not \(dtype)")
        }
        try self.init(config: checkpoint.config, name: checkpoint.name, on: backend, quantize: quantize,
                      matrixDType: checkpoint.matrixDType(dtype)) { name, dtype in
            try checkpoint.tensor(name, as: dtype, on: backend)
        }
    }

    /// A model with weights drawn from `seed` (N(0, 0.3²)-ish projections, norms near 1), its
    /// matrices in `dtype`: the embedded default job's, tests' and benchmarks'.
    public convenience init(config: LlamaConfig, seed: UInt64, name: String? = nil, dtype: DType = .f32, on backend: any Backend) throws {
        var random = SplitMix(seed: seed)
        let shapes = Dictionary(uniqueKeysWithValues: config.expectedTensors.map { ($0.name, $0.shape) })
        try self.init(config: config, name: name, on: backend, quantize: nil, matrixDType: { _ in dtype }) { name, dtype in
            let shape = shapes[name]!
            let isNorm = name.hasSuffix("norm.weight")
            let scale = Float(isNorm ? 0.1 : 1 / Double(shape.columns).squareRoot())
            let values = (0..<shape.count).map { _ in (isNorm ? 1 : 0) + scale * Float(random.normal()) }
            return try Tensor(values, shape: shape, dtype: dtype, on: backend)
        }
    }

    /// A model of `config`'s shapes on a planning backend, holding no values: each matrix in
    /// `dtype(name)`, the projections quantized to `quantize` when it is given. It plans a run's
    /// memory without a weight file.
    public convenience init(planning config: LlamaConfig, on backend: PlanningBackend, quantize: DType? = nil,
                            dtype: (String) throws -> DType) throws {
        let shapes = Dictionary(uniqueKeysWithValues: config.expectedTensors.map { ($0.name, $0.shape) })
        try self.init(config: config, name: nil, on: backend, quantize: quantize, matrixDType: dtype) { name, dtype in
            try Tensor(empty: shapes[name]!, dtype: dtype, on: backend)
        }
    }

    private init(config: LlamaConfig, name: String?, on backend: any Backend, quantize: DType?, matrixDType: (String) throws -> DType,
                 load: (String, DType) throws -> Tensor) throws {
        if let quantize, !quantize.hasQuantizer {
            throw LowRankError(.invalidArgument, "--quantize takes nf4, q8_0 or q4_0, not \(quantize)")
        }
        (self.config, self.name) = (config, name)
        self.backend = backend
        var weights: [String: Tensor] = [:]
        let projections = Set((0..<config.layerCount).flatMap { layer in
            config.projections.map { "model.layers.\(layer).\($0.path).weight" }
        })
        for (name, shape) in config.expectedTensors {
            do {
                let dtype = shape.rank == 1 ? .f32 : projections.contains(name) ? try quantize ?? matrixDType(name) : try matrixDType(name)
                weights[name] = try load(name, dtype)
            } catch let error as LowRankError {
                throw error.adding("tensor", name)
            }
        }
        self.weights = weights
        projectionDType = quantize ?? weights["model.layers.0.\(config.projections[0].path).weight"]?.dtype ?? .f32
        let source = config.layerCount > 0 ? try matrixDType("model.layers.0.\(config.projections[0].path).weight") : DType.f32
        computeDType = source.isFloatingPoint ? source : .f32
        inverseFrequencies = try Tensor(config.inverseFrequencies, shape: [config.headDim / 2], on: backend)
    }

    /// The dtype the hidden state between decoder blocks is held in when training: `chosen`
    /// (`TrainingSettings.residualDType`) when given, else the frozen weights' compute dtype, as
    /// PyTorch holds a bf16 or f16 model's hidden states in that dtype (also under bitsandbytes' NF4,
    /// which computes in the checkpoint's dtype); f32 for f32 weights and for block-quantized
    /// checkpoints (GGUF), whose hidden states llama.cpp keeps in f32.
    public func residualDType(_ chosen: DType?) -> DType {
        chosen ?? computeDType
    }

    public func weight(_ name: String) throws -> Tensor {
        guard let w = weights[name] else { throw LowRankError(.invalidArgument, "the model has no tensor \(name)", context: [("tensor", name)]) }
        return w
    }

    /// Every linear layer an adapter may target, by module path and projection name, in model order.
    public var linearModules: [(path: String, name: String)] {
        (0..<config.layerCount).flatMap { layer in config.projections.map { ("model.layers.\(layer).\($0.path)", $0.name) } }
    }

    /// The bytes the weights take on the device.
    public var weightBytes: Int { weights.values.reduce(0) { $0 + $1.byteCount } }

    /// Every weight, by name, with the dtype it is held in.
    public var tensors: [(name: String, tensor: Tensor)] {
        config.expectedTensors.map { ($0.name, weights[$0.name]!) }
    }
}
