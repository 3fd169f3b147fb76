/// A graph's schedule for chosen outputs, fixed before anything runs: the ops in dependency order,
/// the backend each runs on, and the memory of every intermediate value, with buffers reused as
/// soon as the values in them are dead. Built by `Graph.plan(outputs:)`; run as many times as
/// wanted with `run(_:)`.
public final class ExecutionPlan {
    public struct Step: Sendable, CustomStringConvertible {
        public let label: String
        /// The op the step runs; nil for a reshape, a view that runs nothing.
        public let op: Op.Kind?
        /// The backend the step runs on.
        public let backend: String
        /// Why the step runs on the fallback backend instead of the graph's, when it does.
        public let fallbackReason: String?
        let node: Int

        public var description: String {
            "\(label) (\(op?.rawValue ?? "reshape")) on \(backend)" + (fallbackReason.map { ": \($0)" } ?? "")
        }
    }

    public let steps: [Step]
    /// The bytes of intermediate values the plan allocates: the sum of its reused buffers.
    public let plannedBytes: Int
    /// The most bytes of intermediate values alive at once: the bound `plannedBytes` approaches.
    public let peakLiveBytes: Int
    /// The first step at which `peakLiveBytes` are alive, and those values (their names and
    /// bytes, largest first): what a smaller plan must shorten or share.
    public var peak: (step: Int, values: [(name: String, bytes: Int)]) {
        let step = steps.indices.first { s in lifetimes.filter { $0.steps.contains(s) }.reduce(0) { $0 + $1.bytes } == peakLiveBytes } ?? 0
        let live = lifetimes.filter { $0.steps.contains(step) }.sorted { $0.bytes > $1.bytes }
        return (step, live.map { (graph.values[$0.value].name, $0.bytes) })
    }
    /// The inputs a run must be fed.
    public let inputs: [GraphTensor]
    public let outputs: [GraphTensor]
    /// Steps that run on the fallback backend, with the reason.
    public var fallbacks: [Step] { steps.filter { $0.fallbackReason != nil } }
    /// Each step's share of the last profiled run, in seconds of device time.
    public private(set) var lastProfile: [(label: String, op: Op.Kind, seconds: Double)] = []

    let graph: Graph
    let fallback: (any Backend)?
    /// Runs every step a second time there and compares (`LOWRANK_CHECK=1`).
    let reference: (any Backend)?
    /// Sees every op step's inputs and outputs (`LOWRANK_CHECK=f64`).
    let observer: (any PlanStepObserver)?
    /// The value whose memory each value is (through reshapes and deferred values).
    private let root: [Int: Int]
    private let bufferOf: [Int: Int]
    private let bufferBytes: [Int]
    /// Each op output's bytes and the steps it lives over.
    private let lifetimes: [(value: Int, bytes: Int, steps: ClosedRange<Int>)]
    private var buffers: [any TensorStorage] = []
    private var views: [Int: Tensor] = [:]

