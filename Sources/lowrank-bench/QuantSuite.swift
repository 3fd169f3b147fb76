import LowRank
import LowRankBench

extension BenchContext {
    /// Quantized weights, per format: the fused dequant-matmul (`x·Wᵀ` forward, `G·W` for dx)
    /// against dequantizing W into a transient f32 copy first, and quantizing itself; each row
    /// carries the weight's device bits per parameter, read from the allocator.
    func quantSuite() throws -> [BenchRecord] {
        let (t, dIn, dOut) = (shape.t, shape.dIn, shape.dOut)
        let (x, w, _, _, _, g) = try layer()
        let e = Double(dtype.byteSize)
        var results = try measure("quant", [
            ("x·Wᵀ", "\(dtype) weight (reference)", 2.0 * Double(t * dIn * dOut), e * Double(t * dIn + dOut * dIn + t * dOut),
             { [try Ops.matmul(x, w, transposeB: true)] }),
        ])
        for format in DType.allCases where format.isQuantized && dIn % (format.rowBlockElements ?? 1) == 0 {
            // What the allocator hands out for one such weight, with no other work in between.
            try backend.synchronize()
            let before = backend.memoryStatistics()[0].currentBytes
            let probe = try Tensor(empty: [dOut, dIn], dtype: format, on: backend)
            let bits = Double(backend.memoryStatistics()[0].currentBytes - before) * 8 / Double(probe.shape.count)
            // The types the engine only reads (from GGUF files) get blocks of bytes 0x11: valid in
            // every GGML type, its f16 scales 0x1111 (5.2e-4); the product's cost does not depend on the values.
            let wq = format.hasQuantizer ? try Ops.cast(w, to: format)
                : try [UInt8](repeating: 0x11, count: format.byteCount(elements: dOut * dIn)).withUnsafeBytes {
                    try Tensor(bytes: $0, shape: [dOut, dIn], dtype: format, on: backend)
                }
            let weightBytes = Double(wq.byteCount)
            let forwardFlops = 2.0 * Double(t * dIn * dOut)
            let cases: [BenchCase] = [
                ("x·Wᵀ", "fused dequant (\(format))", forwardFlops, e * Double(t * dIn + t * dOut) + weightBytes,
                 { [try Ops.matmul(x, wq, transposeB: true)] }),
                ("x·Wᵀ", "dequantize, then matmul (\(format))", forwardFlops, e * Double(t * dIn + t * dOut) + weightBytes + 8 * Double(dOut * dIn),
                 { [try Ops.matmul(x, try Ops.cast(wq, to: .f32), transposeB: true)] }),
                ("G·W (dx)", "fused dequant (\(format))", forwardFlops, e * Double(t * dOut + t * dIn) + weightBytes,
                 { [try Ops.matmul(g, wq)] }),
                ("G·W (dx)", "dequantize, then matmul (\(format))", forwardFlops, e * Double(t * dOut + t * dIn) + weightBytes + 8 * Double(dOut * dIn),
                 { [try Ops.matmul(g, try Ops.cast(wq, to: .f32))] }),
            ] + (format.hasQuantizer ? [("quantize", "\(format)", 0, e * Double(dOut * dIn) + weightBytes, { [try Ops.cast(w, to: format)] })] : [])
            results += try measure("quant", cases).map { var r = $0; r.weightBitsPerParameter = bits; return r }
        }
        return results
    }
}
