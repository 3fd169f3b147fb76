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
                        parallelForRows(t * heads, columns: d, elementsPerThread: 1 << 13) { r in
                            for row in r {
                                let (x, out) = (xv + row * d, y + row * d), c = cosines + row / heads * half, s = sines + row / heads * half
                                forEachVector(0..<half) { i, n in
                                    let (x1, x2) = (FloatVector(x + i, count: n), FloatVector(x + half + i, count: n))
                                    let (cos, sin) = (FloatVector(c + i, count: n), FloatVector(s + i, count: n))
                                    (x1 * cos - x2 * sin).store(to: out + i, count: n)
                                    (x2 * cos + x1 * sin).store(to: out + half + i, count: n)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