    init(graph: Graph, outputs: [GraphTensor], fallback: (any Backend)?, reference: (any Backend)?, observer: (any PlanStepObserver)?,
         inPlace: Bool) throws {
        self.graph = graph
        self.fallback = fallback
        self.reference = reference
        self.observer = observer
        self.outputs = outputs
        for o in outputs { try graph.check(o, for: "plan") }
        let wanted = try outputs.map { try graph.resolved($0.id) }
        let order = try graph.topologicalOrder(producing: wanted)

        var root: [Int: Int] = [:]
        func rootOf(_ v: Int) throws -> Int {
            if let r = root[v] { return r }
            let id = try graph.resolved(v)
            var r = id
            if case .node(let n, _) = graph.values[id].source, case .reshape = graph.nodes[n].kind { r = try rootOf(graph.nodes[n].inputs[0]) }
            root[v] = r
            return r
        }
        var steps: [Step] = [], lastUse: [Int: Int] = [:], inputs: [Int] = []
        for (position, n) in order.enumerated() {
            let node = graph.nodes[n]
            for v in node.inputs + node.outputs {
                let r = try rootOf(v)
                lastUse[r] = position
                if case .input = graph.values[r].source, !inputs.contains(r) { inputs.append(r) }
            }
            guard case .op(let op) = node.kind else {
                steps.append(Step(label: node.label, op: nil, backend: graph.backend.identifier, fallbackReason: nil, node: n))
                continue
            }
            let reason = try graph.backend.unsupportedReason(op, inputs: node.inputs.map { graph.values[try graph.resolved($0)].descriptor })
            if let reason, fallback == nil {
                throw LowRankError(.unsupported, "\(node.label): \(graph.backend.identifier) cannot run \(op.name) (\(reason)) and the plan has no fallback backend",
                                   context: [("op", node.label)])
            }
            steps.append(Step(label: node.label, op: op.kind, backend: reason == nil ? graph.backend.identifier : fallback!.identifier,
                              fallbackReason: reason, node: n))
        }
        for v in wanted {
            let r = try rootOf(v)
            lastUse[r] = order.count
            if case .input = graph.values[r].source, !inputs.contains(r) { inputs.append(r) }
        }

        // Each op output lives from the step that writes it to the last step that reads it (or to
        // the end, for an output of the plan). Buffers are handed out greedily by size, largest
        // value first (as TFLite's arena planner does): each value takes the smallest buffer that
        // holds it and whose values' lifetimes are disjoint from its own, or a new one. Largest
        // first keeps a small long-lived value from pinning a large buffer that later large
        // values could share.
        //
        // An op output is written over one of the op's inputs (`Op.overwritableInputs`) when that
        // input is an op output of the same dtype and bytes whose last use is this op: the two are
        // then one value to the buffer assignment, living from the input's first step to the
        // output's last.
        var lifetime: [(value: Int, bytes: Int, steps: ClosedRange<Int>)] = []
        var slot: [Int: Int] = [:]
        for (position, n) in order.enumerated() {
            guard case .op(let op) = graph.nodes[n].kind else { continue }
            let node = graph.nodes[n]
            let inputRoots = try node.inputs.map(rootOf)
            var overwritten = Set<Int>()
            for (i, v) in node.outputs.enumerated() {
                let descriptor = graph.values[v].descriptor
                let end = max(position, lastUse[v] ?? position)
                let candidates = inPlace ? op.overwritableInputs[i] ?? [] : []
                let over = candidates.map { inputRoots[$0] }.first { r in
                    slot[r] != nil && lastUse[r] == position && !overwritten.contains(r) && graph.values[r].descriptor.dtype == descriptor.dtype
                        && graph.values[r].descriptor.byteCount == descriptor.byteCount
                        // and the op reads it nowhere else than as one of these candidates
                        && inputRoots.indices.allSatisfy { inputRoots[$0] != r || candidates.contains($0) }
                }
                if let r = over, let s = slot[r] {
                    overwritten.insert(r)
                    lifetime[s].steps = lifetime[s].steps.lowerBound...end
                    slot[v] = s
                    continue
                }
                slot[v] = lifetime.count
                lifetime.append((v, (descriptor.byteCount + 255) / 256 * 256, position...end))
            }
        }
        var bufferOf: [Int: Int] = [:], bufferBytes: [Int] = [], occupied: [[ClosedRange<Int>]] = []
        var bufferOfSlot: [Int] = Array(repeating: 0, count: lifetime.count)
        for (s, value) in lifetime.enumerated().sorted(by: { ($0.1.bytes, $1.1.steps.lowerBound) > ($1.1.bytes, $0.1.steps.lowerBound) }) {
            let fits = bufferBytes.indices.filter { b in
                bufferBytes[b] >= value.bytes && !occupied[b].contains { $0.overlaps(value.steps) }
            }
            if let b = fits.min(by: { (bufferBytes[$0], $0) < (bufferBytes[$1], $1) }) {
                bufferOfSlot[s] = b
                occupied[b].append(value.steps)
            } else {
                bufferOfSlot[s] = bufferBytes.count
                bufferBytes.append(value.bytes)
                occupied.append([value.steps])
            }
        }
        for (v, s) in slot { bufferOf[v] = bufferOfSlot[s] }
        let peakLive = order.indices.map { step in lifetime.filter { $0.steps.contains(step) }.reduce(0) { $0 + $1.bytes } }.max() ?? 0
        self.steps = steps
        self.root = root
        self.bufferOf = bufferOf
        self.bufferBytes = bufferBytes
        lifetimes = lifetime
        plannedBytes = bufferBytes.reduce(0, +)
        peakLiveBytes = peakLive
        self.inputs = inputs.map(graph.tensor)
    }

    deinit { graph.backend.releaseRepeats(of: ObjectIdentifier(self)) }

    /// The bytes the backend keeps for the plan's runs besides `plannedBytes` (a GPU encoder's
    /// scratch, `Backend.repeatScratchBytes`), sized without running: steps that fall back run
    /// elsewhere and take none.
    public func repeatScratchBytes() throws -> Int {
        let descriptors = { (ids: [Int]) in try ids.map { self.graph.values[try self.graph.resolved($0)].descriptor } }
        let ops = try steps.filter { $0.fallbackReason == nil }.compactMap { step -> (op: Op, inputs: [TensorDescriptor], outputs: [TensorDescriptor])? in
            let node = graph.nodes[step.node]
            guard case .op(let op) = node.kind else { return nil }
            return (op, try descriptors(node.inputs), try descriptors(node.outputs))
        }
        return try graph.backend.repeatScratchBytes(ops)
    }

