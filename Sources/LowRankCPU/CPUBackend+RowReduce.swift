import LowRankCore

extension CPUBackend {
    func rowReduce(_ input: Tensor, _ out: Tensor, root: Bool) throws {
        rowSumsOfSquares(input, into: pointer(out).assumingMemoryBound(to: Float.self), root: root)
    }

    /// Each row's sum of squares (or its square root) into `o`.
    func rowSumsOfSquares(_ input: Tensor, into o: UnsafeMutablePointer<Float>, root: Bool) {
        let columns = input.shape.columns, rows = input.shape.rows
        if input.dtype != .f32 { return widenedRowSums(input, o, root: root) }
        withFloats(input) { a in
            parallelForRows(rows, columns: columns, elementsPerThread: 1 << 15) { r in
                for row in r {
                    let s = sumOfSquares(a + row * columns, count: columns)
                    o[row] = root ? s.squareRoot() : s
                }
            }
        }
    }

    /// f32 sum of squares in eight interleaved partial sums (what the SIMD unit and the
    /// rounding both like better than one long chain).
    func sumOfSquares(_ p: UnsafePointer<Float>, count: Int) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            acc += v * v
            i += 8
        }
        var s = acc.sum()
        while i < count { s += p[i] * p[i]; i += 1 }
        return s
    }
}
