import Synchronization

/// A value of one graph, known by shape and dtype until the graph runs: an input fed at each run,
/// a parameter bound to a tensor, or an output of an op.
public struct GraphTensor: Hashable, Sendable, CustomStringConvertible {
    let graphID: Int
    let id: Int
    public let descriptor: TensorDescriptor

    public var shape: Shape { descriptor.shape }
    public var dtype: DType { descriptor.dtype }
    public var description: String { "%\(id) \(descriptor)" }
}

/// Ops composed into a forward computation on one backend, from which `gradients(of:for:)` derives
/// the backward computation and `plan(outputs:)` a schedule with its memory known before it runs.
/// Every mistake a graph can hold (shapes that do not fit, a cycle, a gradient asked of a frozen
/// tensor, a tensor of another backend) is raised while it is built, naming the op.
public final class Graph {
    private static let nextIdentity = Atomic<Int>(0)

    let identity: Int
    /// Where parameters live and the graph runs.
    public let backend: any Backend

    struct Value {
        var descriptor: TensorDescriptor
        var name: String
        var source: Source
    }

    enum Source {
        case input
        case parameter(Tensor, trainable: Bool)
        /// Made by the graph itself (the ones a gradient sums with).
        case constant(Tensor)
        case node(Int, output: Int)
        /// Declared before the value it stands for exists; `define` names that value.
        case deferred(Int?)
    }

    enum NodeKind {
        case op(Op)
        /// The input's memory seen with another shape.
        case reshape
    }

    struct Node {
        var kind: NodeKind
        var inputs: [Int]
        var outputs: [Int]
        /// What errors, plans and profiles call the node: the op's name, or the caller's label.
        var label: String
        /// The checkpointed region it was built in, recomputed in backward instead of kept.
        var region: Int?
    }

    var values: [Value] = []
    var nodes: [Node] = []
    private var currentRegion: Int?
    private var regionCount = 0
    private var ones: [Shape: Int] = [:]

    public init(backend: any Backend) {
        self.backend = backend
        identity = Self.nextIdentity.add(1, ordering: .relaxed).newValue
    }

    // MARK: Values

    /// A tensor fed to every run (`ExecutionPlan.run`).
    public func input(_ name: String, _ shape: Shape, dtype: DType = .f32) throws -> GraphTensor {
        guard !values.contains(where: { if case .input = $0.source { $0.name == name } else { false } }) else {
            throw LowRankError(.invalidArgument, "the graph already has an input named \"\(name)\"")
        }
        return add(Value(descriptor: TensorDescriptor(shape, dtype), name: name, source: .input))
    }

    /// A tensor the graph reads in place at every run; a trainable one may be asked for its gradient.
    public func parameter(_ name: String, _ tensor: Tensor, trainable: Bool = false) throws -> GraphTensor {
        guard tensor.backend === backend else {
            throw LowRankError(.invalidArgument,
                               "parameter \"\(name)\" lives on \(tensor.backend.identifier), another backend than the graph's \(backend.identifier); copy it first",
                               context: [("parameter", name)])
        }
        guard !trainable || tensor.dtype.isFloatingPoint else {
            throw LowRankError(.dtypeMismatch, "parameter \"\(name)\" is \(tensor.dtype): only f32, f16 and bf16 tensors can be trained",
                               context: [("parameter", name)])
        }
        return add(Value(descriptor: tensor.descriptor, name: name, source: .parameter(tensor, trainable: trainable)))
    }

    /// A value to be named later with `define(_:as:)`, for graphs built out of order.
    public func deferred(_ name: String, _ shape: Shape, dtype: DType = .f32) -> GraphTensor {
        add(Value(descriptor: TensorDescriptor(shape, dtype), name: name, source: .deferred(nil)))
    }

    /// Names the value `placeholder` stands for. Fails, naming the ops, when `value` is computed from
    /// `placeholder` itself (a cycle).
    public func define(_ placeholder: GraphTensor, as value: GraphTensor) throws {
        try check(placeholder, for: "define")
        try check(value, for: "define")
        let name = values[placeholder.id].name
        guard case .deferred(nil) = values[placeholder.id].source else {
            throw LowRankError(.invalidArgument, "\"\(name)\" is not an undefined deferred value")
        }
        guard value.descriptor == placeholder.descriptor else {
            throw LowRankError(.shapeMismatch, "deferred \"\(name)\" is \(placeholder.descriptor) but was defined as \(value.descriptor)")
        }
        if let path = dependencyPath(from: value.id, to: placeholder.id) {
            let ops = path.map { nodes[$0].label }.joined(separator: " <- ")
            throw LowRankError(.invalidArgument, "defining \"\(name)\" would make a cycle through \(ops)",
                               context: [("cycle", ops)])
        }
        values[placeholder.id].source = .deferred(value.id)
    }

