/// AdamW over a set of named parameters, on their backend: f32 moments, decoupled weight decay,
/// bias correction (`Ops.adamW`), a learning-rate schedule, and optional clipping of the global
/// gradient norm as `torch.nn.utils.clip_grad_norm_` does it, all in one op
/// (`Ops.multiTensorAdamW`) without reading anything back, so a step's kernels join the command
/// buffer of the graph that made the gradients.
public final class AdamWOptimizer {
    public struct Settings: Hashable, Sendable {
        public var learningRate: Double
        public var beta1: Double
        public var beta2: Double
        public var epsilon: Double
        public var weightDecay: Double
        public var schedule: LearningRateSchedule
        /// Scales all gradients together so that their global L2 norm is at most this; nil or 0: no
        /// clipping (Hugging Face's `max_grad_norm = 0`).
        public var maxGradientNorm: Float?

        /// PyTorch's defaults.
        public init(learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0.01,
                    schedule: LearningRateSchedule = .constant(), maxGradientNorm: Float? = nil) {
            (self.learningRate, self.beta1, self.beta2, self.epsilon, self.weightDecay) = (learningRate, beta1, beta2, epsilon, weightDecay)
            self.schedule = schedule
            self.maxGradientNorm = maxGradientNorm
        }
    }

    public let parameters: [(name: String, tensor: Tensor)]
    public let settings: Settings
    /// Each parameter's learning rate as a multiple of the schedule's (LoRA+ gives B a larger one).
    public let learningRateFactors: [Double]
    /// Optimizer steps taken.
    public private(set) var step = 0
    private let firstMoments: [Tensor]
    private let secondMoments: [Tensor]

