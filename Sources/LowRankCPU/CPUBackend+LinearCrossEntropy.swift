import Glibc
import LowRankCore

/// One block of the fused LM head's logits: `rows` of hidden by `classes` of the vocabulary.
struct LogitBlock {
    var rows: Range<Int>
    var classes: Range<Int>
}

/// One chunk of the LM head's rows `[classes, d]` as its products read it: f32 (W itself, or
/// widened from a 16-bit or quantized W), or bfloat16 as stored when products with W round their
/// activations (`medium`, `CPUBackend+BFloat16Products.swift`), as a bfloat16 lm_head computes in PyTorch.
enum HeadChunk {
    case f32(UnsafeMutablePointer<Float>)
    case bf16(UnsafePointer<UInt16>)
}

extension CPUBackend {
    /// `C = A·chunkᵀ` (`[m, classes]`, A `[m, d]`) with `transposeW`, else `C = A·chunk + beta·C`
    /// (`[m, d]`, A `[m, classes]`).
    func headProduct(_ a: UnsafePointer<Float>, m: Int, _ chunk: HeadChunk, classes: Int, d: Int, transposeW: Bool,
                     _ c: UnsafeMutablePointer<Float>, beta: Float) {
        switch chunk {
        case .f32(let w):
            sgemm(a, transpose: false, w, transpose: transposeW, c, m: m, n: transposeW ? classes : d, k: transposeW ? d : classes, alpha: 1, beta: beta)
        case .bf16(let w):
            bfloat16Product(a, transposeA: false, m: m, w, rows: classes, columns: d, transposeW: transposeW, c, alpha: 1, beta: beta)
        }
    }

