import Glibc
import LowRank

/// The device bytes a training run takes, known before its weights load: the model, adapter,
/// optimizer and step plan built on a `PlanningBackend` from the config alone (tensor
/// descriptors, no values), following the real run's allocations.
public struct MemoryPlan: Sendable {
    /// The frozen weights, in the dtypes they would be held in, and RoPE's frequencies.
    public let weightsBytes: Int
    /// The adapter's tensors (A, B, DoRA's magnitude and norm cache, the copies of modules_to_save)
    /// and AdamW's two f32 moments.
    public let adapterAndOptimizerBytes: Int
    /// The step plan's buffers: every intermediate value, the adapter's gradients among them.
    public let activationsBytes: Int
    /// The rest: the batch's ids and labels, the positions, constants of the plan, and the ops' own
    /// workspace (on a GPU the encoders' scratch the plan's runs keep, `ExecutionPlan.repeatScratchBytes`;
    /// on the CPU the fused LM head's, the largest an op frees as it ends).
    public let workspaceBytes: Int
    public var plannedBytes: Int { weightsBytes + adapterAndOptimizerBytes + activationsBytes + workspaceBytes }

    /// What the run is, for planning it.
    public struct Run: Sendable {
        public var config: LlamaConfig
        /// The dtype each matrix is held in, by tensor name.
        public var weightDType: @Sendable (String) throws -> DType
        public var quantize: DType?
        public var adapter: AdapterSettings
        public var batch: Int
        public var sequence: Int
        public var checkpointing: Bool
        /// `TrainingSettings.residualDType`: nil for the weights' default.
        public var residual: DType?

        public init(config: LlamaConfig, weightDType: @escaping @Sendable (String) throws -> DType, quantize: DType?, adapter: AdapterSettings,
                    batch: Int, sequence: Int, checkpointing: Bool, residual: DType? = nil) {
            (self.config, self.weightDType, self.quantize, self.adapter) = (config, weightDType, quantize, adapter)
            (self.batch, self.sequence, self.checkpointing, self.residual) = (batch, sequence, checkpointing, residual)
        }
    }

