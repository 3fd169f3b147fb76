import CBFloat16GEMM
import Glibc
import LowRankCore

extension CPUBackend {
    /// mean((p − t)²), summed in f64 (`Shaders/mean_squared_error.comp` is the twin; it sums in f32
    /// by a fixed tree).
    func meanSquaredError(_ prediction: Tensor, _ target: Tensor, _ out: Tensor) throws {
        let count = prediction.shape.count
        withFloats(prediction) { p in
            withFloats(target) { t in
                var sum = 0.0
                for i in 0..<count {
                    let d = Double(p[i] - t[i])
                    sum += d * d
                }
                pointer(out).assumingMemoryBound(to: Float.self)[0] = Float(sum / Double(count))
            }
        }
    }

    /// 2·(p − t)·dLoss / count.
    func meanSquaredErrorBackward(_ prediction: Tensor, _ target: Tensor, _ lossGradient: Tensor, _ out: Tensor) throws {
        let count = prediction.shape.count
        let factor = 2 * pointer(lossGradient).assumingMemoryBound(to: Float.self)[0] / Float(count)
        withFloats(prediction) { p in
            withFloats(target) { t in
                producing(out) { c in
                    parallelFor(count) { r in
                        for i in r { c[i] = (p[i] - t[i]) * factor }
                    }
                }
            }
        }
    }

    /// Per row `logsumexp(logits) − logits[label]` (max-shifted), their mean over the rows whose
    /// label is not ignored; a label outside [0, V) makes the loss NaN. Each row's exponentials are
    /// f32 but summed in f64, and its loss is formed in f64 from the unrounded logsumexp: a
    /// vocabulary-long f32 running sum lost 3.6e-5 of SmolLM2's loss (49152 classes), where the
    /// device sums by trees (`Shaders/cross_entropy.comp` is the twin).
    func crossEntropy(_ ignoreIndex: Int32, _ logits: Tensor, _ labels: Tensor, _ outputs: [Tensor]) throws {
        let (rows, classes) = (logits.shape[0], logits.shape[1])
        let label = pointer(labels).assumingMemoryBound(to: Int32.self)
        let logsumexp = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        var rowLoss = [Double](repeating: 0, count: rows)
        withFloats(logits) { l in
            rowLoss.withUnsafeMutableBufferPointer { rowLoss in
                parallelForRows(rows, columns: classes) { r in
                    for row in r {
                        let base = row * classes
                        let largest = VectorMath.maximum(l + base, count: classes)
                        let sum = VectorMath.sumOfExponentials(l + base, count: classes, minus: largest)
                        let lse = Double(largest) + log(sum), y = Int(label[row])
                        logsumexp[row] = Float(lse)
                        rowLoss[row] = (0..<classes).contains(y) ? lse - Double(l[base + y]) : .nan
                    }
                }
            }
        }
        var total = 0.0, counted = 0
        for row in 0..<rows where label[row] != ignoreIndex {
            total += rowLoss[row]
            counted += 1
        }
        pointer(outputs[0]).assumingMemoryBound(to: Float.self)[0] = Float(total / Double(counted))
    }

    /// `(softmax − onehot)·dLoss / counted rows`; ignored rows get 0.
    func crossEntropyBackward(_ ignoreIndex: Int32, _ operands: CrossEntropyBackwardOperands<Tensor>, _ out: Tensor) throws {
        let (logits, labels) = (operands.logits, operands.labels)
        let (rows, classes) = (logits.shape[0], logits.shape[1])
        let label = pointer(labels).assumingMemoryBound(to: Int32.self)
        let logsumexp = pointer(operands.logsumexp).assumingMemoryBound(to: Float.self)
        let counted = (0..<rows).filter { label[$0] != ignoreIndex }.count
        let factor = pointer(operands.lossGradient).assumingMemoryBound(to: Float.self)[0] / Float(counted)
        withFloats(logits) { l in
            producing(out) { d in
                parallelForRows(rows, columns: classes) { r in
                    for row in r {
                        let y = Int(label[row])
                        let target: SoftmaxGradientTarget = label[row] == ignoreIndex ? .ignored : (0..<classes).contains(y) ? .column(y) : .outside
                        Self.softmaxGradient(l + row * classes, count: classes, logsumexp: logsumexp[row], target, factor: factor, into: d + row * classes)
                    }
                }
            }
        }
    }

    /// One row (or a chunk of one) of `(softmax − onehot)·factor` from its logits and the row's
    /// logsumexp; `out` may be `logits`. `avx512` as `VectorMath.sumOfExponentials`'.
    static func softmaxGradient(_ logits: UnsafePointer<Float>, count: Int, logsumexp: Float, _ target: SoftmaxGradientTarget, factor: Float,
                                into out: UnsafeMutablePointer<Float>, avx512: Bool = VectorMath.hasAVX512) {
        switch target {
        case .ignored: out.update(repeating: 0, count: count)
        case .outside: out.update(repeating: .nan, count: count)
        case .column(let y):
            // The label's element read before a write in place covers it.
            let labelGradient = (0..<count).contains(y) ? (VectorMath.exp(logits[y] - logsumexp) - 1) * factor : 0
            if avx512 {
                lowrank_exp_scaled(count, logits, logsumexp, factor, out)
            } else {
                mapVectors(0..<count, logits, into: out) { VectorMath.exp($0 - logsumexp) * factor }
            }
            if (0..<count).contains(y) { out[y] = labelGradient }
        }
    }
}

/// Which element of a row of logits the one-hot target marks.
enum SoftmaxGradientTarget {
    /// The row's label is the ignore index: its gradient is 0.
    case ignored
    /// The label lies outside the vocabulary: NaN, as the loss is.
    case outside
    /// The label's column within this row, or, for a chunk of the vocabulary, relative to the chunk's first column (possibly outside it).
    case column(Int)
}
