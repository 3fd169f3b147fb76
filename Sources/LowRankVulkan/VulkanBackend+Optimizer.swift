import LowRankCore

/// `Shaders/adamw.comp`: AdamW over a table of tensor ranges, with the global gradient norm's
/// clip coefficient formed in two passes before it.
struct AdamWKernel: Kernel {
    enum Pass: KernelPass {
        /// One workgroup per gradient: its sum of squares.
        case sumOfSquares
        /// One invocation: the sums added in order, and the clip coefficient.
        case clipCoefficient
        /// The step, `chunk` elements of a table entry per workgroup.
        case update
    }

    struct Push: BitwiseCopyable {
        var entries: UInt32
        var chunk: UInt32
        var oneMinusBeta1: Float
        var beta2: Float
        var oneMinusBeta2: Float
        var epsilon: Float
        var maxNorm: Float
    }

    /// One row of the table, `Entry` in the GLSL: offsets in elements within each bound range, and
    /// the index of the tensor (of its sum of squares, and of its rates in the step scalars).
    struct Entry: BitwiseCopyable {
        var param: UInt32
        var grad: UInt32
        var m: UInt32
        var v: UInt32
        var count: UInt32
        var firstGroup: UInt32
        var tensor: UInt32
    }

    static let shader = Shader.adamW
    var pass: Pass
    /// The parameters' dtype (`update`).
    var param: DType?
    /// The gradients' dtype (`sumOfSquares`, `update`).
    var grad: DType?
    /// `update` scales each gradient by the clip coefficient.
    var clip = false
    /// `update` reads the loss and the health flag (`MultiTensorAdamWOptions.guarded`).
    var guarded = false

    var defines: [String: String] {
        pass.defines + param.operandDefines("P", written: true) + grad.operandDefines("G")
            + (pass == .update ? ["CLIP": clip.define, "GUARD": guarded.define] : [:])
    }

    static var variants: [AdamWKernel] {
        DType.floats.map { AdamWKernel(pass: .sumOfSquares, grad: $0) } + [AdamWKernel(pass: .clipCoefficient)]
            + DType.cover(operands: 2).flatMap { t in
                [(false, false), (true, false), (false, true), (true, true)].map {
                    AdamWKernel(pass: .update, param: t[0], grad: t[1], clip: $0.0, guarded: $0.1)
                }
            }
    }

    /// The sum pass's workgroup: row_reduce.comp's, so that its tree adds in the same order.
    static let sumWorkgroupSize = 256
}

extension VulkanBackend {
    /// One tensor's step: the multi-tensor op with one tensor and no clipping.
    func encodeAdamW(_ o: AdamWOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        try encodeMultiTensorAdamW(MultiTensorAdamWOptions(adamW: o, learningRateFactors: [1]), inputs, outputs)
    }

    /// Every tensor's step in a few dispatches: the tensors (or windows of the larger ones) are
    /// gathered into batches whose param, grad, m and v each lie in one buffer within one binding's
    /// reach, and each batch is bound as those four ranges with a table of where each tensor sits
    /// in them (written by the command stream, so nothing waits). With clipping: a sum-of-squares
    /// pass per batch, one coefficient pass, then an update pass per batch.
    func encodeMultiTensorAdamW(_ o: MultiTensorAdamWOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let operands = MultiTensorAdamWOperands(inputs), n = operands.count
        let clip = o.maxGradientNorm != nil
        var pieces: [AdamWPiece] = []
        for i in 0..<n {
            let t = operands.tensor(i), count = t.parameter.shape.count
            let tensors = [outputs[i], t.gradient, t.m, t.v]
            let window = windowElements(tensors) ?? max(count, 1)
            if clip && window < count {
                throw LowRankError(.unsupported, "clipping sums each gradient in one workgroup, so each must fit one binding; tensor \(i) is \(t.gradient.descriptor)",
                                   context: [("tensor", "\(i)"), ("maxStorageBufferRange", "\(maxBindingBytes)")])
            }
            let storages = try tensors.map { try vulkan($0.storage) }
            for start in stride(from: 0, to: max(count, 1), by: window) {
                pieces.append(AdamWPiece(tensor: i, elements: start..<min(start + window, count), storages, dtypes: tensors.map(\.dtype)))
            }
        }
        let batches = AdamWPiece.batches(pieces, maxBytes: maxBindingBytes)

        let s = o.adamW.stepScalars
        // What changes with the step and the schedule goes to the step scalars; the push constants
        // and the table stay the same every step.
        try stream.stepScalars.setAdamW(o)
        let size = elementWorkgroupSize
        var push = AdamWKernel.Push(entries: 0, chunk: 0, oneMinusBeta1: s.oneMinusBeta1, beta2: s.beta2, oneMinusBeta2: s.oneMinusBeta2,
                                    epsilon: s.epsilon, maxNorm: o.maxGradientNorm ?? 0)
        var tables: [(table: Tensor, groups: Int, chunk: Int)] = []
        for batch in batches {
            let counts = batch.map { pieces[$0].elements.count }
            // Elements per workgroup: one per invocation unless that needs more workgroups than a dispatch has.
            var chunk = size
            while counts.reduce(0, { $0 + ($1 + chunk - 1) / chunk }) > 65535 { chunk *= 2 }
            var entries: [AdamWKernel.Entry] = [], groups = 0
            let ranges = AdamWPiece.ranges(of: batch.map { pieces[$0] })
            for p in batch.map({ pieces[$0] }) {
                let at = (0..<4).map { UInt32((p.lower[$0] - ranges[$0].lower) / p.dtypes[$0].byteSize) }
                entries.append(AdamWKernel.Entry(param: at[0], grad: at[1], m: at[2], v: at[3], count: UInt32(p.elements.count),
                                                 firstGroup: UInt32(groups), tensor: UInt32(p.tensor)))
                groups += (p.elements.count + chunk - 1) / chunk
            }
            let table = try scratch([entries.count * MemoryLayout<AdamWKernel.Entry>.stride / 4], .i32)
            try entries.withUnsafeBytes { try stream.update(BufferAccess(try vulkan(table.storage), writes: true), with: $0) }
            tables.append((table, groups, chunk))
        }

        let bindings = { (batch: [Int], role: Int, writes: Bool) -> BufferAccess in
            AdamWPiece.binding(batch.map { pieces[$0] }, role: role, writes: writes)
        }
        var coefficient: Tensor?
        if clip {
            let partials = try scratch([n]), result = try scratch([1])
            for (batch, t) in zip(batches, tables) {
                push.entries = UInt32(batch.count)
                try dispatch(AdamWKernel(pass: .sumOfSquares, grad: pieces[batch[0]].dtypes[1]), specialization: [UInt32(AdamWKernel.sumWorkgroupSize)],
                             accesses: [bindings(batch, 1, false), try access(.read(t.table)), try access(.write(partials))],
                             push: push, groups: (batch.count, 1, 1))
            }
            push.entries = UInt32(n)
            try dispatch(AdamWKernel(pass: .clipCoefficient), specialization: [1], accesses: [try access(.read(partials)), try access(.write(result))],
                         push: push, groups: (1, 1, 1))
            coefficient = result
        }
        for (batch, t) in zip(batches, tables) {
            push.entries = UInt32(batch.count)
            push.chunk = UInt32(t.chunk)
            let dtypes = pieces[batch[0]].dtypes
            let kernel = AdamWKernel(pass: .update, param: dtypes[0], grad: dtypes[1], clip: clip, guarded: o.guarded)
            let flags = o.guarded ? [try access(.read(inputs[4 * n])), try access(.write(outputs[3 * n]))] : []
            // A step with nothing to update still runs one workgroup when guarded: it writes the flag.
            try dispatch(kernel, specialization: [UInt32(size)],
                         accesses: [bindings(batch, 0, true), bindings(batch, 1, false), bindings(batch, 2, true), bindings(batch, 3, true),
                                    try access(.read(t.table))] + (try coefficient.map { [try access(.read($0))] } ?? []) + flags,
                         push: push, groups: (max(t.groups, o.guarded ? 1 : 0), 1, 1))
        }
    }
}

