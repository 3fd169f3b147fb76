/// Reverse-mode differentiation: the backward ops appended for the gradients asked for.
extension Graph {
    /// The gradients of `loss` (one value) with respect to `parameters`, each a trainable parameter
    /// of this graph, in their order. The backward ops join the graph; frozen tensors get none.
    /// With `checkpointing`, values made inside `checkpointed` regions and used only there are
    /// recomputed from the region's inputs when backward first needs them, not kept from forward.
    public func gradients(of loss: GraphTensor, for parameters: [GraphTensor], checkpointing: Bool = true) throws -> [GraphTensor] {
        try check(loss, for: "gradients")
        guard loss.shape.count == 1, loss.dtype.isFloatingPoint else {
            throw LowRankError(.shapeMismatch, "gradients: the loss must be one floating-point value, got \(loss.descriptor)")
        }
        var wanted = Set<Int>()
        for p in parameters {
            try check(p, for: "gradients")
            let id = try resolved(p.id)
            guard case .parameter(_, let trainable) = values[id].source else {
                throw LowRankError(.invalidArgument, "gradients: \"\(values[id].name)\" is not a parameter; only parameters have gradients")
            }
            guard trainable else {
                throw LowRankError(.invalidArgument,
                                   "gradients: a gradient was requested for \"\(values[id].name)\", which is frozen; declare it with trainable: true",
                                   context: [("parameter", values[id].name)])
            }
            wanted.insert(id)
        }
        let lossID = try resolved(loss.id)
        let order = try topologicalOrder(producing: [lossID])

        // Values that carry a gradient: the wanted parameters and what ops compute from them.
        var carries = wanted
        for n in order {
            let inputs = try nodes[n].inputs.map(resolved)
            if inputs.contains(where: carries.contains) { carries.formUnion(nodes[n].outputs) }
        }
        var replay = try Replay(graph: self, enabled: checkpointing, order: order)
        var grads: [Int: GraphTensor] = [lossID: try onesConstant(loss.shape)]
        for n in order.reversed() {
            let node = nodes[n]
            let outputGrads = node.outputs.map { grads[$0] }
            guard outputGrads.contains(where: { $0 != nil }) else { continue }
            let inputs = try node.inputs.map(resolved)
            let needs = inputs.map { carries.contains($0) }
            guard needs.contains(true) else { continue }
            // What the first input has gathered from its later consumers; nil after a rule took it in.
            var gathered = needs[0] ? grads[inputs[0]] : nil
            let inputGrads = try inputGradients(node, outputGrads, needs: needs, gathered: &gathered, forward: { try replay.value($0) })
            for (i, input) in inputs.enumerated() where needs[i] {
                guard let g = inputGrads[i] else {
                    throw LowRankError(.unsupported, "\(node.label): \(node.kind.name) has no gradient for its input \(i) (\(values[input].name)), through which a requested gradient flows",
                                       context: [("op", node.label)])
                }
                let included = i == 0 && gathered == nil
                grads[input] = try grads[input].map { included ? g : try apply(.add, [$0, g], label: "\(node.label).grad_sum")[0] } ?? g
            }
        }
        return try parameters.map { p in
            let id = try resolved(p.id)
            guard let g = grads[id] else {
                throw LowRankError(.invalidArgument, "gradients: the loss does not depend on \"\(values[id].name)\"")
            }
            return g
        }
    }

    /// The nodes the values `targets` need, dependencies first; ties keep build order, so the
    /// order is the same on every call.
    func topologicalOrder(producing targets: [Int]) throws -> [Int] {
        var needed = Set<Int>(), stack = targets
        while let v = stack.popLast() {
            guard case .node(let n, _) = values[try resolved(v)].source, needed.insert(n).inserted else { continue }
            stack.append(contentsOf: nodes[n].inputs)
        }
        var pending: [Int: Int] = [:], consumers: [Int: [Int]] = [:]
        for n in needed {
            let producers = try Set(nodes[n].inputs.compactMap { v -> Int? in
                if case .node(let p, _) = values[try resolved(v)].source { return p }
                return nil
            })
            pending[n] = producers.count
            for p in producers { consumers[p, default: []].append(n) }
        }
        var ready = needed.filter { pending[$0] == 0 }.sorted(), order: [Int] = []
        while !ready.isEmpty {
            let n = ready.removeFirst()
            order.append(n)
            for c in consumers[n] ?? [] {
                pending[c]! -= 1
                if pending[c] == 0 { ready.insert(c, at: ready.firstIndex { $0 > c } ?? ready.endIndex) }
            }
        }
        guard order.count == needed.count else {
            // `define` refuses cycles, so this is a defect in the graph code, reported rather than hidden.
            let stuck = needed.subtracting(order).sorted().map { nodes[$0].label }
            throw LowRankError(.invalidArgument, "the graph has a cycle through \(stuck.joined(separator: ", "))")
        }
        return order
    }

