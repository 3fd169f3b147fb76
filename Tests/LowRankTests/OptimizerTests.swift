import Foundation
import LowRank
import Testing

@Suite("AdamW")
struct OptimizerTests {
    /// PyTorch's AdamW step in f64: the reference both backends are held to.
    static func referenceStep(_ p: inout [Double], _ m: inout [Double], _ v: inout [Double], _ g: [Float], _ o: AdamWOptions) {
        let (lr, b1, b2, eps, wd) = (Double(o.learningRate), Double(o.beta1), Double(o.beta2), Double(o.epsilon), Double(o.weightDecay))
        let t = Double(o.step)
        for i in p.indices {
            let gi = Double(g[i])
            p[i] *= 1 - lr * wd
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            let mHat = m[i] / (1 - pow(b1, t)), vHat = v[i] / (1 - pow(b2, t))
            p[i] -= lr * mHat / (vHat.squareRoot() + eps)
        }
    }

    /// Five steps on an f32 parameter (a shape that fills no workgroup evenly), weight decay on:
    /// parameter and both moments within 1e-6 of the f64 reference after every step.
    @Test(arguments: BackendKind.allCases)
    func matchesReference(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let shape: Shape = [37, 53]
            let start = randomValues(shape.count, seed: 90, scale: 0.5)
            let param = try Tensor(start, shape: shape, on: backend)
            let m = try Tensor([Float](repeating: 0, count: shape.count), shape: shape, on: backend)
            let v = try Tensor([Float](repeating: 0, count: shape.count), shape: shape, on: backend)
            var (p, mr, vr) = (start.map(Double.init), [Double](repeating: 0, count: shape.count), [Double](repeating: 0, count: shape.count))
            for step in 1...5 {
                let g = randomValues(shape.count, seed: UInt64(100 + step), scale: step == 3 ? 1e-4 : 1)
                let options = AdamWOptions(learningRate: 1e-2, weightDecay: 0.1, step: step)
                try Ops.adamW(param: param, grad: try Tensor(g, shape: shape, on: backend), m: m, v: v, options: options)
                Self.referenceStep(&p, &mr, &vr, g, options)
                #expect(relativeError(try param.floats(), p) <= 1e-6, "param after step \(step) on \(backend.identifier)")
                #expect(relativeError(try m.floats(), mr) <= 1e-6, "m after step \(step)")
                #expect(relativeError(try v.floats(), vr) <= 1e-6, "v after step \(step)")
            }
        }
    }

    /// Three steps of PyTorch's own AdamW (`tools/make_adamw_fixture.py`): parameter and moments
    /// after every step within 1e-6 of what it computed (its CPU kernels may fuse a multiply-add
    /// that ours round twice).
    @Test(arguments: BackendKind.allCases)
    func matchesPyTorch(_ kind: BackendKind) throws {
        let path = fixturePath("torch_adamw.safetensors")
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata["lr"] == "0.01" && file.metadata["weight_decay"] == "0.1" && file.metadata["eps"] == "1e-08")
        try onBackend(kind) { backend in
            let start = try file.floats("param0")
            let shape: Shape = [start.count]
            let param = try Tensor(start, shape: shape, on: backend)
            let m = try Tensor([Float](repeating: 0, count: start.count), shape: shape, on: backend)
            let v = try Tensor([Float](repeating: 0, count: start.count), shape: shape, on: backend)
            for step in 1...3 {
                let grad = try Tensor(try file.floats("grad\(step)"), shape: shape, on: backend)
                try Ops.adamW(param: param, grad: grad, m: m, v: v, options: AdamWOptions(learningRate: 1e-2, weightDecay: 0.1, step: step))
                for (name, tensor) in [("param", param), ("m", m), ("v", v)] {
                    let error = relativeError(try tensor.floats(), try file.floats("\(name)\(step)").map(Double.init))
                    #expect(error <= 1e-6, "\(name) after step \(step) on \(backend.identifier): \(error)")
                }
            }
        }
    }

    /// A bf16 parameter with an f16 gradient: updated in f32 and rounded once per step, so within
    /// bf16's rounding of the reference, and the backends agree to one bf16 step.
    @Test func sixteenBitParameters() throws {
        var results: [[Float]] = []
        for kind in BackendKind.allCases {
            try onBackend(kind) { backend in
                let shape: Shape = [300]
                let start = randomValues(shape.count, seed: 91, dtype: .bf16)
                let param = try Tensor(start, shape: shape, dtype: .bf16, on: backend)
                let m = try Tensor([Float](repeating: 0, count: 300), shape: shape, on: backend)
                let v = try Tensor([Float](repeating: 0, count: 300), shape: shape, on: backend)
                var (p, mr, vr) = (start.map(Double.init), [Double](repeating: 0, count: 300), [Double](repeating: 0, count: 300))
                for step in 1...3 {
                    let g = randomValues(300, seed: UInt64(110 + step), dtype: .f16)
                    let options = AdamWOptions(learningRate: 0.05, step: step)
                    try Ops.adamW(param: param, grad: try Tensor(g, shape: shape, dtype: .f16, on: backend), m: m, v: v, options: options)
                    Self.referenceStep(&p, &mr, &vr, g, options)
                }
                #expect(relativeError(try param.floats(), p) <= 1.0 / 64, "bf16 param on \(backend.identifier)")
                results.append(try param.floats())
            }
        }
        if results.count == 2 {
            for (a, b) in zip(results[0], results[1]) { #expect(abs(a - b) <= abs(a) / 128, "\(a) vs \(b)") }
        }
    }

    @Test(arguments: BackendKind.allCases)
    func rejectsMisuse(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let p = try Tensor([Float](repeating: 1, count: 6), shape: [2, 3], on: backend)
            let zeros = try Tensor([Float](repeating: 0, count: 6), shape: [2, 3], on: backend)
            let zeros16 = try Tensor([Float](repeating: 0, count: 6), shape: [2, 3], dtype: .bf16, on: backend)
            let wrongShape = try Tensor([Float](repeating: 0, count: 6), shape: [3, 2], on: backend)
            let options = AdamWOptions(learningRate: 1e-3, step: 1)
            #expect(throws: LowRankError.self) { try Ops.adamW(param: p, grad: wrongShape, m: zeros, v: zeros, options: options) }
            #expect(throws: LowRankError.self) { try Ops.adamW(param: p, grad: zeros, m: zeros16, v: zeros, options: options) }
            for bad in [AdamWOptions(learningRate: 1e-3, step: 0), AdamWOptions(learningRate: 1e-3, beta2: 1, step: 1),
                        AdamWOptions(learningRate: -1, step: 1), AdamWOptions(learningRate: 1e-3, epsilon: 0, step: 1)] {
                #expect(throws: LowRankError.self) { try Ops.adamW(param: p, grad: zeros, m: zeros, v: zeros, options: bad) }
            }
            #expect(try p.floats() == [Float](repeating: 1, count: 6), "a refused step leaves the parameter as it was")
        }
    }
}
