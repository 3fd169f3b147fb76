import Glibc
import LowRankCore

extension CPUBackend {
    /// Causal softmax attention with grouped KV heads as PyTorch's CPU flash attention runs it:
    /// per (sequence, query head, query block), a packed row's sequences each a sequence of its own:
    /// key blocks through sgemm and an online softmax,
    /// `out = Σ exp(s − max)·v / Σ exp(s − max)` and `logsumexp` (`Shaders/attention.comp` is the twin).
    /// Scores and products are f32 (bfloat16 products with f32 sums under `medium` for a bfloat16
    /// model, `CPUBackend+AttentionProducts.swift`); each row's running denominator is f64.
    func attention(_ o: AttentionOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let blocks = try AttentionBlocks(o, q: inputs[0], k: inputs[1], starts: o.packed ? starts(inputs[3]) : nil)
        withFloats(Array(inputs[0...2])) { views in
            withAttentionOperands([views[1], views[2]], counts: [inputs[1].shape.count, inputs[2].shape.count], bfloat16: attentionRoundsToBFloat16(o)) { kv in
                attention(blocks, q: views[0], k: kv[0], v: kv[1], outputs)
            }
        }
    }

    private func starts(_ tensor: Tensor) -> UnsafePointer<Int32> { UnsafePointer(pointer(tensor).assumingMemoryBound(to: Int32.self)) }

    /// Attention over the caches' first `past` rows and then the new ones: both copied into one
    /// run of keys and one of values (the op reads the caches; the caller appends to them).
    func cachedAttention(scale: Float?, _ operands: CachedAttentionOperands<Tensor>, _ outputs: [Tensor]) throws {
        let past = Int(pointer(operands.past).assumingMemoryBound(to: Int32.self).pointee), t = operands.q.shape[0]
        let capacity = operands.keyCache.shape[0]
        guard (0...capacity).contains(past) else {
            throw LowRankError(.invalidArgument, "cached_attention: past is \(past) but the KV cache holds \(capacity) rows",
                               context: [("op", "cached_attention")])
        }
        let blocks = try AttentionBlocks(AttentionOptions(sequenceLength: max(t, 1), scale: scale), q: operands.q, k: operands.k, past: past)
        let (cached, new) = (past * blocks.kvStride, t * blocks.kvStride)
        withFloats([operands.q, operands.k, operands.v, operands.keyCache, operands.valueCache]) { views in
            withScratch(2 * (cached + new)) { keys in
                let values = keys + cached + new
                for (run, cache, rows) in [(keys, views[3], views[1]), (values, views[4], views[2])] {
                    run.update(from: cache, count: cached)
                    (run + cached).update(from: rows, count: new)
                }
                attention(blocks, q: views[0], k: AttentionOperand(floats: keys, bfloat16: nil), v: AttentionOperand(floats: values, bfloat16: nil), outputs)
            }
        }
    }

