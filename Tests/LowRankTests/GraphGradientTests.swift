import Foundation
import LowRank
import Testing

/// Every differentiable op of the graph, checked by central finite differences: the loss is
/// `mean((op(...) − R)²)` for a fixed random R, every element of every trainable input is moved by
/// ±h on the CPU backend, and the gradients the graph derives, on each backend, must match the
/// differences within 2e-4 of the largest (central differences at h = 0.02 and 0.04 combined by
/// Richardson's extrapolation; measured: at most 1.0e-4 (attention's dq), the differences' f32 noise being about
/// 5e-7 absolute).
enum GradientCase: String, CaseIterable, CustomTestStringConvertible {
    case linear, matmulTransposedA, broadcastAdd, broadcastMul, scale, scaleRows, rowSumOfSquares
    case silu, gelu, geluTanh, gatedGeluTanh, meanSquaredError, reshape, loraWithDropout, doraInputAndMagnitude
    case embedding, rmsNorm, rmsNormOfSum, rmsNormBesideItsInput, rope, ropePair, groupedAttention, crossEntropy, linearCrossEntropy, transpose
    var testDescription: String { rawValue }

    /// Trainable inputs: name, shape, value scale.
    var parameters: [(String, Shape, Float)] {
        switch self {
        case .linear: [("x", [5, 6], 1), ("W", [7, 6], 0.5), ("bias", [7], 0.5)]
        case .matmulTransposedA: [("a", [6, 5], 1), ("b", [6, 4], 1)]
        case .broadcastAdd, .broadcastMul: [("a", [4, 6], 1), ("b", [6], 1)]
        case .scale, .rowSumOfSquares, .reshape: [("a", [4, 6], 1)]
        case .scaleRows: [("a", [4, 6], 1), ("factors", [4], 1)]
        case .silu, .gelu, .geluTanh: [("x", [4, 6], 3)]
        case .gatedGeluTanh: [("gate", [4, 6], 3), ("up", [4, 6], 1)]
        case .meanSquaredError: [("prediction", [4, 6], 1), ("target", [4, 6], 1)]
        // The bias trains as PEFT's bias="lora_only" trains it.
        case .loraWithDropout: [("x", [6, 8], 1), ("A", [3, 8], 0.5), ("B", [5, 3], 0.5), ("bias", [5], 0.5)]
        // The DoRA norm is a constant in backward (PEFT, the DoRA paper §4.3), so A and B get
        // that detached gradient, which the golden cases check; x and m get the true one.
        case .doraInputAndMagnitude: [("x", [6, 8], 1), ("m", [5], 1), ("bias", [5], 0.5)]
        case .embedding: [("table", [5, 4], 1)]
        case .rmsNorm: [("x", [3, 8], 1), ("weight", [8], 1)]
        case .rmsNormOfSum: [("x", [3, 8], 1), ("r", [3, 8], 1), ("weight", [8], 1)]
        case .rmsNormBesideItsInput: [("x", [3, 8], 1), ("weight", [8], 1)]
        case .rope: [("x", [3, 2, 8], 1)]
        case .ropePair: [("q", [3, 4, 8], 1), ("k", [3, 2, 8], 1)]
        // Two sequences of 3 rows, 4 query heads over 2 KV heads; q and k large enough that the
        // softmax moves (else dq and dk are near the differences' f32 noise, about 5e-7).
        case .groupedAttention: [("q", [6, 4, 8], 3), ("k", [6, 2, 8], 3), ("v", [6, 2, 8], 1)]
        case .crossEntropy: [("logits", [5, 7], 2)]
        case .linearCrossEntropy: [("hidden", [5, 6], 1), ("W", [7, 6], 0.5)]
        case .transpose: [("x", [2, 3, 4], 1)]
        }
    }

