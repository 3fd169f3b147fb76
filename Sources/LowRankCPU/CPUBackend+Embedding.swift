import LowRankCore

extension CPUBackend {
    /// Rows of the table by id, each widened from the table's dtype straight into the output (not
    /// the whole table first: a bf16 vocabulary of 32000×2048 was 256 MiB of f32 a step); an id
    /// outside the table gives a row of NaN, as on the device.
    func embedding(_ table: Tensor, _ ids: Tensor, _ out: Tensor) throws {
        let (vocabulary, d) = (table.shape[0], table.shape[1])
        let id = pointer(ids).assumingMemoryBound(to: Int32.self)
        let rows = pointer(table), rowBytes = d * table.dtype.byteSize
        producing(out) { y in
            parallelForRows(ids.shape[0], columns: d) { tokens in
                for t in tokens {
                    let row = Int(id[t])
                    if (0..<vocabulary).contains(row) {
                        convertToFloat(rows + row * rowBytes, dtype: table.dtype, count: d, into: y + t * d)
                    } else {
                        (y + t * d).update(repeating: .nan, count: d)
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