    private func attention(_ blocks: AttentionBlocks, q: UnsafeMutablePointer<Float>, k: AttentionOperand, v: AttentionOperand, _ outputs: [Tensor]) {
        let logsumexp = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        producing(outputs[0]) { out in
            parallelFor(blocks.queryBlocks.count * blocks.hq, minimumPerThread: 1) { items in
                withScratch(AttentionBlocks.queryRows * AttentionBlocks.keyRows) { scores in
                    withAttentionScratch(bfloat16: k.bfloat16 != nil, rows: AttentionBlocks.queryRows, extent: blocks.extent) { products in
                        var largest = [Float](repeating: 0, count: AttentionBlocks.queryRows)
                        var sums = [Double](repeating: 0, count: AttentionBlocks.queryRows)
                        for item in items {
                            let ((sequence, rows), h) = (blocks.queryBlocks[item / blocks.hq], item % blocks.hq)
                            let qRows = q + blocks.qOffset(rows.lowerBound, h), oRows = out + blocks.qOffset(rows.lowerBound, h)
                            if let products { packBlock(qRows, m: rows.count, k: blocks.d, lda: blocks.qStride, into: products.query) }
                            largest.withUnsafeMutableBufferPointer { $0.update(repeating: -.infinity) }
                            sums.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
                            for keys in blocks.keyBlocks(through: rows, of: sequence) {
                                let first = keys.lowerBound == sequence.lowerBound
                                let kv = blocks.kvOffset(keys.lowerBound, h / blocks.group)
                                blockProduct(qRows, transpose: false, k, at: kv, transpose: true, scores, m: rows.count, n: keys.count, k: blocks.d,
                                             alpha: blocks.scale, beta: 0, strides: (blocks.qStride, blocks.kvStride, keys.count), scratch: products,
                                             packedA: products?.query)
                                for i in 0..<rows.count {
                                    let p = scores + i * keys.count, seen = blocks.visible(row: rows.lowerBound + i, keys)
                                    guard seen > 0 else { p.update(repeating: 0, count: keys.count); continue }
                                    let running = VectorMath.maximum(p, count: seen, atLeast: largest[i])
                                    let blockSum = VectorMath.sumOfExponentials(p, count: seen, minus: running, into: p)
                                    (p + seen).update(repeating: 0, count: keys.count - seen)
                                    // A larger maximum rescales what earlier key blocks summed.
                                    if !first && running > largest[i] {
                                        let correction = VectorMath.exp(largest[i] - running)
                                        sums[i] *= Double(correction)
                                        VectorMath.scale(oRows + i * blocks.qStride, count: blocks.d, by: correction)
                                    }
                                    largest[i] = running
                                    sums[i] += blockSum
                                }
                                blockProduct(scores, transpose: false, v, at: kv, transpose: false, oRows, m: rows.count, n: blocks.d, k: keys.count,
                                             alpha: 1, beta: first ? 0 : 1, strides: (keys.count, blocks.kvStride, blocks.qStride), scratch: products)
                            }
                            for i in 0..<rows.count {
                                VectorMath.scale(oRows + i * blocks.qStride, count: blocks.d, by: Float(1 / sums[i]))
                                logsumexp[(rows.lowerBound + i) * blocks.hq + h] = Float(Double(largest[i]) + log(sums[i]))
                            }
                        }
                    }
                }
            }
        }
    }

