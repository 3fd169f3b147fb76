@testable import LowRankCPU
import Testing

/// The CPU backend's rank-r products (`CPUBackend.rankProduct`: AVX-512F kernels that keep the rank
/// side in registers, sgemm for ranks past 64 or on other CPUs) in every layout the LoRA and DoRA
/// ops use, at ranks around the kernels' vector widths and odd long sides, split over threads or not:
/// within f32 summation error of float64, and beta = 0 never reads C.
@Suite("CPU rank-r products")
struct RankProductTests {
    /// One product of LoRA's: (transposeA, transposeB, m, n, k) for T tokens, a side d and rank r.
    static func layouts(t: Int, d: Int, r: Int) -> [(name: String, ta: Bool, tb: Bool, m: Int, n: Int, k: Int)] {
        [("x·Aᵀ", false, true, t, r, d), ("u·Bᵀ", false, true, t, d, r), ("Gᵀ·u", true, false, d, r, t),
         ("G·B", false, false, t, r, d), ("duᵀ·x", true, false, r, d, t), ("du·A", false, false, t, d, r)]
    }

    @Test(arguments: [1, 8, 16, 64, 65])
    func rankProductsMatchFloat64(r: Int) throws {
        // (T, d): one too small to split over threads, one that splits at every rank.
        var shapes = [(37, 131), (301, 259)]
        if r == 16 { shapes.append((613, 517)) }
        for (t, d) in shapes {
            for (index, layout) in Self.layouts(t: t, d: d, r: r).enumerated() {
                let (m, n, k) = (layout.m, layout.n, layout.k)
                let seed = UInt64(index * 16 + r)
                let a = randomValues(m * k, seed: seed), b = randomValues(k * n, seed: seed + 1), prior = randomValues(m * n, seed: seed + 2)
                var (sum, magnitude) = ([Double](repeating: 0, count: m * n), [Double](repeating: 0, count: m * n))
                for row in 0..<m {
                    for p in 0..<k {
                        let x = Double(layout.ta ? a[p * m + row] : a[row * k + p])
                        for column in 0..<n {
                            let product = x * Double(layout.tb ? b[column * k + p] : b[p * n + column])
                            sum[row * n + column] += product
                            magnitude[row * n + column] += abs(product)
                        }
                    }
                }
                for threads in [1, 3] {
                    let backend = CPUBackend(threads: threads, matmulPrecision: .highest)
                    for beta: Float in [0, 1] {
                        // beta = 0 must not read C: NaN there would survive into the result.
                        var c = beta == 0 ? [Float](repeating: .nan, count: m * n) : prior
                        a.withUnsafeBufferPointer { pa in
                            b.withUnsafeBufferPointer { pb in
                                c.withUnsafeMutableBufferPointer { pc in
                                    backend.rankProduct(pa.baseAddress!, transpose: layout.ta, pb.baseAddress!, transpose: layout.tb,
                                                        pc.baseAddress!, m: m, n: n, k: k, alpha: 0.75, beta: beta)
                                }
                            }
                        }
                        var worst = 0.0
                        for i in 0..<(m * n) {
                            let before = Double(beta) * Double(prior[i])
                            let bound = Double(k + 2) * 0x1p-24 * (0.75 * magnitude[i] + abs(before))
                            let error = abs(Double(c[i]) - (before + 0.75 * sum[i]))
                            worst = max(worst, error.isNaN ? .infinity : error / max(bound, .leastNormalMagnitude))
                        }
                        #expect(worst <= 1, "\(layout.name) T=\(t) d=\(d) r=\(r) beta=\(beta) on \(threads) threads: \(worst) of the bound")
                    }
                }
            }
        }
    }
}