    /// The op under test on the trainable inputs `p` (frozen tensors made here).
    func build(_ g: Graph, _ p: [GraphTensor]) throws -> GraphTensor {
        let frozen = { (name: String, shape: Shape, seed: UInt64) in
            try g.parameter(name, try Tensor(randomValues(shape.count, seed: seed, scale: 0.5), shape: shape, on: g.backend))
        }
        switch self {
        case .linear: return try g.linear(p[0], weight: p[1], bias: p[2])
        case .matmulTransposedA: return try g.apply(.matmul(MatmulOptions(transposeA: true, alpha: 0.5)), [p[0], p[1]])[0]
        case .broadcastAdd: return try g.add(p[0], p[1])
        case .broadcastMul: return try g.mul(p[0], p[1])
        case .scale: return try g.scale(p[0], by: -0.7)
        case .scaleRows: return try g.apply(.scaleRows, [p[0], p[1]])[0]
        case .rowSumOfSquares: return try g.apply(.rowSumOfSquares, [p[0]])[0]
        case .silu: return try g.activation(.silu, p[0])
        case .gelu: return try g.activation(.gelu, p[0])
        case .geluTanh: return try g.activation(.geluTanh, p[0])
        case .gatedGeluTanh: return try g.gatedActivation(.geluTanh, gate: p[0], up: p[1])
        case .meanSquaredError: return try g.meanSquaredError(p[0], p[1])
        case .reshape: return try g.mul(try g.reshape(p[0], [3, 8]), try frozen("c", [3, 8], 40))
        case .loraWithDropout:
            return try g.lora(p[0], weight: try frozen("W", [5, 8], 41), bias: p[3], a: p[1], b: p[2],
                              options: LoRAOptions(scale: 1.5, dropout: 0.3, seed: 7))
        case .embedding:
            return try g.apply(.embedding, [p[0], try g.parameter("ids", try Tensor(ids: [3, 0, 3, 4, 1, 3], on: g.backend))])[0]
        case .rmsNorm:
            return try g.apply(.rmsNorm(epsilon: 1e-5), [p[0], p[1]])[0]
        case .rope:
            let frequencies = try g.parameter("inv_freq", try Tensor((0..<4).map { powf(100, -Float($0) / 4) }, shape: [4], on: g.backend))
            return try g.apply(.rope(inverse: false), [p[0], frequencies, try g.parameter("positions", try Tensor(ids: [0, 5, 1000], on: g.backend))])[0]
        case .rmsNormBesideItsInput:
            // x's gradient through the later scale is gathered first, then added in the norm's backward pass.
            return try g.add(try g.rmsNorm(p[0], weight: p[1], epsilon: 1e-5), try g.scale(p[0], by: 0.5))
        case .rmsNormOfSum:
            // Both outputs reach the loss, as the residual stream and its norm do in a decoder block.
            let (normed, sum) = try g.rmsNorm(p[0], plus: p[1], weight: p[2], epsilon: 1e-5)
            return try g.add(normed, try g.scale(sum, by: 0.5))
        case .ropePair:
            let frequencies = try g.parameter("inv_freq", try Tensor((0..<4).map { powf(100, -Float($0) / 4) }, shape: [4], on: g.backend))
            let (q, k) = try g.rope(p[0], p[1], inverseFrequencies: frequencies, positions: try g.parameter("positions", try Tensor(ids: [0, 5, 1000], on: g.backend)))
            // k's 48 values broadcast over q's two halves, so that both outputs reach the loss.
            return try g.add(try g.reshape(q, [2, 48]), try g.reshape(k, [48]))
        case .groupedAttention:
            return try g.apply(.attention(AttentionOptions(sequenceLength: 3)), p)[0]
        case .crossEntropy:
            return try g.apply(.crossEntropy(ignoreIndex: -100), [p[0], try g.parameter("labels", try Tensor(ids: [2, -100, 6, 0, 2], on: g.backend))])[0]
        case .linearCrossEntropy:
            // Chunks of 3 classes and 2 rows on the CPU (the Vulkan backend rounds them up to one block).
            return try g.linearCrossEntropy(p[0], weight: p[1], labels: try g.parameter("labels", try Tensor(ids: [2, -100, 6, 0, 2], on: g.backend)),
                                            options: LinearCrossEntropyOptions(vocabularyChunk: 3, rowChunk: 2))
        case .transpose:
            return try g.mul(try g.transpose(p[0], axes: [2, 0, 1]), try frozen("c", [4, 2, 3], 46))
        case .doraInputAndMagnitude:
            let w = randomValues(40, seed: 43, scale: 0.5)
            let wsq = (0..<5).map { r in w[(r * 8)..<(r * 8 + 8)].reduce(0) { $0 + $1 * $1 } }
            let weightNormSquared = try g.parameter("wsq", try Tensor(wsq, shape: [5], on: g.backend))
            return try g.dora(p[0], weight: try g.parameter("W", try Tensor(w, shape: [5, 8], on: g.backend)),
                              bias: p[2], a: try frozen("A", [3, 8], 44), b: try frozen("B", [5, 3], 45), magnitude: p[1],
                              weightNormSquared: weightNormSquared, options: DoRAOptions(lora: LoRAOptions(scale: 0.8)))
        }
    }
}

@Suite("Graph gradients")
struct GraphGradientTests {
    /// The loss graph of `c` on `backend`: its tensors, the loss, the gradients and plans for both.
    struct LossGraph {
        let tensors: [Tensor]
        let loss: ExecutionPlan
        let gradients: ExecutionPlan

        init(_ c: GradientCase, on backend: any Backend) throws {
            let g = Graph(backend: backend)
            tensors = try c.parameters.enumerated().map { i, p in
                try Tensor(randomValues(p.1.count, seed: UInt64(30 + i), scale: p.2), shape: p.1, on: backend)
            }
            let p = try zip(c.parameters, tensors).map { try g.parameter($0.0, $1, trainable: true) }
            var y = try c.build(g, p)
            if y.shape.count != 1 {
                let r = try g.parameter("R", try Tensor(randomValues(y.shape.count, seed: 50, scale: 0.1), shape: y.shape, on: backend))
                y = try g.meanSquaredError(y, r)
            }
            loss = try g.compile(outputs: [y], check: false)
            gradients = try g.compile(outputs: try g.gradients(of: y, for: p), check: false)
        }

        func lossValue() throws -> Double { Double(try loss.run([:])[0].floats()[0]) }
    }

    @Test(arguments: GradientCase.allCases)
    func matchesFiniteDifferences(_ c: GradientCase) throws {
        let reference = try LossGraph(c, on: try BackendKind.cpu.open())
        let h: Float = 2e-2
        var numeric: [[Double]] = []
        for t in reference.tensors {
            let values = try t.floats()
            let differences = { (step: Float) in
                try centralDifferences(of: values, step: step) { moved in
                    try t.assign(moved)
                    return try reference.lossValue()
                }
            }
            let (near, far) = (try differences(h), try differences(2 * h))
            try t.assign(values)
            // Richardson's extrapolation cancels the h² term, so h can be large enough that the
            // loss's f32 rounding stays small beside the difference.
            numeric.append(zip(near, far).map { (4 * $0 - $1) / 3 })
        }
        for kind in BackendKind.allCases {
            try onBackend(kind) { backend in
                let analytic = try LossGraph(c, on: backend).gradients.run([:])
                for (i, (got, want)) in zip(analytic, numeric).enumerated() {
                    let error = relativeError(try got.floats(), want)
                    #expect(error <= 2e-4, "\(c) d\(c.parameters[i].0) on \(backend.identifier): \(error)")
                }
            }
        }
    }
}
