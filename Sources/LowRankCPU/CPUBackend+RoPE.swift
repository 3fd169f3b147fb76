import Glibc
import LowRankCore

extension CPUBackend {
    /// Each pair (i, i + D/2) of every head rotated by `position·invFreq[i]` (backwards when
    /// `inverse`), the angle an f32 product and its cosine and sine in f32, as Hugging Face forms them.
    /// The cosines and sines are formed once per token and shared by its heads, and by a pair's
    /// second tensor (inputs[3] into outputs[1]).
    func rope(inverse: Bool, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let x = inputs[0]
        let (t, d) = (x.shape[0], x.shape[2]), half = d / 2
        let frequencies = pointer(inputs[1]).assumingMemoryBound(to: Float.self)
        let positions = pointer(inputs[2]).assumingMemoryBound(to: Int32.self)
        withScratch(2 * t * half) { table in
            let (cosines, sines) = (table, table + t * half)
            parallelFor(t * half, minimumPerThread: 1 << 12) { r in
                for index in r {
                    let angle = Float(positions[index / half]) * frequencies[index % half]
                    cosines[index] = cosf(angle)
                    sines[index] = inverse ? -sinf(angle) : sinf(angle)
                }
            }
            for (x, out) in zip([inputs[0]] + inputs.dropFirst(3), outputs) {
                let heads = x.shape[1]
                withFloats(x) { xv in
                    producing(out) { y in
                        parallelFor(t * heads, minimumPerThread: Swift.max(1, (1 << 13) / d)) { r in
                            for row in r {
                                let base = row * d, c = cosines + row / heads * half, s = sines + row / heads * half
                                for i in 0..<half {
                                    let (x1, x2) = (xv[base + i], xv[base + i + half])
                                    y[base + i] = x1 * c[i] - x2 * s[i]
                                    y[base + i + half] = x2 * c[i] + x1 * s[i]
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
