import CBFloat16GEMM

/// The adapters' rank-r products (`x·Aᵀ`, `u·Bᵀ`, `G·B`, `Gᵀ·u`, `duᵀ·x`, `du·A`): one side of C or
/// the sum is r. OpenBLAS packs both operands for every product, which costs most of the work when
/// one side is 16; `Sources/CBFloat16GEMM/skinny_gemm.c` keeps the rank side in registers and streams
/// the long operand once as stored, on AVX-512F. Every product and sum stays f32, each element summed
/// over k in order, so results are within f32 summation error of sgemm's.
extension CPUBackend {
    /// Whether this CPU runs the rank-r kernels (else `rankProduct` is `sgemm`).
    static let hasRankKernels = lowrank_skinny_supported() != 0

    /// The widest rank side the kernels take: wider ones go to sgemm.
    static let rankKernelWidth = Int(lowrank_skinny_max_width())

    /// Row-major `C[m, n] = alpha·op(A)·op(B) + beta·C` as `sgemm` (every operand packed), through
    /// the rank-r kernels when n or k is at most `rankKernelWidth` (and m, for `Aᵀ·B`), split over
    /// the long side on this backend's threads. Transposed narrow operands (A `[r, d]` of `x·Aᵀ`)
    /// are transposed once into scratch: r·d floats against the product's 2·T·d·r FLOPs.
    func rankProduct(_ a: UnsafePointer<Float>, transpose ta: Bool, _ b: UnsafePointer<Float>, transpose tb: Bool,
                     _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, alpha: Float, beta: Float) {
        let width = Self.rankKernelWidth
        guard Self.hasRankKernels, m > 0, n > 0, k > 0 else {
            return sgemm(a, transpose: ta, b, transpose: tb, c, m: m, n: n, k: k, alpha: alpha, beta: beta)
        }
        if n <= width {
            // x·Aᵀ, G·B, Gᵀ·u: C [m, n] row by row of op(A).
            withRows(of: b, transposed: tb, rows: k, columns: n) { pb in
                narrowProduct(a, transpose: ta, pb, c, m: m, n: n, k: k, alpha: alpha, beta: beta)
            }
        } else if k <= width && !ta {
            // u·Bᵀ, du·A: a rank-k update of C.
            withRows(of: b, transposed: tb, rows: k, columns: n) { pb in
                rankUpdate(a, pb, c, m: m, n: n, k: k, alpha: alpha, beta: beta)
            }
        } else if m <= width && ta && !tb {
            // duᵀ·x: Cᵀ [n, m] = op(B)ᵀ·A, narrow in m, then transposed into C.
            withScratch(n * m) { transposed in
                narrowProduct(b, transpose: true, a, transposed, m: n, n: m, k: k, alpha: alpha, beta: 0)
                parallelForRows(m, columns: n) { rows in
                    for i in rows {
                        let row = c + i * n
                        if beta == 0 {
                            for j in 0..<n { row[j] = transposed[j * m + i] }
                        } else {
                            for j in 0..<n { row[j] = transposed[j * m + i] + beta * row[j] }
                        }
                    }
                }
            }
        } else {
            sgemm(a, transpose: ta, b, transpose: tb, c, m: m, n: n, k: k, alpha: alpha, beta: beta)
        }
    }

    /// op(B) as `[rows, columns]` row-major: B itself, or B `[columns, rows]` transposed into scratch.
    private func withRows(of b: UnsafePointer<Float>, transposed: Bool, rows: Int, columns: Int, _ body: (UnsafePointer<Float>) -> Void) {
        guard transposed else { return body(b) }
        withScratch(rows * columns) { t in
            for j in 0..<columns {
                for p in 0..<rows { t[p * columns + j] = b[j * rows + p] }
            }
            body(t)
        }
    }

    /// `C[m, n] = alpha·op(A)·B + beta·C`, n ≤ `rankKernelWidth`, B `[k, n]`: C's rows split over threads.
    private func narrowProduct(_ a: UnsafePointer<Float>, transpose ta: Bool, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                               m: Int, n: Int, k: Int, alpha: Float, beta: Float) {
        let lda = ta ? m : k
        parallelFor(m, minimumPerThread: Swift.max(1, Self.sgemmFlopsPerThread / (2 * k * n))) { part in
            let first = part.lowerBound
            lowrank_skinny_narrow(ta ? 1 : 0, Int32(part.count), Int32(n), Int32(k), alpha, ta ? a + first : a + first * lda, Int32(lda),
                                  b, Int32(n), beta, c + first * n, Int32(n))
        }
    }

    /// `C[m, n] = alpha·A·B + beta·C`, k ≤ `rankKernelWidth`, A `[m, k]`, B `[k, n]`: C's longer side split over threads.
    private func rankUpdate(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                            m: Int, n: Int, k: Int, alpha: Float, beta: Float) {
        let splitsRows = m >= n
        parallelFor(splitsRows ? m : n, minimumPerThread: Swift.max(1, Self.sgemmFlopsPerThread / (2 * k * (splitsRows ? n : m)))) { part in
            let first = part.lowerBound
            let (pa, pb, pc) = splitsRows ? (a + first * k, b, c + first * n) : (a, b + first, c + first)
            lowrank_skinny_update(Int32(splitsRows ? part.count : m), Int32(splitsRows ? n : part.count), Int32(k), alpha, pa, Int32(k),
                                  pb, Int32(n), beta, pc, Int32(n))
        }
    }
}
