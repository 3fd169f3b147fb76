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
                parallelFor(rows, minimumPerThread: Swift.max(1, (1 << 14) / classes)) { r in
                    for row in r {
                        let base = row * classes
                        var largest = -Float.infinity
                        for c in 0..<classes { largest = Swift.max(largest, l[base + c]) }
                        var sum = 0.0
                        for c in 0..<classes { sum += Double(expf(l[base + c] - largest)) }
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
                parallelFor(rows, minimumPerThread: Swift.max(1, (1 << 14) / classes)) { r in
                    for row in r {
                        let base = row * classes, y = Int(label[row])
                        let ignored = label[row] == ignoreIndex, valid = (0..<classes).contains(y)
                        for c in 0..<classes {
                            let softmax = expf(l[base + c] - logsumexp[row]) - (c == y ? 1 : 0)
                            d[base + c] = ignored ? 0 : valid ? softmax * factor : .nan
                        }
                    }
                }
            }
        }
    }
}
