import Glibc
import LowRankCore

extension CPUBackend {
    /// Each pair (i, i + D/2) of every head rotated by `position·invFreq[i]` (backwards when
    /// `inverse`), the angle an f32 product and its cosine and sine in f32, as Hugging Face forms them.
    func rope(inverse: Bool, _ inputs: [Tensor], _ out: Tensor) throws {
        let x = inputs[0]
        let (t, heads, d) = (x.shape[0], x.shape[1], x.shape[2]), half = d / 2
        let frequencies = pointer(inputs[1]).assumingMemoryBound(to: Float.self)
        let positions = pointer(inputs[2]).assumingMemoryBound(to: Int32.self)
        withFloats(x) { xv in
            producing(out) { y in
                parallelFor(t * heads, minimumPerThread: Swift.max(1, (1 << 13) / d)) { r in
                    for row in r {
                        let position = Float(positions[row / heads]), base = row * d
                        for i in 0..<half {
                            let angle = position * frequencies[i]
                            let (c, s) = (cosf(angle), inverse ? -sinf(angle) : sinf(angle))
                            let (x1, x2) = (xv[base + i], xv[base + i + half])
                            y[base + i] = x1 * c - x2 * s
                            y[base + i + half] = x2 * c + x1 * s
                        }
                    }
                }
            }
        }
    }
}
