import Foundation
import LowRank
import Testing

@Suite("AdamW optimizer")
struct AdamWOptimizerTests {
    /// Hugging Face's schedules: `get_constant_schedule_with_warmup`, `get_linear_schedule_with_warmup`
    /// and `get_cosine_schedule_with_warmup` at chosen steps.
    @Test func schedulesFollowHuggingFace() {
        let cases: [(LearningRateSchedule, [(Int, Double)])] = [
            (.constant(), [(0, 1), (100, 1)]),
            (.constant(warmupSteps: 4), [(0, 0), (1, 0.25), (4, 1), (9, 1)]),
            (.linear(warmupSteps: 2, totalSteps: 10), [(0, 0), (1, 0.5), (2, 1), (6, 0.5), (10, 0), (12, 0)]),
            (.cosine(warmupSteps: 2, totalSteps: 10), [(1, 0.5), (2, 1), (4, 0.5 * (1 + cos(Double.pi / 4))), (6, 0.5), (10, 0)]),
        ]
        for (schedule, points) in cases {
            for (step, want) in points {
                #expect(abs(schedule.multiplier(afterSteps: step) - want) < 1e-12, "\(schedule) after \(step)")
            }
        }
    }

    /// Two parameters whose gradients' global norm is 5× the limit: both are scaled by
    /// `maxNorm / (norm + 1e-6)` on the device before the step, within 1e-6 of an f64 reference;
    /// under the limit nothing is scaled.
    @Test(arguments: BackendKind.allCases)
    func clipsTheGlobalNorm(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            for factor in [5.0, 0.5] {
                let starts = [randomValues(40, seed: 120), randomValues(300, seed: 121)]
                var grads = [randomValues(40, seed: 122), randomValues(300, seed: 123)]
                let norm = grads.joined().reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                let maxNorm = norm / factor
                let params = try starts.map { try Tensor($0, shape: [$0.count], on: backend) }
                let optimizer = try AdamWOptimizer(parameters: [("a", params[0]), ("b", params[1])],
                                                   settings: .init(learningRate: 0.1, maxGradientNorm: Float(maxNorm)))
                try optimizer.step(gradients: try grads.map { try Tensor($0, shape: [$0.count], on: backend) })
                let coefficient = min(1, Double(Float(maxNorm)) / (norm + 1e-6))
                for i in 0..<2 {
                    var (p, m, v) = (starts[i].map(Double.init), [Double](repeating: 0, count: starts[i].count), [Double](repeating: 0, count: starts[i].count))
                    let clipped = grads[i].map { Float(Double($0) * coefficient) }
                    OptimizerTests.referenceStep(&p, &m, &v, clipped, AdamWOptions(learningRate: 0.1, step: 1))
                    let error = relativeError(try params[i].floats(), p)
                    #expect(error <= 1e-6, "parameter \(i), norm \(factor)× the limit, on \(backend.identifier): \(error)")
                }
            }
        }
    }

    /// Three steps, a save, a fresh optimizer loading it, two more steps: the same bits as five
    /// steps in one go (the schedule resumes at step 3 too).
    @Test(arguments: BackendKind.allCases)
    func savedStateResumesBitIdentically(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let settings = AdamWOptimizer.Settings(learningRate: 0.05, schedule: .cosine(warmupSteps: 1, totalSteps: 6), maxGradientNorm: 1)
            let grads = (0..<5).map { randomValues(64, seed: 130 + UInt64($0)) }
            let start = randomValues(64, seed: 129)
            let straight = try Tensor(start, shape: [8, 8], on: backend)
            let whole = try AdamWOptimizer(parameters: [("w", straight)], settings: settings)
            for g in grads { try whole.step(gradients: [try Tensor(g, shape: [8, 8], on: backend)]) }

            let resumed = try Tensor(start, shape: [8, 8], on: backend)
            let first = try AdamWOptimizer(parameters: [("w", resumed)], settings: settings)
            for g in grads.prefix(3) { try first.step(gradients: [try Tensor(g, shape: [8, 8], on: backend)]) }
            let path = temporaryPath("adamw-\(kind).safetensors")
            defer { try? FileManager.default.removeItem(atPath: path) }
            try first.save(to: path)
            let second = try AdamWOptimizer(parameters: [("w", resumed)], settings: settings)
            try second.load(from: path)
            #expect(second.step == 3)
            for g in grads.suffix(2) { try second.step(gradients: [try Tensor(g, shape: [8, 8], on: backend)]) }
            #expect(try resumed.bytes() == straight.bytes())

            // A state of other parameters, or not an optimizer state at all, is refused by name.
            let other = try AdamWOptimizer(parameters: [("w", try Tensor.zeros([4], on: backend))], settings: settings)
            #expect(throws: LowRankError.self) { try other.load(from: path) }
            let renamed = try AdamWOptimizer(parameters: [("v", try Tensor.zeros([8, 8], on: backend))], settings: settings)
            #expect(throws: LowRankError.self) { try renamed.load(from: path) }
            try SafetensorsFile.write([("w", straight)], to: path)
            #expect(throws: LowRankError.self) { try second.load(from: path) }
        }
    }

    @Test func rejectsMisuse() throws {
        let backend = try BackendKind.cpu.open()
        let p = try Tensor.zeros([3], on: backend)
        #expect(throws: LowRankError.self) { _ = try AdamWOptimizer(parameters: [("p", p)], settings: .init(learningRate: 1e-3, maxGradientNorm: -1)) }
        #expect(throws: LowRankError.self) {
            _ = try AdamWOptimizer(parameters: [("p", p)], settings: .init(learningRate: 1e-3, schedule: .cosine(warmupSteps: 5, totalSteps: 5)))
        }
        #expect(throws: LowRankError.self) { _ = try AdamWOptimizer(parameters: [("p", p)], settings: .init(learningRate: 1e-3, beta1: 1)) }
        #expect(throws: LowRankError.self) { _ = try AdamWOptimizer(parameters: [("p", p), ("p", p)], settings: .init(learningRate: 1e-3)) }
        let optimizer = try AdamWOptimizer(parameters: [("p", p)], settings: .init(learningRate: 1e-3))
        #expect(throws: LowRankError.self) { try optimizer.step(gradients: []) }
        #expect(throws: LowRankError.self) { try optimizer.step(gradients: [try Tensor.zeros([4], on: backend)]) }
        #expect(optimizer.step == 0)
    }
}