    /// Runs every step on `feeds` (a tensor on the graph's backend for each of `inputs`) and returns
    /// the outputs. They live in the plan's buffers: valid until the next run, which overwrites them.
    /// `seed` picks this run's dropout masks (the same in an op's forward and backward); with
    /// `profile`, each step's device time is measured (synchronizing after each) into `lastProfile`;
    /// `watcher` sees this run's steps as the plan's own observer does (and may stop the run by throwing).
    /// With `replay`, the caller feeds the same few tensors again and again (`CausalLMPlan`'s input
    /// slots): a GPU then records the run's commands once per set of them and submits them again on
    /// later runs, when nothing watches, checks or profiles the run and no step falls back.
    /// `then` ends the run with an optimizer step on its outputs in the same repeat, so that the
    /// recording holds it too and a training step is one submission.
    public func run(_ feeds: [GraphTensor: Tensor], seed: UInt32 = 0, profile: Bool = false,
                    watcher: (any PlanStepObserver)? = nil, replay: Bool = false, then epilogue: PlanEpilogue? = nil) throws -> [Tensor] {
        var fed: [Int: Tensor] = [:]
        for input in inputs {
            let name = graph.values[input.id].name
            guard let t = feeds[input] else {
                throw LowRankError(.invalidArgument, "input \"\(name)\" was not fed", context: [("input", name)])
            }
            guard t.descriptor == input.descriptor else {
                throw LowRankError(.shapeMismatch, "input \"\(name)\" is \(input.descriptor) but was fed \(t.descriptor)", context: [("input", name)])
            }
            guard t.backend === graph.backend else {
                throw LowRankError(.invalidArgument, "input \"\(name)\" was fed a tensor on \(t.backend.identifier), not the graph's \(graph.backend.identifier)",
                                   context: [("input", name)])
            }
            fed[input.id] = t
        }
        if buffers.isEmpty { buffers = try bufferBytes.map { try graph.backend.makeStorage(byteCount: $0) } }
        var profiled: [(String, Op.Kind, Double)] = []
        let observers = [observer, watcher].compactMap { $0 }
        for observer in observers { observer.runWillStart() }
        let replayable = replay && observers.isEmpty && !profile && reference == nil && fallbacks.isEmpty
        let repeated = replayable ? ReplayableRepeat(inputs: inputs.map { fed[$0.id]! }, seed: seed, adamW: epilogue?.adamW) : nil
        try graph.backend.run(repeating: ObjectIdentifier(self), replayable: repeated) {
            for step in steps {
                let node = graph.nodes[step.node]
                guard case .op(let graphOp) = node.kind else { continue }
                let op = graphOp.reseeded(seed)
                let inputs = try node.inputs.map { try tensor($0, fed) }
                let outputs = try node.outputs.map { try tensor($0, fed) }
                let execute = {
                    do {
                        if step.fallbackReason != nil {
                            try self.runOnFallback(op, inputs, outputs)
                        } else {
                            try self.graph.backend.run(graphOp, reseededBy: seed, inputs: inputs, outputs: outputs)
                        }
                    } catch let error as LowRankError {
                        throw error.adding("node", node.label)
                    }
                }
                for observer in observers { try observer.stepWillRun(step, op, inputs: inputs, outputs: outputs) }
                // Copied before the step runs: it may write its outputs over its inputs.
                let referenceInputs = step.fallbackReason == nil ? try reference.map { r in try inputs.map { try $0.copy(to: r) } } : nil
                if profile {
                    profiled.append((step.label, op.kind, try graph.backend.deviceSeconds(execute)))
                } else {
                    try execute()
                }
                for observer in observers { try observer.stepDidRun(step, op, outputs: outputs) }
                if let reference, let referenceInputs { try crossCheck(step, op, referenceInputs, outputs, on: reference) }
            }
            if let epilogue { try epilogue.encode(try outputs.map { try tensor($0.id, fed) }) }
        }
        for observer in observers { try observer.runDidFinish() }
        if profile { lastProfile = profiled }
        return try outputs.map { try tensor($0.id, fed) }
    }

