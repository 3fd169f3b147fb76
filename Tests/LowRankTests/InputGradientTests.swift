import LowRank
import Testing

/// A LoRA or DoRA layer whose input carries no gradient (the first block's projections) gets a
/// backward that forms no dx (`LoRAOptions.inputGradient`): its adapter's gradients are those of
/// the full backward, bit for bit.
@Suite("Backward without the input's gradient")
struct InputGradientTests {
    @Test(arguments: [false, true])
    func adapterGradientsAreThoseOfTheFullBackward(dora: Bool) throws {
        let backend = CPUBackend.shared
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
    }
}
