/// A frozen linear layer with any number of named LoRA adapters, as PEFT's `LoraLayer` holds them:
/// `y = x·Wᵀ + b + Σ s_i·dropout_i(x)·A_iᵀ·B_iᵀ` over the adapters that are enabled and not merged.
/// The first active adapter rides in the base matmul's epilogue; each further one adds its term.
public final class LoRALinear {
    public struct Entry {
        public let name: String
        public let adapter: LoRAAdapter
        public internal(set) var enabled: Bool
        /// Folded into the weight by `merge`, so it no longer runs separately.
        public internal(set) var merged: Bool
    }

    /// What backward needs from one forward pass.
    public struct Activations {
        let x: Tensor
        let seed: UInt32
        /// `u = dropout(x)·Aᵀ` per adapter that ran, in the order they ran.
        let branches: [(name: String, u: Tensor)]
    }

    /// One adapter's gradients.
    public struct Gradients {
        public let a: Tensor
        public let b: Tensor
    }

    public let weight: Tensor
    public let bias: Tensor?
    public private(set) var entries: [Entry] = []

    public init(weight: Tensor, bias: Tensor? = nil) throws {
        guard weight.shape.rank == 2 else {
            throw LowRankError(.shapeMismatch, "a linear layer's weight must be [d_out, d_in], got \(weight.shape)")
        }
        if let bias, bias.shape != Shape([weight.shape[0]]) || bias.backend !== weight.backend {
            throw LowRankError(.shapeMismatch, "the bias must be [\(weight.shape[0])] on the weight's backend, got \(bias.descriptor)")
        }
        self.weight = weight
        self.bias = bias
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// Adds `adapter` (enabled) under `name`.
    public func add(_ name: String, _ adapter: LoRAAdapter) throws {
        guard !entries.contains(where: { $0.name == name }) else {
            throw LowRankError(.invalidArgument, "the layer already has an adapter named \"\(name)\"")
        }
        guard adapter.a.shape == Shape([adapter.config.rank, inFeatures]), adapter.b.shape == Shape([outFeatures, adapter.config.rank]) else {
            throw LowRankError(.shapeMismatch, "adapter \"\(name)\" has A \(adapter.a.shape) and B \(adapter.b.shape), which do not fit W \(weight.shape)")
        }
        guard adapter.a.backend === weight.backend, adapter.b.backend === weight.backend else {
            throw LowRankError(.invalidArgument, "adapter \"\(name)\" lives on another backend than the weight; copy it first")
        }
        entries.append(Entry(name: name, adapter: adapter, enabled: true, merged: false))
    }

    /// Enables or disables adapter `name`; a disabled adapter is skipped and gets no gradient.
    public func setEnabled(_ name: String, _ enabled: Bool) throws {
        let i = try index(of: name)
        guard !entries[i].merged else {
            throw LowRankError(.invalidArgument, "adapter \"\(name)\" is merged into the weight; unmerge it before enabling or disabling it")
        }
        entries[i].enabled = enabled
    }

    /// `W += s·B·A` for adapter `name`, which then no longer runs separately.
    public func merge(_ name: String) throws {
        let i = try index(of: name)
        guard !entries[i].merged else { throw LowRankError(.invalidArgument, "adapter \"\(name)\" is already merged") }
        try entries[i].adapter.merge(into: weight)
        entries[i].merged = true
    }

    /// `W −= s·B·A`, undoing `merge(name)`.
    public func unmerge(_ name: String) throws {
        let i = try index(of: name)
        guard entries[i].merged else { throw LowRankError(.invalidArgument, "adapter \"\(name)\" is not merged") }
        try entries[i].adapter.unmerge(from: weight)
        entries[i].merged = false
    }

    private func index(of name: String) throws -> Int {
        guard let i = entries.firstIndex(where: { $0.name == name }) else {
            throw LowRankError(.invalidArgument, "the layer has no adapter named \"\(name)\"",
                               context: [("adapters", entries.map(\.name).joined(separator: ", "))])
        }
        return i
    }

    private var active: [Entry] { entries.filter { $0.enabled && !$0.merged } }

    /// The adapter at position `i` draws its own dropout mask from the step's seed.
    private func options(_ entry: Entry, seed: UInt32, outputDType: DType?) -> LoRAOptions {
        let position = UInt32(entries.firstIndex { $0.name == entry.name }!)
        return entry.adapter.options(seed: seed &+ position &* 0x9E37_79B9, hasBias: bias != nil, outputDType: outputDType)
    }

    /// `y` for `x [T, d_in]`; `seed` picks this step's dropout masks.
    public func forward(_ x: Tensor, seed: UInt32 = 0, outputDType: DType? = nil) throws -> (y: Tensor, activations: Activations) {
        let active = self.active
        guard let first = active.first else {
            let y = try Ops.matmul(x, weight, transposeB: true, bias: bias, outputDType: outputDType)
            return (y, Activations(x: x, seed: seed, branches: []))
        }
        let (y, u) = try Ops.loraForward(x: x, weight: weight, bias: bias, a: first.adapter.a, b: first.adapter.b,
                                         options: options(first, seed: seed, outputDType: outputDType))
        var branches = [(first.name, u)]
        for entry in active.dropFirst() {
            let u = try Ops.loraForward(x: x, weight: weight, a: entry.adapter.a, b: entry.adapter.b,
                                        options: options(entry, seed: seed, outputDType: outputDType), accumulatingInto: y)
            branches.append((entry.name, u))
        }
        return (y, Activations(x: x, seed: seed, branches: branches))
    }

    /// `dx` and each adapter's gradients for `G = ∂L/∂y` of the forward pass that gave `activations`.
    public func backward(_ g: Tensor, _ activations: Activations, outputDType: DType? = nil) throws -> (dx: Tensor, gradients: [String: Gradients]) {
        let x = activations.x
        guard let first = activations.branches.first else {
            return (try Ops.matmul(g, weight, outputDType: outputDType ?? x.dtype), [:])
        }
        var gradients: [String: Gradients] = [:]
        let entry = { (name: String) in try self.entries[self.index(of: name)] }
        let head = try entry(first.name)
        let (dx, dA, dB) = try Ops.loraBackward(gradOutput: g, x: x, weight: weight, a: head.adapter.a, b: head.adapter.b, u: first.u,
                                                options: options(head, seed: activations.seed, outputDType: outputDType))
        gradients[first.name] = Gradients(a: dA, b: dB)
        for (name, u) in activations.branches.dropFirst() {
            let e = try entry(name)
            let (dA, dB) = try Ops.loraBackward(gradOutput: g, x: x, weight: weight, a: e.adapter.a, b: e.adapter.b, u: u,
                                                options: options(e, seed: activations.seed, outputDType: outputDType), accumulatingInto: dx)
            gradients[name] = Gradients(a: dA, b: dB)
        }
        return (dx, gradients)
    }
}