    /// The tensor holding value `id` in this run: a feed, a parameter, a constant, or a view of
    /// its buffer.
    private func tensor(_ id: Int, _ fed: [Int: Tensor]) throws -> Tensor {
        let r = root[id] ?? id
        let value = graph.values[try graph.resolved(id)]
        let base: Tensor
        switch graph.values[r].source {
        case .input: base = fed[r]!
        case .parameter(let t, _), .constant(let t): base = t
        default:
            if let view = views[id] { return view }
            let view = Tensor(viewing: buffers[bufferOf[r]!], as: value.descriptor, on: graph.backend)
            views[id] = view
            return view
        }
        return base.shape == value.descriptor.shape ? base : try base.reshaped(value.descriptor.shape)
    }

    /// Runs a step the graph's backend cannot on the fallback backend, moving its inputs there and
    /// its results back.
    private func runOnFallback(_ op: Op, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let results = try Self.run(op, copying: inputs, like: outputs, on: fallback!)
        for (result, output) in zip(results, outputs) where output.byteCount > 0 {
            try result.bytes().withUnsafeBytes { try graph.backend.write($0, to: output.storage, offset: 0) }
        }
    }

    /// Runs the step again on `reference` from copies of its inputs there and stops the run when an
    /// output differs by more than its dtype's bound, relative to the largest reference magnitude.
    private func crossCheck(_ step: Step, _ op: Op, _ inputs: [Tensor], _ outputs: [Tensor], on reference: any Backend) throws {
        let expected = try outputs.map { try Tensor(empty: $0.shape, dtype: $0.dtype, on: reference) }
        try reference.run(op, inputs: inputs, outputs: expected)
        for (i, (got, want)) in zip(outputs, expected).enumerated() where !op.unspecifiedOutputs.contains(i) {
            let (a, b) = (try got.floats(), try want.floats())
            let scale = b.reduce(Float(0)) { max($0, abs($1)) }
            var worst: Float = 0
            for (x, y) in zip(a, b) {
                let d = x == y ? 0 : abs(x - y)
                worst = max(worst, d.isNaN ? .infinity : d)
            }
            let error = scale > 0 ? worst / scale : worst
            let bound = Self.crossCheckBound(got.dtype)
            guard error <= bound else {
                throw LowRankError(.numerical,
                                   "LOWRANK_CHECK: \(step.label) (\(op.name)) on \(graph.backend.identifier) disagrees with \(reference.identifier): output \(i) is off by \(error) relative to its largest value (bound \(bound))",
                                   context: [("op", step.label), ("inputs", inputs.map(\.descriptor.description).joined(separator: ", "))])
            }
        }
    }

    /// Runs `op` on `backend` from copies of `inputs`, into new tensors shaped as `outputs`.
    private static func run(_ op: Op, copying inputs: [Tensor], like outputs: [Tensor], on backend: any Backend) throws -> [Tensor] {
        let moved = try inputs.map { try $0.copy(to: backend) }
        let results = try outputs.map { try Tensor(empty: $0.shape, dtype: $0.dtype, on: backend) }
        try backend.run(op, inputs: moved, outputs: results)
        return results
    }

    /// f32 results may differ by summation order; 16-bit and quantized ones by one rounding step.
    static func crossCheckBound(_ dtype: DType) -> Float {
        switch dtype {
        case .f32: 1e-4
        case .f16: 2e-3
        default: 1e-2
        }
    }
}

extension Graph {
    /// The plan that computes `outputs`. Ops the graph's backend cannot run go to `fallback`
    /// (an error names them when there is none); with `reference`, every step is checked against it;
    /// `observer` sees every step's inputs and outputs. With `inPlace`, an op's output is written
    /// over an input that dies at that op where the op allows it (`Op.overwritableInputs`); without,
    /// every output has memory of its own.
    public func plan(outputs: [GraphTensor], fallback: (any Backend)? = nil, reference: (any Backend)? = nil,
                     observer: (any PlanStepObserver)? = nil, inPlace: Bool = true) throws -> ExecutionPlan {
        try ExecutionPlan(graph: self, outputs: outputs, fallback: fallback, reference: reference, observer: observer, inPlace: inPlace)
    }
}

/// An optimizer step that ends a plan's run (`ExecutionPlan.run(_:seed:replay:then:)`), encoded
/// in the run's repeat after its last op.
public struct PlanEpilogue {
    /// The AdamW step's values, which differ from run to run, and the optimizer taking it.
    public var adamW: (options: MultiTensorAdamWOptions, optimizer: ObjectIdentifier)
    /// Encodes the step, given the run's outputs.
    public var encode: (_ outputs: [Tensor]) throws -> Void

    public init(adamW: (options: MultiTensorAdamWOptions, optimizer: ObjectIdentifier), encode: @escaping (_ outputs: [Tensor]) throws -> Void) {
        (self.adamW, self.encode) = (adamW, encode)
    }
}
