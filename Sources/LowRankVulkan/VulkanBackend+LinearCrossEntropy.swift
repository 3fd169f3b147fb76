import LowRankCore

/// `Shaders/linear_cross_entropy.comp`: the row passes of the fused LM head and cross-entropy.
struct LinearCrossEntropyKernel: Kernel {
    enum Pass: ShaderChoice {
        /// One workgroup per row of a block: the online logsumexp and the label's logit.
        case rowUpdate
        /// Per row: logsumexp and the row's loss.
        case rowLosses
        /// A block of logits into its gradient, in place.
        case logitGradient
        static let macro = "PASS"
    }

    struct Push: BitwiseCopyable {
        var rows: UInt32
        var classes: UInt32
        var width: UInt32
        var row0: UInt32
        var class0: UInt32
    }

    static let shader = Shader.linearCrossEntropy
    var pass: Pass
    var ignoreIndex: Int32

    var defines: [String: String] { pass.defines + ["IGNORE_INDEX": "(\(ignoreIndex))"] }

    static var variants: [LinearCrossEntropyKernel] { Pass.allCases.map { LinearCrossEntropyKernel(pass: $0, ignoreIndex: -100) } }
}

/// The blocks of logits the fused op forms: chunks of the vocabulary in order, within each the
/// blocks of rows in order. Both sizes are multiples of 256 (or the whole axis), so every window of
/// hidden, W and the gradients starts on a binding-aligned offset, and are halved until each
/// window fits one binding.
private struct LogitBlocking {
    var rows: Int
    var classes: Int
    let totalRows: Int
    let totalClasses: Int

    init(_ o: LinearCrossEntropyOptions, hidden: Tensor, weight: Tensor, limit: Int) throws {
        let up = { (n: Int) in (n + 255) / 256 * 256 }
        (totalRows, totalClasses) = (hidden.shape[0], weight.shape[0])
        let d = hidden.shape[1]
        rows = max(1, min(totalRows, up(o.rowChunk)))  // one, not zero, for no rows: a step of the loops below
        classes = min(totalClasses, up(o.vocabularyChunk))
        // f32 logits and gradients, hidden's rows and (unless bound whole, quantized) W's.
        let widest = max(4, hidden.dtype.byteSize, weight.dtype.isQuantized ? 0 : weight.dtype.byteSize)
        while true {
            let fits = (logits: rows * classes * 4 <= limit, rows: rows * d * widest <= limit, classes: classes * d * widest <= limit)
            if fits.logits && fits.rows && fits.classes { return }
            let shrinkRows = !fits.rows || (fits.classes && !fits.logits && rows >= classes)
            let current = shrinkRows ? rows : classes
            guard current > 256 else {
                throw LowRankError(.unsupported, "linear_cross_entropy: blocks of 256 rows or classes of d = \(d) exceed one binding (\(limit) bytes)",
                                   context: [("hidden", hidden.descriptor.description), ("weight", weight.descriptor.description)])
            }
            let halved = (current / 2 + 255) / 256 * 256
            if shrinkRows { rows = halved } else { classes = halved }
        }
    }

    func forEach(_ body: (Range<Int>, Range<Int>) throws -> Void) rethrows {
        for c0 in stride(from: 0, to: totalClasses, by: classes) {
            for r0 in stride(from: 0, to: totalRows, by: rows) {
                try body(r0..<min(totalRows, r0 + rows), c0..<min(totalClasses, c0 + classes))
            }
        }
    }
}

extension VulkanBackend {
    /// hidden, weight, labels -> loss, logsumexp: per block, its logits by the matmul kernel into
    /// a workspace and the online logsumexp over them; then the row losses and their mean.
    func encodeLinearCrossEntropy(_ o: LinearCrossEntropyOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (hidden, weight, labels, logsumexp) = (inputs[0], inputs[1], inputs[2], outputs[1])
        let (rows, classes) = (hidden.shape[0], weight.shape[0])
        let blocking = try LogitBlocking(o, hidden: hidden, weight: weight, limit: maxBindingBytes)
        let logits = try scratch([blocking.rows * blocking.classes]), sums = try scratch([rows]), target = try scratch([rows])
        let kernel = { (pass: LinearCrossEntropyKernel.Pass) in LinearCrossEntropyKernel(pass: pass, ignoreIndex: o.ignoreIndex) }
        try blocking.forEach { block, chunk in
            try dispatchLogits(hidden, weight, rows: block, classes: chunk, into: logits)
            try dispatch(kernel(.rowUpdate), [.read(labels), .read(logits, 0..<(block.count * chunk.count)), .write(logsumexp), .write(sums), .write(target)],
                         push: .init(block, chunk, classes: classes), groups: rowGroups(block.count))
        }
        let rowLoss = try scratch([rows])
        try dispatch(kernel(.rowLosses), [.read(labels), .write(logsumexp), .read(sums), .read(target), .write(rowLoss)],
                     push: .init(0..<rows, 0..<0, classes: classes), groups: (min((rows + 255) / 256, 65535), 1, 1))
        try dispatch(CrossEntropyKernel(pass: .mean, ignoreIndex: o.ignoreIndex, logits: .f32, out: nil), [.read(labels), .read(rowLoss), .write(outputs[0])],
                     push: .init(rows: UInt32(rows), classes: UInt32(classes)), groups: (1, 1, 1))
    }

