import LowRankCore

extension CPUBackend {
    /// mean((p − t)²), summed in f64 (`Shaders/mean_squared_error.comp` is the twin; it sums in f32
    /// by a fixed tree).
    func meanSquaredError(_ prediction: Tensor, _ target: Tensor, _ out: Tensor) throws {
        let count = prediction.shape.count
        withFloats(prediction) { p in
            withFloats(target) { t in
                var sum = 0.0
                for i in 0..<count {
                    let d = Double(p[i] - t[i])
                    sum += d * d
                }
                pointer(out).assumingMemoryBound(to: Float.self)[0] = Float(sum / Double(count))
            }
        }
    }

    /// 2·(p − t)·dLoss / count.
    func meanSquaredErrorBackward(_ prediction: Tensor, _ target: Tensor, _ lossGradient: Tensor, _ out: Tensor) throws {
        let count = prediction.shape.count
        let factor = 2 * pointer(lossGradient).assumingMemoryBound(to: Float.self)[0] / Float(count)
        withFloats(prediction) { p in
            withFloats(target) { t in
                producing(out) { c in
                    parallelFor(count) { r in
                        for i in r { c[i] = (p[i] - t[i]) * factor }
                    }
                }
            }
        }
    }
}