    /// Plans `run` as it would run on `device` (its op support decides the plan's fallbacks).
    public init(_ run: Run, on device: (any Backend)? = nil) throws {
        let backend = PlanningBackend(planningFor: device, allocationAlignment: (device as? VulkanBackend)?.allocationAlignment ?? 1)
        func counted() -> Int { backend.memoryStatistics()[0].currentBytes }
        let model = try LlamaModel(planning: run.config, on: backend, quantize: run.quantize, dtype: run.weightDType)
        let afterModel = counted()
        let adapter = try ModelAdapter(settings: run.adapter, on: model, seed: 0)
        let optimizer = try AdamWOptimizer(parameters: adapter.parameters, settings: TrainingSettings().optimizer(totalSteps: nil))
        let afterOptimizer = counted()
        let plan = try CausalLMPlan(model: model, adapter: adapter, batch: run.batch, sequence: run.sequence, training: true,
                                    checkpointing: run.checkpointing, residual: model.residualDType(run.residual))
        let feeds = 2 * run.batch * run.sequence * DType.i32.byteCount(elements: 1)
        weightsBytes = afterModel
        activationsBytes = plan.plan.plannedBytes
        adapterAndOptimizerBytes = afterOptimizer - afterModel
        // A GPU keeps its encoders' scratch for the plan's runs (the fused LM head's blocks of
        // logits among it); the CPU frees each op's as the op ends, the largest being the fused
        // head's (held logits are the plan's own buffers).
        let config = run.config
        let head = try adapter.saved.first { $0.path == SavedModule.head || $0.tiedHead }?.weight
            ?? model.weight(config.tiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight")
        let rows = run.batch * run.sequence
        let headWorkspace = CausalLMPlan.holdsLogits(on: backend, rows: rows, classes: config.vocabularySize) ? 0
            : CausalLMPlan.head.workspaceBytes(rows: rows, classes: config.vocabularySize, d: config.hiddenSize, hidden: .f32, weight: head.dtype)
        let opWorkspace = device is VulkanBackend ? try plan.plan.repeatScratchBytes() : headWorkspace
        workspaceBytes = counted() - afterOptimizer + feeds + opWorkspace
        withExtendedLifetime(optimizer) {}
    }

    public var json: JSON {
        .object(["planned_bytes": .number(Double(plannedBytes)), "weights_bytes": .number(Double(weightsBytes)),
                 "adapter_and_optimizer_bytes": .number(Double(adapterAndOptimizerBytes)),
                 "activations_bytes": .number(Double(activationsBytes)), "workspace_bytes": .number(Double(workspaceBytes))])
    }

    public var description: String {
        "planned \(Self.gibibytes(plannedBytes)): weights \(Self.gibibytes(weightsBytes)), adapter and optimizer \(Self.gibibytes(adapterAndOptimizerBytes)), "
            + "activations \(Self.gibibytes(activationsBytes)), workspace \(Self.gibibytes(workspaceBytes))"
    }

    public static func gibibytes(_ bytes: Int) -> String {
        let g = Double(bytes) / Double(1 << 30)
        return g >= 0.1 ? "\((g * 100).rounded() / 100) GiB" : "\((Double(bytes) / Double(1 << 20) * 10).rounded() / 10) MiB"
    }

    /// The memory `backend` has for tensors: its device-local heaps on Vulkan, physical memory on the CPU.
    public static func capacity(of backend: any Backend) -> Int {
        if let vulkan = backend as? VulkanBackend { return vulkan.info.deviceLocalBytes }
        return sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE))
    }

    /// Stops a run that would not fit `backend` (`capacity` bytes, or all it has) before it loads
    /// anything, saying which of the usual changes would fit: a shorter sequence, gradient
    /// checkpointing, NF4 projections.
    public static func checkFits(_ run: Run, on backend: any Backend, capacity: Int? = nil) throws -> MemoryPlan {
        let planned = try MemoryPlan(run, on: backend), capacity = capacity ?? Self.capacity(of: backend)
        guard planned.plannedBytes > capacity else { return planned }
        var fits: [String] = []
        if !run.checkpointing, try MemoryPlan(run.with { $0.checkpointing = true }, on: backend).plannedBytes <= capacity {
            fits.append("--grad-checkpointing")
        }
        if run.quantize == nil, try MemoryPlan(run.with { $0.quantize = .nf4 }, on: backend).plannedBytes <= capacity {
            fits.append("--quantize nf4")
        }
        var sequence = run.sequence / 2
        while sequence >= 2, try MemoryPlan(run.with { $0.sequence = sequence }, on: backend).plannedBytes > capacity { sequence /= 2 }
        if sequence >= 2 { fits.append("--seq-len \(sequence)") }
        let advice = fits.isEmpty ? "none of --grad-checkpointing, --quantize nf4 or a shorter --seq-len alone fits; combine them or use a larger device"
            : "these fit: " + fits.joined(separator: ", ")
        throw LowRankError(.outOfMemory, "the run needs \(gibibytes(planned.plannedBytes)) but \(backend.deviceName) has \(gibibytes(capacity)) (\(planned.description)); \(advice)",
                           context: [("device", backend.identifier)])
    }
}

extension MemoryPlan.Run {
    /// The dtype each matrix of the model in `folder` would load as: `dtype` when given, else the
    /// checkpoint's own (read from its headers), else, for a folder with no weight files,
    /// config.json's `dtype` (`torch_dtype` before transformers 5; float32 when neither is there).
    public static func weightDType(folder: String, dtype: DType?) throws -> @Sendable (String) throws -> DType {
        if let dtype { return { _ in dtype } }
        if FileIO.exists(folder + "/model.safetensors") || FileIO.exists(folder + "/" + HuggingFaceCheckpoint.indexName) {
            return try HuggingFaceCheckpoint(folder: folder).matrixDType(nil)
        }
        // transformers 5 writes `dtype`, earlier versions `torch_dtype`.
        let path = folder + "/config.json", json = try JSON.read(path, what: "the model's config")
        let field = json["dtype"] != nil ? "dtype" : "torch_dtype"
        let named = json[field]?.string ?? "float32"
        let dtypes: [String: DType] = ["float32": .f32, "bfloat16": .bf16, "float16": .f16]
        guard let declared = dtypes[named] else {
            throw LowRankError(.fileFormat, "\(field) \"\(named)\" is not float32, bfloat16 or float16; give --dtype",
                               context: [("file", path), ("field", field)])
        }
        return { _ in declared }
    }

    public func with(_ change: (inout Self) -> Void) -> Self {
        var copy = self
        change(&copy)
        return copy
    }
}