    /// hidden, weight, labels, logsumexp, dLoss -> d hidden [, d weight]: per block its logits
    /// again, turned into their gradient in place, then `·W_chunk` added into d hidden (f32) and,
    /// when asked, `ᵀ·hidden` into d weight's chunk.
    func encodeLinearCrossEntropyBackward(_ o: LinearCrossEntropyOptions, weightGradient: Bool,
                                          _ operands: LinearCrossEntropyBackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (hidden, weight, labels) = (operands.hidden, operands.weight, operands.labels)
        let (rows, classes, d) = (hidden.shape[0], weight.shape[0], hidden.shape[1])
        let blocking = try LogitBlocking(o, hidden: hidden, weight: weight, limit: maxBindingBytes)
        let logits = try scratch([blocking.rows * blocking.classes]), counted = try scratch([1])
        try dispatch(CrossEntropyKernel(pass: .count, ignoreIndex: o.ignoreIndex, logits: .f32, out: nil), [.read(labels), .write(counted)],
                     push: .init(rows: UInt32(rows), classes: UInt32(classes)), groups: (1, 1, 1))
        // Chunks add into d hidden, in f32 whatever hidden's dtype, rounded once at the end.
        let dHidden = hidden.dtype == .f32 ? outputs[0] : try scratch([rows, d])
        let quantized = weight.dtype.isQuantized
        try blocking.forEach { block, chunk in
            let count = block.count * chunk.count
            try dispatchLogits(hidden, weight, rows: block, classes: chunk, into: logits)
            try dispatch(LinearCrossEntropyKernel(pass: .logitGradient, ignoreIndex: o.ignoreIndex),
                         [.read(labels), .write(logits, 0..<count), .read(operands.logsumexp), .read(operands.lossGradient), .read(counted)],
                         push: .init(block, chunk, classes: classes), groups: (min((count + 255) / 256, 65535), 1, 1))
            // d hidden[block] (+)= G·W[chunk]: a quantized W is bound whole and read from row chunk.lowerBound (k0).
            try dispatchBlockProduct(
                MatmulKernel(a: .f32, b: weight.dtype, c: .f32, transposeA: false, transposeB: false, bias: nil, accumulate: chunk.lowerBound > 0,
                             second: nil, dropout: nil, vector: nil, writesInner: false),
                [.read(logits, 0..<count), quantized ? .read(weight) : .read(weight, (chunk.lowerBound * d)..<(chunk.upperBound * d)),
                 .write(dHidden, (block.lowerBound * d)..<(block.upperBound * d))],
                m: block.count, n: d, k: chunk.count, lda: chunk.count, ldb: d, origin: (0, quantized ? chunk.lowerBound : 0), weight: weight)
            if weightGradient {
                // d weight[chunk] (+)= Gᵀ·hidden[block]
                try dispatchBlockProduct(
                    MatmulKernel(a: .f32, b: hidden.dtype, c: .f32, transposeA: true, transposeB: false, bias: nil, accumulate: block.lowerBound > 0,
                                 second: nil, dropout: nil, vector: nil, writesInner: false),
                    [.read(logits, 0..<count), .read(hidden, (block.lowerBound * d)..<(block.upperBound * d)),
                     .write(outputs[1], (chunk.lowerBound * d)..<(chunk.upperBound * d))],
                    m: chunk.count, n: d, k: block.count, lda: chunk.count, ldb: d, origin: (0, 0), weight: hidden)
            }
        }
        if dHidden !== outputs[0] { try encodeCast(dHidden, outputs[0]) }
    }

    /// hidden[rows]·W[classes]ᵀ into the workspace `[rows, classes]`, by the matmul kernel on
    /// windows of hidden and W (a quantized W bound whole, read from row `classes.lowerBound`).
    private func dispatchLogits(_ hidden: Tensor, _ weight: Tensor, rows: Range<Int>, classes: Range<Int>, into logits: Tensor) throws {
        let d = hidden.shape[1], quantized = weight.dtype.isQuantized
        try dispatchBlockProduct(
            MatmulKernel(a: hidden.dtype, b: weight.dtype, c: .f32, transposeA: false, transposeB: true, bias: nil, accumulate: false,
                         second: nil, dropout: nil, vector: nil, writesInner: false),
            [.read(hidden, (rows.lowerBound * d)..<(rows.upperBound * d)),
             quantized ? .read(weight) : .read(weight, (classes.lowerBound * d)..<(classes.upperBound * d)),
             .write(logits, 0..<(rows.count * classes.count))],
            m: rows.count, n: classes.count, k: d, lda: d, ldb: d, origin: (quantized ? classes.lowerBound : 0, 0), weight: weight)
    }

    /// One product of the matmul kernel over bindings the caller windowed, C's row stride n;
    /// `origin` is (n0, k0), where a quantized B (bound whole) is read from.
    private func dispatchBlockProduct(_ kernel: MatmulKernel, _ bindings: [TensorBinding], m: Int, n: Int, k: Int, lda: Int, ldb: Int,
                                      origin: (n: Int, k: Int), weight b: Tensor) throws {
        let push = MatmulKernel.Push(m: UInt32(m), n: UInt32(n), k: UInt32(k), k2: 0, alpha: 1, alpha2: 0, seed: 0, dropThreshold: 0, keepScale: 1,
                                     lda: UInt32(lda), ldb: UInt32(ldb), ldc: UInt32(n), lda2: 0, ldb2: 0, m0: 0, n0: UInt32(origin.n),
                                     k0: UInt32(origin.k), vecOffset: 0, bCount: UInt32(b.shape.count))
        try dispatchScalar(scalarTile(m: m, n: n), kernel, bindings, push: push, rows: m, columns: n)
    }
}

extension LinearCrossEntropyKernel.Push {
    init(_ rows: Range<Int>, _ classes: Range<Int>, classes total: Int) {
        self.init(rows: UInt32(rows.count), classes: UInt32(total), width: UInt32(classes.count), row0: UInt32(rows.lowerBound),
                  class0: UInt32(classes.lowerBound))
    }
}
