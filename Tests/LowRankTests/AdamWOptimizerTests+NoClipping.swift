import Foundation
import LowRank
import Testing

extension AdamWOptimizerTests {
    /// Hugging Face's `max_grad_norm = 0` is no clipping (`--clip 0` was refused): gradients 100×
    /// any sensible norm step exactly as with clipping off; a negative limit is still refused.
    @Test func zeroMaxNormIsNoClipping() throws {
        let backend = CPUBackend.shared
        let start = randomValues(48, seed: 140), gradient = randomValues(48, seed: 141, scale: 100)
        func stepped(_ maxNorm: Float?) throws -> [Float] {
            let parameter = try Tensor(start, shape: [6, 8], on: backend)
            let optimizer = try AdamWOptimizer(parameters: [("w", parameter)], settings: .init(learningRate: 0.1, maxGradientNorm: maxNorm))
            for _ in 0..<2 { try optimizer.step(gradients: [try Tensor(gradient, shape: [6, 8], on: backend)]) }
            return try parameter.floats()
        }
        #expect(try stepped(0) == stepped(nil))
        #expect(try stepped(0) != stepped(1))
        #expect { try stepped(-1) } throws: { "\($0)".contains("0 (no clipping) or positive") }
    }
}
