import LowRank
@testable import LowRankCore
import Testing

/// A LoRA or DoRA layer whose input carries no gradient (the first block's projections) gets a
/// backward that forms no dx (`LoRAOptions.inputGradient`): its adapter's gradients are those of
/// the full backward, bit for bit, on each backend (neither forms dx then).
@Suite("Backward without the input's gradient")
struct InputGradientTests {
    @Test(arguments: BackendKind.allCases, [false, true])
    func adapterGradientsAreThoseOfTheFullBackward(_ kind: BackendKind, dora: Bool) throws {
        try onBackend(kind) { try Self.compareWithTheFullBackward(on: $0, dora: dora) }
    }

    static func compareWithTheFullBackward(on backend: any Backend, dora: Bool) throws {
        let (t, dIn, dOut, r) = (6, 8, 5, 3)
        let tensor = { (shape: Shape, seed: UInt64) in try Tensor(randomValues(shape.count, seed: seed, scale: 0.5), shape: shape, on: backend) }
        let (x, w, a, b, target) = (try tensor([t, dIn], 1), try tensor([dOut, dIn], 2), try tensor([r, dIn], 3), try tensor([dOut, r], 4), try tensor([t, dOut], 5))
        let m = try Ops.rowL2Norm(w)
        let options = LoRAOptions(scale: 2)

        let g = Graph(backend: backend)
        let input = try g.input("x", x.shape, dtype: .f32)
        let (pa, pb) = (try g.parameter("A", a, trainable: true), try g.parameter("B", b, trainable: true))
        let weight = try g.parameter("W", w)
        let y = dora
            ? try g.dora(input, weight: weight, a: pa, b: pb, magnitude: try g.parameter("m", m),
                         weightNormSquared: try g.parameter("norm", try Ops.rowSumOfSquares(w)), options: DoRAOptions(lora: options, trainableMagnitude: false))
            : try g.lora(input, weight: weight, a: pa, b: pb, options: options)
        let loss = try g.meanSquaredError(y, try g.parameter("target", target))
        let planned = try g.compile(outputs: try g.gradients(of: loss, for: [pa, pb]), check: false).run([input: x])

        // The same gradients by the ops themselves, dx formed.
        let forward = dora
            ? try Ops.execute(.doraForward(DoRAOptions(lora: options, trainableMagnitude: false)), [x, w, a, b, m, try Ops.rowSumOfSquares(w)])
            : try Ops.execute(.loraForward(options), [x, w, a, b])
        let dLoss = try Ops.execute(.meanSquaredErrorBackward, [forward[0], target, try Tensor([1], shape: [1], on: backend)])[0]
        let full = dora
            ? try Ops.execute(.doraBackward(DoRAOptions(lora: options, trainableMagnitude: false)),
                              [dLoss, x, w, a, b, forward[1], forward[2], forward[3]])
            : try Ops.execute(.loraBackward(options), [dLoss, x, w, a, b, forward[1]])
        #expect(try planned[0].floats() == full[1].floats())
        #expect(try planned[1].floats() == full[2].floats())
        #expect(Self.inputGradientFlags(g) == [false])
    }

    /// Of two layers in a row, the second's backward forms dx (the first's adapter needs it), the first's does not.
    @Test func onlyTheFirstLayerSkipsIt() throws {
        let backend = CPUBackend.shared
        let tensor = { (shape: Shape, seed: UInt64) in try Tensor(randomValues(shape.count, seed: seed, scale: 0.5), shape: shape, on: backend) }
        let g = Graph(backend: backend)
        let input = try g.input("x", [4, 6], dtype: .f32)
        var (h, trained) = (input, [GraphTensor]())
        for layer in 0..<2 {
            let seed = UInt64(10 * layer)
            let (a, b) = (try g.parameter("A\(layer)", try tensor([2, 6], seed + 1), trainable: true), try g.parameter("B\(layer)", try tensor([6, 2], seed + 2), trainable: true))
            h = try g.lora(h, weight: try g.parameter("W\(layer)", try tensor([6, 6], seed + 3)), a: a, b: b, options: LoRAOptions(scale: 2))
            trained += [a, b]
        }
        let loss = try g.meanSquaredError(h, try g.parameter("target", try tensor([4, 6], 99)))
        _ = try g.gradients(of: loss, for: trained)
        // Backward runs last layer first.
        #expect(Self.inputGradientFlags(g) == [true, false])
    }

    /// `inputGradient` of each LoRA or DoRA backward in the graph, in the order they were added.
    static func inputGradientFlags(_ g: Graph) -> [Bool] {
        g.nodes.compactMap { node in
            switch node.kind {
            case .op(.loraBackward(let o)): o.inputGradient
            case .op(.doraBackward(let o)): o.lora.inputGradient
            default: nil
            }
        }
    }
}