    /// `crossEntropy(hidden·Wᵀ)` a block of logits at a time: per row a running max and an f64
    /// running sum of exponentials, rescaled when the max grows (the online logsumexp), and the
    /// label's logit taken from the chunk that holds it; then the mean as `crossEntropy` forms it.
    func linearCrossEntropy(_ o: LinearCrossEntropyOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (hidden, weight, labels) = (inputs[0], inputs[1], inputs[2])
        let rows = hidden.shape[0], classes = weight.shape[0]
        let label = pointer(labels).assumingMemoryBound(to: Int32.self)
        let largest = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows), sums = UnsafeMutableBufferPointer<Double>.allocate(capacity: rows)
        let target = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows)
        defer { largest.deallocate(); sums.deallocate(); target.deallocate() }
        _ = largest.initialize(from: repeatElement(-.infinity, count: rows))
        _ = sums.initialize(from: repeatElement(0, count: rows))
        _ = target.initialize(from: repeatElement(.nan, count: rows))
        withFloats(hidden) { h in
            logitBlocks(o, h, rows: rows, weight) { block, logits, _ in
                let width = block.classes.count
                parallelFor(block.rows.count, minimumPerThread: Swift.max(1, (1 << 14) / width)) { r in
                    for i in r {
                        let row = block.rows.lowerBound + i, l = logits + i * width
                        let m = VectorMath.maximum(l, count: width, atLeast: largest[row])
                        let s = VectorMath.sumOfExponentials(l, count: width, minus: m)
                        sums[row] = sums[row] * exp(Double(largest[row]) - Double(m)) + s
                        largest[row] = m
                        let y = Int(label[row])
                        if block.classes.contains(y) { target[row] = l[y - block.classes.lowerBound] }
                    }
                }
            }
        }
        let logsumexp = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        var total = 0.0, counted = 0
        for row in 0..<rows {
            let lse = Double(largest[row]) + log(sums[row])
            logsumexp[row] = Float(lse)
            guard label[row] != o.ignoreIndex else { continue }
            total += (0..<classes).contains(Int(label[row])) ? lse - Double(target[row]) : .nan
            counted += 1
        }
        // One NaN, positive as PyTorch prints it: x86's default NaN, from the rescaling of a NaN row, is negative.
        let mean = total / Double(counted)
        pointer(outputs[0]).assumingMemoryBound(to: Float.self)[0] = mean.isNaN ? .nan : Float(mean)
    }

    /// Each block's logits become `(softmax − onehot)·dLoss / counted rows` in place (0 on ignored
    /// rows, NaN for a label outside [0, V)), then go into d hidden (`·W_chunk`, summed over the
    /// chunks) and, when asked, into d W's chunk (`ᵀ·hidden`, summed over the row blocks).
    func linearCrossEntropyBackward(_ o: LinearCrossEntropyOptions, weightGradient: Bool,
                                    _ operands: LinearCrossEntropyBackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (hidden, weight) = (operands.hidden, operands.weight)
        let (rows, classes, d) = (hidden.shape[0], weight.shape[0], hidden.shape[1])
        let label = pointer(operands.labels).assumingMemoryBound(to: Int32.self)
        let logsumexp = pointer(operands.logsumexp).assumingMemoryBound(to: Float.self)
        let counted = (0..<rows).filter { label[$0] != o.ignoreIndex }.count
        let factor = pointer(operands.lossGradient).assumingMemoryBound(to: Float.self)[0] / Float(counted)
        let dWeight = weightGradient ? pointer(outputs[1]).assumingMemoryBound(to: Float.self) : nil
        withFloats(hidden) { h in
            producing(outputs[0]) { dh in
                logitBlocks(o, h, rows: rows, weight) { block, logits, w in
                    let width = block.classes.count, first = block.rows.lowerBound
                    parallelFor(block.rows.count, minimumPerThread: Swift.max(1, (1 << 14) / width)) { r in
                        for i in r {
                            let row = first + i, y = Int(label[row]), l = logits + i * width
                            let target: SoftmaxGradientTarget = label[row] == o.ignoreIndex ? .ignored
                                : (0..<classes).contains(y) ? .column(y - block.classes.lowerBound) : .outside
                            Self.softmaxGradient(l, count: width, logsumexp: logsumexp[row], target, factor: factor, into: l)
                        }
                    }
                    headProduct(logits, m: block.rows.count, w, classes: width, d: d, transposeW: false, dh + first * d,
                                beta: block.classes.lowerBound == 0 ? 0 : 1)
                    if let dWeight {
                        sgemm(logits, transpose: true, h + first * d, transpose: false, dWeight + block.classes.lowerBound * d,
                              m: width, n: d, k: block.rows.count, alpha: 1, beta: first == 0 ? 0 : 1)
                    }
                }
            }
        }
    }

    /// Calls `body` with each block's f32 logits `[rows, classes]` (row-major, a workspace reused
    /// from block to block) and the chunk's rows of W, chunks of the vocabulary in order and within
    /// each the blocks of rows in order; a 16-bit or quantized W is widened a chunk at a time unless
    /// its products are bfloat16 ones.
    private func logitBlocks(_ o: LinearCrossEntropyOptions, _ h: UnsafeMutablePointer<Float>, rows: Int, _ weight: Tensor,
                             _ body: (LogitBlock, UnsafeMutablePointer<Float>, HeadChunk) -> Void) {
        let (classes, d) = (weight.shape[0], weight.shape[1])
        let rowChunk = Swift.max(1, Swift.min(o.rowChunk, rows)), chunk = Swift.min(o.vocabularyChunk, classes)
        let bfloat16 = roundsActivations(for: weight, .weight)
        withScratch(weight.dtype == .f32 || bfloat16 ? 0 : chunk * d) { panel in
            withScratch(rowChunk * chunk) { logits in
                for c0 in stride(from: 0, to: classes, by: chunk) {
                    let span = c0..<Swift.min(classes, c0 + chunk)
                    let w: HeadChunk
                    if bfloat16 {
                        w = .bf16(pointer(weight).assumingMemoryBound(to: UInt16.self) + c0 * d)
                    } else if weight.dtype == .f32 {
                        w = .f32(pointer(weight).assumingMemoryBound(to: Float.self) + c0 * d)
                    } else {
                        widen(weight, rows: span, into: panel)
                        w = .f32(panel)
                    }
                    for r0 in stride(from: 0, to: rows, by: rowChunk) {
                        let block = LogitBlock(rows: r0..<Swift.min(rows, r0 + rowChunk), classes: span)
                        headProduct(h + r0 * d, m: block.rows.count, w, classes: span.count, d: d, transposeW: true, logits, beta: 0)
                        body(block, logits, w)
                    }
                }
            }
        }
    }
}