/// A tensor of the multi-tensor step, or a window of one, and where its four operands (param,
/// grad, m, v) lie.
struct AdamWPiece {
    var tensor: Int
    var elements: Range<Int>
    var storages: [VulkanStorage]
    var dtypes: [DType]
    /// Each operand's first byte in its buffer, and the byte after its last.
    let lower: [Int], upper: [Int]

    init(tensor: Int, elements: Range<Int>, _ storages: [VulkanStorage], dtypes: [DType]) {
        (self.tensor, self.elements, self.storages, self.dtypes) = (tensor, elements, storages, dtypes)
        lower = (0..<4).map { storages[$0].offset + elements.lowerBound * dtypes[$0].byteSize }
        upper = (0..<4).map { storages[$0].offset + elements.upperBound * dtypes[$0].byteSize }
    }

    /// The byte range each operand of `pieces` spans.
    static func ranges(of pieces: [AdamWPiece]) -> [(lower: Int, upper: Int)] {
        (0..<4).map { r in (pieces.map { $0.lower[r] }.min()!, pieces.map { $0.upper[r] }.max()!) }
    }

    /// Consecutive pieces, in order, as few batches as the buffers and one binding's reach allow:
    /// a batch's pieces share each operand's buffer and dtype, and each operand's span fits a binding.
    static func batches(_ pieces: [AdamWPiece], maxBytes: Int) -> [[Int]] {
        var batches: [[Int]] = [], spans: [(lower: Int, upper: Int)] = []
        for (i, p) in pieces.enumerated() {
            let joined = (0..<4).map { (min(spans.isEmpty ? p.lower[$0] : spans[$0].lower, p.lower[$0]), max(spans.isEmpty ? p.upper[$0] : spans[$0].upper, p.upper[$0])) }
            if let head = batches.last.map({ pieces[$0[0]] }),
               (0..<4).allSatisfy({ head.storages[$0].buffer == p.storages[$0].buffer && head.dtypes[$0] == p.dtypes[$0] && joined[$0].1 - joined[$0].0 <= maxBytes }) {
                batches[batches.count - 1].append(i)
                spans = joined
            } else {
                batches.append([i])
                spans = (0..<4).map { (p.lower[$0], p.upper[$0]) }
            }
        }
        return batches
    }

    /// Operand `role`'s span over `pieces`, as one binding that keeps every piece's tensor alive:
    /// a gradient released while its step is pending must not be handed out and overwritten.
    static func binding(_ pieces: [AdamWPiece], role: Int, writes: Bool) -> BufferAccess {
        let span = ranges(of: pieces)[role]
        let anchor = pieces.min { $0.lower[role] < $1.lower[role] }!
        var access = BufferAccess(anchor.storages[role], writes: writes, offset: span.lower - anchor.storages[role].offset, size: span.upper - span.lower)
        access.companions = pieces.map { $0.storages[role] }
        return access
    }
}