    /// The gradients of node's inputs (nil where the op has none) given its outputs' (nil where
    /// nothing flows back). `forward` gives a forward value backward may read: itself, or its
    /// recomputation in a checkpointed region. A rule that adds `gathered` (input 0's gradient from
    /// its other consumers) into its own result sets it to nil.
    private func inputGradients(_ node: Node, _ out: [GraphTensor?], needs: [Bool], gathered: inout GraphTensor?,
                                forward: (Int) throws -> GraphTensor) throws -> [GraphTensor?] {
        let label = node.label + ".grad"
        func input(_ i: Int) throws -> GraphTensor { try value(node.inputs[i]) }
        func value(_ id: Int) throws -> GraphTensor { try forward(resolved(id)) }
        let g = out[0]
        let op: Op
        switch node.kind {
        case .reshape:
            return [try reshape(g!, values[node.inputs[0]].descriptor.shape, label: label)]
        case .op(let o): op = o
        }
        let dtypeOf = { (id: Int) in self.values[try self.resolved(id)].descriptor.dtype }
        let dtype = { (i: Int) in try dtypeOf(node.inputs[i]) }
        // The gradient in the dtype of the input with this value id.
        let into = { (t: GraphTensor, id: Int) throws -> GraphTensor in
            try t.dtype == dtypeOf(id) ? t : self.apply(.cast(dtypeOf(id)), [t], label: label)[0]
        }
        let intoInput = { (t: GraphTensor, i: Int) in try into(t, node.inputs[i]) }
        if let both = try gradientsOfBothOutputs(op, node, out, needs: needs, label: label, input: input, forward: forward, intoInput: intoInput) {
            return both
        }
        // Only a node's first output is differentiable (the others are saved for backward).
        guard out.dropFirst().allSatisfy({ $0 == nil }), let g else {
            throw LowRankError(.unsupported, "\(node.label): only the first output of \(op.name) is differentiable", context: [("op", node.label)])
        }
        // A LoRA or DoRA layer adds its bias once, after the branch, so the bias's gradient (PEFT's
        // bias="all"/"lora_only") is G summed over the rows; nil where the bias is frozen.
        let biasGradient = { (bias: Int, needed: Bool?) throws -> GraphTensor? in
            needed == true ? try into(try self.sumLeading(g, to: self.values[bias].descriptor.shape, label: label), bias) : nil
        }
        switch op {
        case .matmul(let o):
            let (a, b) = (try input(0), try input(1))
            let product = { (x: GraphTensor, y: GraphTensor, tx: Bool, ty: Bool, i: Int) in
                try self.apply(.matmul(MatmulOptions(transposeA: tx, transposeB: ty, alpha: o.alpha, outputDType: dtype(i))), [x, y], label: label)[0]
            }
            let da = needs[0] ? (o.transposeA ? try product(b, g, o.transposeB, true, 0) : try product(g, b, false, !o.transposeB, 0)) : nil
            let db = needs[1] ? (o.transposeB ? try product(g, a, true, o.transposeA, 1) : try product(a, g, !o.transposeA, false, 1)) : nil
            let dbias = o.hasBias && needs[2] ? try intoInput(try sumLeading(g, to: values[node.inputs[2]].descriptor.shape, label: label), 2) : nil
            return [da, db] + (o.hasBias ? [dbias] : [])
        case .add:
            let b = values[try resolved(node.inputs[1])].descriptor
            return [g, needs[1] ? try intoInput(try sumLeading(g, to: b.shape, label: label), 1) : nil]
        case .mul:
            let (a, b) = (try input(0), try input(1))
            let da = needs[0] ? try apply(.mul, [g, b], label: label)[0] : nil
            let db = needs[1] ? try intoInput(try sumLeading(try apply(.mul, [g, a], label: label)[0], to: b.shape, label: label), 1) : nil
            return [da, db]
        case .scale(let factor):
            return [try apply(.scale(factor), [g], label: label)[0]]
        case .scaleRows:
            let (a, f) = (try input(0), try input(1))
            let da = needs[0] ? try apply(.scaleRows, [g, f], label: label)[0] : nil
            // d factors[i] = Σ_j G[i, j]·a[i, j]: the rows of G ⊙ a summed by a product with ones.
            let df = needs[1] ? try intoInput(try sumTrailing(try apply(.mul, [g, a], label: label)[0], label: label), 1) : nil
            return [da, df]
        case .rowSumOfSquares:
            let twice = try apply(.scale(2), [g], label: label)[0]
            return [try apply(.scaleRows, [try input(0), twice], label: label)[0]]
        case .cast:
            return [try intoInput(g, 0)]
        case .activation(let f):
            return [try apply(.activationBackward(f), [try input(0), g], label: label)[0]]
        case .gatedActivation(let f):
            let d = try apply(.gatedActivationBackward(f), [try input(0), try input(1), g], label: label)
            return [needs[0] ? d[0] : nil, needs[1] ? d[1] : nil]
        case .meanSquaredError:
            let (p, t) = (try input(0), try input(1))
            let dp = try apply(.meanSquaredErrorBackward, [p, t, g], label: label)[0]
            return [needs[0] ? dp : nil, needs[1] ? try intoInput(try apply(.scale(-1), [dp], label: label)[0], 1) : nil]
        case .loraForward(let o):
            let operands = LoRAForwardOperands(node.inputs, o)
            let dbias = try operands.bias.map { try biasGradient($0, LoRAForwardOperands(needs, o).bias) }
            var backward = o
            backward.hasBias = false
            backward.outputDType = try dtypeOf(operands.x)
            backward.inputGradient = LoRAForwardOperands(needs, o).x
            let u = try forward(node.outputs[1])
            let d = try apply(.loraBackward(backward), LoRABackwardOperands(gradient: g, x: try value(operands.x), w: try value(operands.w),
                                                                            a: try value(operands.a), b: try value(operands.b), u: u).values,
                              label: label)
            // W is frozen: the kernel forms no gradient for it.
            var grads = operands.map { _ -> GraphTensor? in nil }
            (grads.x, grads.a, grads.b) = (d[0], try into(d[1], operands.a), try into(d[2], operands.b))
            grads.bias = dbias
            return grads.values
        case .doraForward(let o):
            let operands = DoRAForwardOperands(node.inputs, o)
            if DoRAForwardOperands(needs, o).magnitude && !o.trainableMagnitude {
                throw LowRankError(.invalidArgument, "\(node.label): the magnitude is trainable but this dora_forward was built with trainableMagnitude: false",
                                   context: [("op", node.label)])
            }
            let dbias = try operands.bias.map { try biasGradient($0, DoRAForwardOperands(needs, o).bias) }
            var backward = o
            backward.lora.hasBias = false
            backward.lora.outputDType = try dtypeOf(operands.x)
            backward.lora.inputGradient = DoRAForwardOperands(needs, o).x
            let outputs = DoRAForwardResults(node.outputs, o)
            let (u, norm, factor, inner) = (try forward(outputs.u), try forward(outputs.norm), try forward(outputs.g), try outputs.inner.map(forward))
            let inputs = DoRABackwardOperands(gradient: g, x: try value(operands.x), w: try value(operands.w), a: try value(operands.a),
                                              b: try value(operands.b), u: u, norm: norm, g: factor, inner: inner)
            let d = DoRABackwardResults(try apply(.doraBackward(backward), inputs.values, label: label), backward)
            // W and ‖W‖² are frozen.
            var grads = operands.map { _ -> GraphTensor? in nil }
            (grads.x, grads.a, grads.b) = (d.dx, try into(d.dA, operands.a), try into(d.dB, operands.b))
            grads.magnitude = try d.dm.map { try into($0, operands.magnitude) }
            grads.bias = dbias
            return grads.values
        case .transpose(let axes):
            let inverse = axes.indices.map { axes.firstIndex(of: $0)! }
            return [try apply(.transpose(axes: inverse), [g], label: label)[0]]
        case .embedding:
            let vocabulary = values[try resolved(node.inputs[0])].descriptor.shape[0]
            return [try intoInput(try apply(.embeddingBackward(vocabulary: vocabulary), [try input(1), g], label: label)[0], 0), nil]
        case .rmsNorm:
            // x's gradient from its other consumers (the residual stream's) is added onto dx in the
            // same pass, where it is in dx's dtype (x's) as `add` would give it.
            let residual = try gathered.flatMap { try $0.dtype == dtype(0) ? $0 : nil }
            let d = try apply(.rmsNormBackward(weightGradient: needs[1]), RMSNormBackwardOperands(gradient: g, x: try input(0), weight: try input(1),
                                                                        rstd: try forward(node.outputs[1]), residualGradient: residual).values, label: label)
            if residual != nil { gathered = nil }
            return [d[0], needs[1] ? try intoInput(d[1], 1) : nil]
        case .rope(let inverse):
            return [try apply(.rope(inverse: !inverse), [g, try input(1), try input(2)], label: label)[0], nil, nil]
        case .attention(let o):
            let (out, logsumexp) = (try forward(node.outputs[0]), try forward(node.outputs[1]))
            let operands = AttentionBackwardOperands(gradient: g, q: try input(0), k: try input(1), v: try input(2), out: out, logsumexp: logsumexp,
                                                     starts: o.packed ? try input(3) : nil)
            let d = try apply(.attentionBackward(o), operands.values, label: label)
            return d.map { $0 } + (o.packed ? [nil] : [])
        case .crossEntropy(let ignoreIndex):
            let operands = CrossEntropyBackwardOperands(logits: try input(0), labels: try input(1), logsumexp: try forward(node.outputs[1]), lossGradient: g)
            let d = try apply(.crossEntropyBackward(ignoreIndex: ignoreIndex), operands.values, label: label)
            return [d[0], nil]
        case .linearCrossEntropy(let o):
            let operands = LinearCrossEntropyBackwardOperands(hidden: try input(0), weight: try input(1), labels: try input(2),
                                                               logsumexp: try forward(node.outputs[1]), lossGradient: g)
            // d weight only when the head trains (a tied embedding being trained): a frozen head's would be V·d f32 for nothing.
            let d = try apply(.linearCrossEntropyBackward(o, weightGradient: needs[1]), operands.values, label: label)
            return [d[0], needs[1] ? try intoInput(d[1], 1) : nil, nil]
        case .rowL2Norm, .loraBackward, .doraNorm, .doraBackward, .doraCompose, .activationBackward, .gatedActivationBackward, .meanSquaredErrorBackward,
             .clipCoefficient, .adamW, .multiTensorAdamW, .embeddingBackward, .rmsNormBackward, .attentionBackward, .crossEntropyBackward,
             .linearCrossEntropyBackward, .cachedAttention:
            return node.inputs.map { _ in nil }
        }
    }

