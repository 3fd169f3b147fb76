import LowRankCore

extension CPUBackend {
    /// Rows of the table by id; an id outside the table gives a row of NaN, as on the device.
    func embedding(_ table: Tensor, _ ids: Tensor, _ out: Tensor) throws {
        let (vocabulary, d) = (table.shape[0], table.shape[1])
        let id = pointer(ids).assumingMemoryBound(to: Int32.self)
        withFloats(table) { w in
            producing(out) { y in
                parallelFor(ids.shape[0] * d, minimumPerThread: 1 << 14) { r in
                    for i in r {
                        let (t, c) = (i / d, i % d), row = Int(id[t])
                        y[i] = (0..<vocabulary).contains(row) ? w[row * d + c] : .nan
                    }
                }
            }
        }
    }

    /// d table: each token's G row added into its id's row, tokens in order (ids outside the table
    /// add nothing).
    func embeddingBackward(_ ids: Tensor, _ g: Tensor, _ out: Tensor) throws {
        let (vocabulary, d) = (out.shape[0], out.shape[1])
        let id = pointer(ids).assumingMemoryBound(to: Int32.self)
        let dTable = pointer(out).assumingMemoryBound(to: Float.self)
        dTable.update(repeating: 0, count: vocabulary * d)
        withFloats(g) { gv in
            // Columns split across threads, tokens in order within each: deterministic sums.
            parallelFor(d, minimumPerThread: 64) { columns in
                for t in 0..<ids.shape[0] where (0..<vocabulary).contains(Int(id[t])) {
                    let row = Int(id[t])
                    for c in columns { dTable[row * d + c] += gv[t * d + c] }
                }
            }
        }
    }
}