    /// The nodes through which `value` depends on `target`, or nil when it does not.
    private func dependencyPath(from value: Int, to target: Int) -> [Int]? {
        var visited = Set<Int>()
        func search(_ v: Int) -> [Int]? {
            if v == target { return [] }
            guard visited.insert(v).inserted else { return nil }
            switch values[v].source {
            case .deferred(let next?): return search(next)
            case .node(let n, _):
                for input in nodes[n].inputs {
                    if let path = search(input) { return [n] + path }
                }
                return nil
            default: return nil
            }
        }
        return search(value)
    }

    private func add(_ value: Value) -> GraphTensor {
        values.append(value)
        return tensor(values.count - 1)
    }

    func tensor(_ id: Int) -> GraphTensor { GraphTensor(graphID: identity, id: id, descriptor: values[id].descriptor) }

    func check(_ t: GraphTensor, for what: String) throws {
        guard t.graphID == identity, values.indices.contains(t.id) else {
            throw LowRankError(.invalidArgument, "\(what): \(t) belongs to another graph", context: [("op", what)])
        }
    }

    /// The value `id` stands for once deferred values are followed.
    func resolved(_ id: Int) throws -> Int {
        switch values[id].source {
        case .deferred(let next?): return try resolved(next)
        case .deferred(nil):
            throw LowRankError(.invalidArgument, "deferred value \"\(values[id].name)\" was used but never defined")
        default: return id
        }
    }

    /// An f32 tensor of ones, made once per shape.
    func onesConstant(_ shape: Shape) throws -> GraphTensor {
        if let id = ones[shape] { return tensor(id) }
        let t = try Tensor([Float](repeating: 1, count: shape.count), shape: shape, on: backend)
        let value = add(Value(descriptor: t.descriptor, name: "ones\(shape)", source: .constant(t)))
        ones[shape] = value.id
        return value
    }

    // MARK: Ops

    /// Adds `op` over `inputs` and returns its outputs. Ops that write in place (accumulating
    /// products, AdamW) are not graph ops: a graph composes them with `add`, and the optimizer
    /// steps outside it.
    @discardableResult
    public func apply(_ op: Op, _ inputs: [GraphTensor], label: String? = nil) throws -> [GraphTensor] {
        let label = label ?? op.name
        for t in inputs { try check(t, for: label) }
        if let reason = Self.inPlaceReason(op) {
            throw LowRankError(.unsupported, "\(label): \(reason)", context: [("op", label)])
        }
        let descriptors: [TensorDescriptor]
        do {
            descriptors = try op.outputs(for: inputs.map(\.descriptor))
        } catch let error as LowRankError {
            throw error.adding("node", label)
        }
        return appendNode(.op(op), inputs: inputs.map(\.id), outputs: descriptors, label: label)
    }

    /// `x` with another shape of the same element count, sharing its memory.
    public func reshape(_ x: GraphTensor, _ shape: Shape, label: String = "reshape") throws -> GraphTensor {
        try check(x, for: label)
        guard shape.count == x.shape.count else {
            throw LowRankError(.shapeMismatch, "\(label): cannot reshape \(x.shape) to \(shape): element counts differ", context: [("op", label)])
        }
        guard !x.dtype.isQuantized else {
            throw LowRankError(.unsupported, "\(label): a \(x.dtype) tensor keeps its shape", context: [("op", label)])
        }
        return appendNode(.reshape, inputs: [x.id], outputs: [TensorDescriptor(shape, x.dtype)], label: label)[0]
    }

    /// Builds `body`'s ops as one checkpointed region: backward recomputes the values that do not
    /// leave the region instead of keeping them from forward (gradient checkpointing).
    public func checkpointed<T>(_ body: () throws -> T) rethrows -> T {
        guard currentRegion == nil else { return try body() }  // a nested region is part of the outer one
        regionCount += 1
        currentRegion = regionCount
        defer { currentRegion = nil }
        return try body()
    }

    func appendNode(_ kind: NodeKind, inputs: [Int], outputs: [TensorDescriptor], label: String, region: Int?? = nil) -> [GraphTensor] {
        let index = nodes.count
        let ids = outputs.enumerated().map { i, d in add(Value(descriptor: d, name: "\(label).\(i)", source: .node(index, output: i))).id }
        nodes.append(Node(kind: kind, inputs: inputs, outputs: ids, label: label, region: region ?? currentRegion))
        return ids.map(tensor)
    }

    private static func inPlaceReason(_ op: Op) -> String? {
        switch op {
        case .matmul(let o) where o.accumulate: "an accumulating matmul writes in place; compose with add instead"
        case .loraForward(let o) where o.accumulate, .loraBackward(let o) where o.accumulate:
            "an accumulating adapter writes in place; give each adapter its own lora_forward and add them"
        case .adamW, .multiTensorAdamW: "AdamW updates its tensors in place; step the optimizer after the graph runs"
        default: nil
        }
    }
}