    /// The input gradients of the ops whose first two differentiable outputs both can carry one, or
    /// nil for every other op.
    private func gradientsOfBothOutputs(_ op: Op, _ node: Node, _ out: [GraphTensor?], needs: [Bool], label: String,
                                        input: (Int) throws -> GraphTensor, forward: (Int) throws -> GraphTensor,
                                        intoInput: (GraphTensor, Int) throws -> GraphTensor) throws -> [GraphTensor?]? {
        switch op {
        case .rope(let inverse) where node.inputs.count == 4:
            // A pair's backward rotates both gradients back in one pass, or the one that flows (a
            // pair feeds one attention, whose backward gives both).
            let flowing = [out[0], out[1]].compactMap { $0 }
            let d = try apply(.rope(inverse: !inverse), [flowing[0], try input(1), try input(2)] + flowing.dropFirst(), label: label)
            return out[0] == nil ? [nil, nil, nil, d[0]] : [d[0], nil, nil, d.count > 1 ? d[1] : nil]
        case .rmsNorm where node.inputs.count == 3:
            // The norm of a residual sum: the sum's gradient, as R, is added onto dx in the norm's
            // backward pass, and x and r both get the total.
            let (gy, gSum) = (out[0], out[2])
            var (total, dWeight) = (gSum, GraphTensor?.none)
            if let gy {
                let operands = RMSNormBackwardOperands(gradient: gy, x: try forward(node.outputs[2]), weight: try input(1),
                                                       rstd: try forward(node.outputs[1]), residualGradient: gSum)
                let d = try apply(.rmsNormBackward(weightGradient: needs[1]), operands.values, label: label)
                (total, dWeight) = (d[0], needs[1] ? try intoInput(d[1], 1) : nil)
            }
            return [try total.map { try intoInput($0, 0) }, dWeight, try total.map { try intoInput($0, 2) }]
        default:
            return nil
        }
    }

