import Foundation
import LowRank
import Testing

/// A two-layer MLP with frozen random weights and a LoRA adapter on each layer, SiLU between,
/// trained by AdamW on a synthetic regression: the targets come from the same MLP with low-rank
/// changes to both weights, which the adapters can learn exactly.
struct MLPRegression {
    static let (tokens, dIn, hidden, dOut, rank) = (64, 16, 32, 8, 4)
    static let options = LoRAOptions(scale: 2)  // alpha 8, r 4

    let graph: Graph
    let x: GraphTensor
    let target: GraphTensor
    let loss: GraphTensor
    let adapters: [(name: String, tensor: Tensor)]
    let gradients: [GraphTensor]
    let plan: ExecutionPlan
    let feeds: [GraphTensor: Tensor]

    init(on backend: any Backend, check: Bool = false, checkpointing: Bool = false) throws {
        let (t, dIn, h, dOut, r) = (Self.tokens, Self.dIn, Self.hidden, Self.dOut, Self.rank)
        let w1 = randomValues(h * dIn, seed: 1, scale: 0.5), b1 = randomValues(h, seed: 2, scale: 0.1)
        let w2 = randomValues(dOut * h, seed: 3, scale: 0.3), b2 = randomValues(dOut, seed: 4, scale: 0.1)
        let xs = randomValues(t * dIn, seed: 5)
        // The teacher: W + u·vᵀ-style rank-2 changes, run on the host in f64.
        let teacher1 = Self.lowRankChange(rows: h, columns: dIn, seed: 6, scale: 0.15, base: w1)
        let teacher2 = Self.lowRankChange(rows: dOut, columns: h, seed: 7, scale: 0.15, base: w2)
        let ys = Self.forward(xs, teacher1, b1, teacher2, b2)

        let graph = Graph(backend: backend)
        let x = try graph.input("x", [t, dIn])
        (self.graph, self.x) = (graph, x)
        target = try graph.input("target", [t, dOut])
        let a1 = try Tensor(randomValues(r * dIn, seed: 8, scale: 0.25), shape: [r, dIn], on: backend)
        let a2 = try Tensor(randomValues(r * h, seed: 9, scale: 0.18), shape: [r, h], on: backend)
        let bZero1 = try Tensor.zeros([h, r], on: backend), bZero2 = try Tensor.zeros([dOut, r], on: backend)
        adapters = [("layer1.lora_A", a1), ("layer1.lora_B", bZero1), ("layer2.lora_A", a2), ("layer2.lora_B", bZero2)]
        let p = try adapters.map { try graph.parameter($0.name, $0.tensor, trainable: true) }
        let frozen = { (name: String, values: [Float], shape: Shape) in try graph.parameter(name, try Tensor(values, shape: shape, on: backend)) }
        let hidden = try graph.checkpointed {
            let z = try graph.lora(x, weight: try frozen("layer1.weight", w1, [h, dIn]), bias: try frozen("layer1.bias", b1, [h]),
                                   a: p[0], b: p[1], options: Self.options, label: "layer1")
            return try graph.activation(.silu, z)
        }
        let y = try graph.lora(hidden, weight: try frozen("layer2.weight", w2, [dOut, h]), bias: try frozen("layer2.bias", b2, [dOut]),
                               a: p[2], b: p[3], options: Self.options, label: "layer2")
        loss = try graph.meanSquaredError(y, target)
        gradients = try graph.gradients(of: loss, for: p, checkpointing: checkpointing)
        plan = try graph.compile(outputs: [loss] + gradients, check: check)
        feeds = [x: try Tensor(xs, shape: [t, dIn], on: backend), target: try Tensor(ys.map(Float.init), shape: [t, dOut], on: backend)]
    }

    /// Runs `steps` training steps and returns the loss before each.
    func train(steps: Int, settings: AdamWOptimizer.Settings = .init(learningRate: 1e-2)) throws -> [Float] {
        let optimizer = try AdamWOptimizer(parameters: adapters, settings: settings)
        return try (0..<steps).map { _ in
            let out = try plan.run(feeds)
            try optimizer.step(gradients: Array(out.dropFirst()))
            return try out[0].floats()[0]
        }
    }

    static func lowRankChange(rows: Int, columns: Int, seed: UInt64, scale: Float, base: [Float]) -> [Float] {
        let u = randomValues(rows * 2, seed: seed), v = randomValues(2 * columns, seed: seed + 100)
        return (0..<rows * columns).map { i in
            let (row, column) = (i / columns, i % columns)
            return base[i] + scale * (u[row * 2] * v[column] + u[row * 2 + 1] * v[columns + column])
        }
    }

    static func forward(_ x: [Float], _ w1: [Float], _ b1: [Float], _ w2: [Float], _ b2: [Float]) -> [Double] {
        let z = referenceMatmul(x, w1, m: tokens, n: hidden, k: dIn, transposeA: false, transposeB: true, bias: b1)
        let hidden = z.map { Float($0 / (1 + exp(-$0))) }
        return referenceMatmul(hidden, w2, m: tokens, n: dOut, k: Self.hidden, transposeA: false, transposeB: true, bias: b2)
    }
}

@Suite("Graph training")
struct GraphTrainingTests {
    /// 20 AdamW steps on each backend: the loss falls below a fifth of where it starts, and the two
    /// backends' losses agree step by step within 1e-4 relative.
    @Test func mlpLoRATrainsOnBothBackends() throws {
        try expectAgreeingLossCurves { try MLPRegression(on: $0).train(steps: 20) } falls: { $0.last! < $0[0] / 5 }
    }
}

/// Trains on each backend: every curve must satisfy `falls`, and the CPU and Vulkan losses must
/// agree step by step within 1e-4 relative.
func expectAgreeingLossCurves(_ train: (any Backend) throws -> [Float], falls: ([Float]) -> Bool) throws {
    var curves: [String: [Float]] = [:]
    for kind in BackendKind.allCases {
        try onBackend(kind) { backend in
            let losses = try train(backend)
            #expect(falls(losses), "\(backend.identifier): \(losses)")
            curves[kind.rawValue] = losses
        }
    }
    if let cpu = curves["cpu"], let vulkan = curves["vulkan"] {
        for (step, (a, b)) in zip(cpu, vulkan).enumerated() {
            #expect(abs(a - b) <= 1e-4 * abs(a), "step \(step): cpu \(a), vulkan \(b)")
        }
    }
}
