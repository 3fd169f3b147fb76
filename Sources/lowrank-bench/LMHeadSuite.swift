import LowRank
import LowRankBench

extension BenchContext {
    /// The LM head and its loss, forward and backward to the hidden states, through the graph
    /// executor: fused (`linear_cross_entropy`, no `[T, V]` logits) against `matmul` +
    /// `cross_entropy`, with T the shape's tokens, d its d_in and the vocabulary its d_out; the
    /// weight in the run's dtype, a frozen head; then the fused head with its weight's gradient too
    /// (`modules_to_save` training the LM head) and the token embedding's backward, the scatter of
    /// [T, d] into a [V, d] table. The transient bytes column shows what the logits cost.
    func lmHeadSuite() throws -> [BenchRecord] {
        let (t, d, vocabulary) = (shape.t, shape.dIn, shape.dOut)
        let hidden = try Tensor(Self.values(t * d, seed: 21, scale: 1), shape: [t, d], on: backend)
        let weight = try Tensor(Self.values(vocabulary * d, seed: 22, scale: 0.05), shape: [vocabulary, d], dtype: dtype, on: backend)
        let labels = try Tensor(ids: (0..<t).map { Int32(($0 * 7919) % vocabulary) }, on: backend)
        // Forward and backward are each one [T, d]·[d, V] product; the fused backward forms the logits again.
        let flops = 4 * Double(t) * Double(d) * Double(vocabulary)
        let bytes = 2 * Double(vocabulary * d * dtype.byteSize) + 3 * Double(t * d * 4)

        func step(fused: Bool, trainedHead: Bool = false) throws -> BenchCase {
            let g = Graph(backend: backend)
            let h = try g.parameter("hidden", hidden, trainable: true), w = try g.parameter("lm_head.weight", weight, trainable: trainedHead)
            let y = try g.parameter("labels", labels)
            let loss = fused ? try g.linearCrossEntropy(h, weight: w, labels: y)
                : try g.crossEntropy(try g.linear(h, weight: w), labels: y, ignoreIndex: -100)
            let plan = try g.compile(outputs: [loss] + (try g.gradients(of: loss, for: trainedHead ? [h, w] : [h])), check: false)
            // The weight's gradient is one more [V, T]·[T, d] product, written as a [V, d] f32 table.
            let (work, traffic) = trainedHead ? (flops * 1.5, bytes + Double(vocabulary * d * 4)) : (flops, bytes)
            return ("lm_head + loss", (fused ? "fused linear_cross_entropy" : "matmul + cross_entropy") + (trainedHead ? ", d weight" : ""),
                    work, traffic, { try plan.run([:]) })
        }
        let gradient = try Tensor(Self.values(t * d, seed: 23, scale: 1), shape: [t, d], on: backend)
        let scatter: BenchCase = ("embedding_backward", "scatter in token order", Double(t * d), Double(vocabulary * d * 4 + t * d * 4 + t * 4),
                                  { try Ops.execute(.embeddingBackward(vocabulary: vocabulary), [labels, gradient]) })
        return try measure("lmhead", [try step(fused: false), try step(fused: true), try step(fused: true, trainedHead: true), scatter])
    }
}