    /// One pass per (sequence, KV head): for each query head of its group, each query block and each
    /// key block it sees, recompute `P = exp(s − logsumexp)` and `dS = P·(G·vᵀ − Σ G⊙out)`, then
    /// add `Pᵀ·G` to dv, `dSᵀ·q` to dk and `dS·k` to dq (block products as the forward's; the query
    /// block's q and G packed once for all its key blocks). That pass alone writes those rows of dq,
    /// dk and dv, always in the same order, so results do not depend on threads.
    func attentionBackward(_ o: AttentionOptions, _ operands: AttentionBackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let blocks = try AttentionBlocks(o, q: operands.q, k: operands.k, starts: operands.starts.map(starts))
        let logsumexp = pointer(operands.logsumexp).assumingMemoryBound(to: Float.self)
        let read = [operands.gradient, operands.q, operands.k, operands.v]
        withFloats(read + [operands.out]) { views in
            withAttentionOperands(Array(views[0..<4]), counts: read.map(\.shape.count), bfloat16: attentionRoundsToBFloat16(o)) { gqkv in
                let (g, out) = (gqkv[0], views[4])
                withScratch(blocks.t * blocks.hq) { delta in
                    parallelForRows(blocks.t * blocks.hq, columns: blocks.d) { r in
                        for index in r { delta[index] = VectorMath.dot(g.floats + index * blocks.d, out + index * blocks.d, count: blocks.d) }
                    }
                    producing(outputs[0]) { dq in
                        producing(outputs[1]) { dk in
                            producing(outputs[2]) { dv in
                                let pass = AttentionBackwardPass(blocks: blocks, g: g, q: gqkv[1], k: gqkv[2], v: gqkv[3], logsumexp: logsumexp, delta: delta,
                                                                 dq: dq, dk: dk, dv: dv)
                                parallelFor(blocks.sequences.count * blocks.hkv, minimumPerThread: 1) { items in
                                    withScratch(2 * AttentionBlocks.queryRows * AttentionBlocks.keyRows) { scratch in
                                        withAttentionScratch(bfloat16: g.bfloat16 != nil, rows: Swift.max(AttentionBlocks.queryRows, AttentionBlocks.keyRows), extent: blocks.extent) { products in
                                            for item in items {
                                                run(pass, sequence: blocks.sequences[item / blocks.hkv], kvHead: item % blocks.hkv, scratch: scratch, products: products)
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

    /// One (sequence, KV head) of `pass`, with `2·queryRows·keyRows` floats of `scratch` for P and dS.
    private func run(_ pass: AttentionBackwardPass, sequence: Range<Int>, kvHead kh: Int, scratch: UnsafeMutablePointer<Float>,
                     products: AttentionProductScratch?) {
        let (blocks, g, q, k, v, dq, dk, dv) = (pass.blocks, pass.g, pass.q, pass.k, pass.v, pass.dq, pass.dk, pass.dv)
        let (p, ds) = (scratch, scratch + AttentionBlocks.queryRows * AttentionBlocks.keyRows)
        let heads = (kh * blocks.group)..<((kh + 1) * blocks.group)
        for row in sequence {
            (dk + blocks.kvOffset(row, kh)).update(repeating: 0, count: blocks.d)
            (dv + blocks.kvOffset(row, kh)).update(repeating: 0, count: blocks.d)
            (dq + blocks.qOffset(row, heads.lowerBound)).update(repeating: 0, count: heads.count * blocks.d)
        }
        // Every block of dk and dv sums its terms by head and then by query block, dq's by key block.
        for h in heads {
            for queries in blocks.queryBlocks(seeing: sequence, of: sequence) {
                let m = queries.count, at = blocks.qOffset(queries.lowerBound, h)
                if let products {
                    packBlock(q.floats + at, m: m, k: blocks.d, lda: blocks.qStride, into: products.query)
                    packBlock(g.floats + at, m: m, k: blocks.d, lda: blocks.qStride, into: products.gradient)
                }
                for keys in blocks.keyBlocks(through: queries, of: sequence) {
                    let kv = blocks.kvOffset(keys.lowerBound, kh), n = keys.count
                    blockProduct(q.floats + at, transpose: false, k, at: kv, transpose: true, p, m: m, n: n, k: blocks.d,
                                 alpha: blocks.scale, beta: 0, strides: (blocks.qStride, blocks.kvStride, n), scratch: products, packedA: products?.query)
                    blockProduct(g.floats + at, transpose: false, v, at: kv, transpose: true, ds, m: m, n: n, k: blocks.d,
                                 alpha: 1, beta: 0, strides: (blocks.qStride, blocks.kvStride, n), scratch: products, packedA: products?.gradient)
                    for i in 0..<m {
                        let index = (queries.lowerBound + i) * blocks.hq + h
                        let seen = blocks.visible(row: queries.lowerBound + i, keys)
                        let (pRow, dsRow, visible) = (p + i * n, ds + i * n, Swift.max(seen, 0))
                        let (rowLogsumexp, rowDelta) = (pass.logsumexp[index], pass.delta[index])
                        forEachVector(0..<visible) { j, lanes in
                            let probability = VectorMath.exp(FloatVector(pRow + j, count: lanes) - rowLogsumexp)
                            probability.store(to: pRow + j, count: lanes)
                            (probability * (FloatVector(dsRow + j, count: lanes) - rowDelta)).store(to: dsRow + j, count: lanes)
                        }
                        (pRow + visible).update(repeating: 0, count: n - visible)
                        (dsRow + visible).update(repeating: 0, count: n - visible)
                    }
                    blockProduct(p, transpose: true, g, at: at, transpose: false, dv + kv, m: n, n: blocks.d, k: m,
                                 alpha: 1, beta: 1, strides: (n, blocks.qStride, blocks.kvStride), scratch: products)
                    blockProduct(ds, transpose: true, q, at: at, transpose: false, dk + kv, m: n, n: blocks.d, k: m,
                                 alpha: blocks.scale, beta: 1, strides: (n, blocks.qStride, blocks.kvStride), scratch: products)
                    blockProduct(ds, transpose: false, k, at: kv, transpose: false, dq + at, m: m, n: blocks.d, k: n,
                                 alpha: blocks.scale, beta: 1, strides: (n, blocks.kvStride, blocks.qStride), scratch: products)
                }
            }
        }
    }
}

/// What attention's backward reads and writes, shared by its threads (each writes only its own
/// sequences' and KV heads' rows of dq, dk and dv).
private struct AttentionBackwardPass {
    let blocks: AttentionBlocks
    let g, q, k, v: AttentionOperand
    let logsumexp, delta, dq, dk, dv: UnsafeMutablePointer<Float>
}