    /// `g` summed over its leading dimensions down to `shape`, its trailing ones (a broadcast
    /// operand's gradient): a product with a row of ones, as bias gradients are formed.
    private func sumLeading(_ g: GraphTensor, to shape: Shape, label: String) throws -> GraphTensor {
        if g.shape == shape { return g }
        let columns = shape.count, rows = g.shape.count / max(columns, 1)
        let matrix = try reshape(g, [rows, columns], label: label)
        let sums = try apply(.matmul(MatmulOptions(outputDType: .f32)), [try onesConstant([1, rows]), matrix], label: label)[0]
        return try reshape(sums, shape, label: label)
    }

    /// `g [rows, n]` summed along each row to `[rows]`.
    private func sumTrailing(_ g: GraphTensor, label: String) throws -> GraphTensor {
        let n = g.shape.columns
        let sums = try apply(.matmul(MatmulOptions(outputDType: .f32)), [g, try onesConstant([n, 1])], label: label)[0]
        return try reshape(sums, [g.shape.rows], label: label)
    }
}

extension Graph.NodeKind {
    var name: String {
        switch self {
        case .op(let op): op.name
        case .reshape: "reshape"
        }
    }
}

/// Recomputes checkpointed regions for backward: the first time backward reads a value made
/// inside a region and used only there, the whole region is built again from its inputs, and
/// backward reads the copy, so the forward value dies as soon as forward is done with it.
private struct Replay {
    let graph: Graph
    let enabled: Bool
    /// Region of each forward node in the order, and the values read outside their region.
    private var regionOf: [Int: Int] = [:]
    private var escaping = Set<Int>()
    private let order: [Int]
    private var copies: [Int: Int] = [:]
    private var replayed = Set<Int>()

    init(graph: Graph, enabled: Bool, order: [Int]) throws {
        self.graph = graph
        self.enabled = enabled
        self.order = order
        for n in order {
            if let r = graph.nodes[n].region { regionOf[n] = r }
        }
        for n in order {
            for v in try graph.nodes[n].inputs.map(graph.resolved) {
                if case .node(let p, _) = graph.values[v].source, let r = regionOf[p], regionOf[n] != r { escaping.insert(v) }
            }
        }
    }

    mutating func value(_ id: Int) throws -> GraphTensor {
        guard enabled, case .node(let producer, _) = graph.values[id].source, let region = regionOf[producer],
              !escaping.contains(id) else { return graph.tensor(id) }
        if replayed.insert(region).inserted {
            for n in order where regionOf[n] == region {
                let node = graph.nodes[n]
                let inputs = try node.inputs.map { v in try graph.resolved(v) }.map { copies[$0] ?? $0 }
                let outputs = graph.appendNode(node.kind, inputs: inputs, outputs: node.outputs.map { graph.values[$0].descriptor },
                                               label: node.label + ".recompute", region: .some(nil))
                for (old, new) in zip(node.outputs, outputs) { copies[old] = new.id }
            }
        }
        return graph.tensor(copies[id]!)
    }
}
