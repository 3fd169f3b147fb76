import Glibc
import LowRankCore

extension CPUBackend {
    /// Causal softmax attention with grouped KV heads, one (row, query head) at a time: scores,
    /// their maximum, `out = Σ exp(s − max)·v / Σ exp(s − max)` and `logsumexp`, all in f32
    /// (`Shaders/attention.comp` is the twin).
    func attention(_ o: AttentionOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let dims = AttentionDims(o, q: inputs[0], k: inputs[1])
        let logsumexp = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        withFloats(Array(inputs[0...2])) { views in
            let (q, k, v) = (views[0], views[1], views[2])
            producing(outputs[0]) { out in
                parallelFor(dims.t * dims.hq, minimumPerThread: 16) { r in
                    var scores = [Float](repeating: 0, count: dims.sequence)
                    for index in r {
                        let (row, h) = (index / dims.hq, index % dims.hq)
                        let keys = dims.keys(row), qBase = index * dims.d
                        var largest = -Float.infinity
                        for j in keys {
                            let s = dims.dot(q, qBase, k, dims.kvBase(j, h)) * dims.scale
                            scores[j - keys.lowerBound] = s
                            largest = Swift.max(largest, s)
                        }
                        var sum: Float = 0
                        for j in keys {
                            let e = expf(scores[j - keys.lowerBound] - largest)
                            scores[j - keys.lowerBound] = e
                            sum += e
                        }
                        logsumexp[index] = largest + logf(sum)
                        for c in 0..<dims.d {
                            var acc: Float = 0
                            for j in keys { acc += scores[j - keys.lowerBound] * v[dims.kvBase(j, h) + c] }
                            out[qBase + c] = acc / sum
                        }
                    }
                }
            }
        }
    }

    /// dq per (row, query head) over its keys; dk and dv per (key row, KV head) over the query
    /// heads of its group and the rows that see it, in order: no two threads write one value.
    /// `P = exp(s − logsumexp)`, `dS = P·(G·v − Σ G⊙out)`.
    func attentionBackward(_ o: AttentionOptions, _ operands: AttentionBackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let dims = AttentionDims(o, q: operands.q, k: operands.k)
        let logsumexp = pointer(operands.logsumexp).assumingMemoryBound(to: Float.self)
        withFloats([operands.gradient, operands.q, operands.k, operands.v, operands.out]) { views in
            let (g, q, k, v, out) = (views[0], views[1], views[2], views[3], views[4])
            withScratch(dims.t * dims.hq) { delta in
                for index in 0..<(dims.t * dims.hq) { delta[index] = dims.dot(g, index * dims.d, out, index * dims.d) }
                // The softmax weight and score gradient of query (row, h) for key j.
                let weights = { (index: Int, j: Int) -> (p: Float, ds: Float) in
                    let h = index % dims.hq, kv = dims.kvBase(j, h)
                    let p = expf(dims.dot(q, index * dims.d, k, kv) * dims.scale - logsumexp[index])
                    return (p, p * (dims.dot(g, index * dims.d, v, kv) - delta[index]))
                }
                producing(outputs[0]) { dq in
                    parallelFor(dims.t * dims.hq, minimumPerThread: 16) { r in
                        for index in r {
                            let base = index * dims.d
                            for c in 0..<dims.d { dq[base + c] = 0 }
                            for j in dims.keys(index / dims.hq) {
                                let ds = weights(index, j).ds * dims.scale, kv = dims.kvBase(j, index % dims.hq)
                                for c in 0..<dims.d { dq[base + c] += ds * k[kv + c] }
                            }
                        }
                    }
                }
                producing(outputs[1]) { dk in
                    producing(outputs[2]) { dv in
                        parallelFor(dims.t * dims.hkv, minimumPerThread: 16) { r in
                            for kvIndex in r {
                                let (j, kh) = (kvIndex / dims.hkv, kvIndex % dims.hkv), base = kvIndex * dims.d
                                for c in 0..<dims.d { dk[base + c] = 0; dv[base + c] = 0 }
                                for h in (kh * dims.group)..<((kh + 1) * dims.group) {
                                    for row in dims.queries(j) {
                                        let index = row * dims.hq + h
                                        let (p, ds) = weights(index, j)
                                        for c in 0..<dims.d {
                                            dv[base + c] += p * g[index * dims.d + c]
                                            dk[base + c] += ds * dims.scale * q[index * dims.d + c]
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Shapes and index arithmetic of one attention op.
private struct AttentionDims {
    let t, hq, hkv, d, group, sequence: Int
    let scale: Float

    init(_ o: AttentionOptions, q: Tensor, k: Tensor) {
        (t, hq, d, hkv) = (q.shape[0], q.shape[1], q.shape[2], k.shape[1])
        group = hq / hkv
        sequence = o.sequenceLength
        scale = o.scale(headDim: d)
    }

    /// The key rows query row `row` attends to: its sequence's start through itself.
    func keys(_ row: Int) -> ClosedRange<Int> { (row / sequence * sequence)...row }
    /// The query rows that attend to key row `j`: itself through its sequence's end.
    func queries(_ j: Int) -> ClosedRange<Int> { j...((j / sequence + 1) * sequence - 1) }
    /// Where key or value row `j` of query head `h`'s KV head starts.
    func kvBase(_ j: Int, _ h: Int) -> Int { (j * hkv + h / group) * d }

    func dot(_ a: UnsafeMutablePointer<Float>, _ i: Int, _ b: UnsafeMutablePointer<Float>, _ j: Int) -> Float {
        var s: Float = 0
        for c in 0..<d { s += a[i + c] * b[j + c] }
        return s
    }
}