    /// `learningRateFactors` (one per parameter, positive; nil: all 1) scale the learning rate of
    /// each, as PyTorch's parameter groups with their own `lr`.
    public init(parameters: [(name: String, tensor: Tensor)], settings: Settings, learningRateFactors: [Double]? = nil) throws {
        try settings.schedule.validate()
        if let maxNorm = settings.maxGradientNorm, !(maxNorm.isFinite && maxNorm >= 0) {
            throw LowRankError(.invalidArgument, "the largest gradient norm must be 0 (no clipping) or positive and finite, got \(maxNorm)")
        }
        try AdamWOptions(settings, learningRate: settings.learningRate, step: 1).validate()
        guard Set(parameters.map(\.name)).count == parameters.count else {
            throw LowRankError(.invalidArgument, "every parameter needs its own name")
        }
        let factors = learningRateFactors ?? Array(repeating: 1, count: parameters.count)
        guard factors.count == parameters.count, factors.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw LowRankError(.invalidArgument, "learning-rate factors must be positive and finite, one per parameter: \(parameters.count) parameters, factors \(factors)")
        }
        self.parameters = parameters
        self.settings = settings
        self.learningRateFactors = factors
        firstMoments = try parameters.map { try Tensor.zeros($0.tensor.shape, on: $0.tensor.backend) }
        secondMoments = try parameters.map { try Tensor.zeros($0.tensor.shape, on: $0.tensor.backend) }
    }

    deinit { parameters.first?.tensor.backend.releaseRepeats(of: ObjectIdentifier(self)) }

    /// The rate the next step will use.
    public var learningRate: Double { settings.learningRate * settings.schedule.multiplier(afterSteps: step) }

    /// Updates every parameter from its gradient (same order as `parameters`). With `loss`, the
    /// step is queued without the loss being read: on the device, a non-finite loss leaves the
    /// parameters and moments as they are, for this step and every one after, until
    /// `rewind(to:)` (the host counts the steps either way).
    public func step(gradients: [Tensor], unlessNonFinite loss: Tensor? = nil) throws {
        let options = nextStep(guarded: loss != nil)
        let update = { try self.encode(options, gradients: gradients, unlessNonFinite: loss) }
        // Every step the same op on the same tensors: the backend keeps its scratch between them.
        if let backend = parameters.first?.tensor.backend { try backend.run(repeating: ObjectIdentifier(self), replayable: nil, update) } else { try update() }
        step += 1
    }

    /// The next step, guarded by a loss or not, as the end of a plan's run
    /// (`ExecutionPlan.run(_:seed:replay:then:)`): one repeat with the run, which a GPU records and
    /// replays as one submission, the step's values (its rate, bias corrections) in its step
    /// scalars. `encode` gets the run's outputs and picks the gradients and the loss from them;
    /// once the run is issued, `stepTaken()` counts the step.
    public func nextStep(guarded: Bool, encode: @escaping (_ outputs: [Tensor], _ step: (_ gradients: [Tensor], _ loss: Tensor?) throws -> Void) throws -> Void) -> PlanEpilogue {
        let options = nextStep(guarded: guarded)
        return PlanEpilogue(adamW: (options, ObjectIdentifier(self))) { outputs in
            try encode(outputs) { try self.encode(options, gradients: $0, unlessNonFinite: $1) }
        }
    }

    /// Counts a step that `nextStep(guarded:encode:)` ended a plan's run with.
    public func stepTaken() { step += 1 }

    private func nextStep(guarded: Bool) -> MultiTensorAdamWOptions {
        MultiTensorAdamWOptions(adamW: AdamWOptions(settings, learningRate: learningRate, step: step + 1), learningRateFactors: learningRateFactors,
                                maxGradientNorm: settings.maxGradientNorm.flatMap { $0 > 0 ? $0 : nil }, guarded: guarded)
    }

    /// Encodes the step `options` describes, without counting it.
    private func encode(_ options: MultiTensorAdamWOptions, gradients: [Tensor], unlessNonFinite loss: Tensor?) throws {
        guard gradients.count == parameters.count else {
            throw LowRankError(.invalidArgument, "\(parameters.count) parameters but \(gradients.count) gradients")
        }
        for (p, g) in zip(parameters, gradients) where g.shape != p.tensor.shape {
            throw LowRankError(.shapeMismatch, "the gradient of \"\(p.name)\" is \(g.shape), the parameter \(p.tensor.shape)", context: [("parameter", p.name)])
        }
        precondition((loss != nil) == options.guarded, "a guarded step takes its loss")
        do {
            // One op for every tensor: a few dispatches a step however many tensors the adapter has.
            let flags = try loss.map { (loss: $0, health: try healthFlag()) }
            try Ops.multiTensorAdamW(params: parameters.map(\.tensor), grads: gradients, m: firstMoments, v: secondMoments, options: options, guard: flags)
        } catch let error as LowRankError {
            // The op names a tensor by its index.
            guard let i = error.context.last(where: { $0.0 == "tensor" }).flatMap({ Int($0.1) }) else { throw error }
            throw error.adding("parameter", parameters[i].name)
        }
    }

    /// 1 until a guarded step sees a non-finite loss; made on first use.
    private var health: Tensor?

    private func healthFlag() throws -> Tensor {
        if let health { return health }
        let flag = try Tensor([1], shape: [1], on: parameters[0].tensor.backend)
        health = flag
        return flag
    }

    /// After a guarded step's loss was found not finite: the device took none of the steps from
    /// it on, so the count goes back to `step` (the steps taken before it) and guarded steps
    /// update again.
    public func rewind(to step: Int) throws {
        precondition(step <= self.step, "rewinding forward")
        self.step = step
        try health?.assign([1])
    }

    /// Writes the moments (`<name>.exp_avg`, `<name>.exp_avg_sq`, as PyTorch names them) and the
    /// step count to a safetensors file, atomically.
    public func save(to path: String) throws {
        let tensors = parameters.indices.flatMap { i in
            [("\(parameters[i].name).exp_avg", firstMoments[i]), ("\(parameters[i].name).exp_avg_sq", secondMoments[i])]
        }
        try SafetensorsFile.write(tensors, metadata: ["step": "\(step)", "optimizer": "adamw"], to: path)
    }

    /// Restores what `save` wrote for the same parameters.
    public func load(from path: String) throws {
        let file = try SafetensorsFile(path: path)
        guard file.metadata["optimizer"] == "adamw", let saved = file.metadata["step"].flatMap(Int.init), saved >= 0 else {
            throw LowRankError(.fileFormat, "not an AdamW state: its metadata lacks optimizer \"adamw\" and a step count", context: [("file", path)])
        }
        let names = parameters.flatMap { p in ["exp_avg", "exp_avg_sq"].map { (name: "\(p.name).\($0)", shape: p.tensor.shape) } }
        for (name, shape) in names {
            let entry = try file.entry(name)
            guard entry.shape == shape, entry.dtype == .f32 else {
                throw LowRankError(.shapeMismatch, "\(name) is \(entry.dtype)\(entry.shape); the parameter needs f32\(shape)",
                                   context: [("file", path), ("tensor", name)])
            }
        }
        // Into the moments' own tensors, which a recorded step binds (`ExecutionPlan.run(then:)`).
        for (moment, name) in zip(zip(firstMoments, secondMoments).flatMap { [$0, $1] }, names.map(\.name)) {
            try file.withBytes(name) { try moment.backend.write($0, to: moment.storage, offset: 0) }
        }
        step = saved
    }
}

extension AdamWOptions {
    init(_ s: AdamWOptimizer.Settings, learningRate: Double, step: Int) {
        self.init(learningRate: learningRate, beta1: s.beta1, beta2: s.beta2, epsilon: s.epsilon, weightDecay: s.weightDecay, step: step)
    }

    /// Fails, saying which, when an option is out of range.
    func validate() throws {
        _ = try Op.adamW(self).outputs(for: Array(repeating: TensorDescriptor([1], .f32), count: 4))
    }
}
