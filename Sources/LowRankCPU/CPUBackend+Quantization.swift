import COpenBLAS
import LowRankCore

extension CPUBackend {
    /// Elements of a weight panel: W's rows are widened or dequantized this many at a time, so a
    /// product never holds an f32 copy of a 16-bit or quantized W. 8 MiB: with 2 MiB panels
    /// OpenBLAS repacked x for every narrow panel and `x·Wᵀ` ran at half speed (T=512, d=2048).
    static let weightPanelElements = 1 << 21

    /// cast into or out of a block-quantized type (the float-to-float casts are in `CPUBackend+Elementwise.swift`).
    func quantizedCast(_ input: Tensor, _ out: Tensor) throws {
        if input.dtype.isQuantized {
            let quantizer = Quantizer(QuantizedLayout(input.dtype, elements: input.shape.count))
            let source = UnsafeRawPointer(pointer(input))
            producing(out) { o in
                parallelFor(out.shape.count, minimumPerThread: 1 << 14) { r in quantizer.dequantize(source, r, into: o + r.lowerBound) }
            }
        } else {
            withFloats(input) { v in Quantizer(QuantizedLayout(out.dtype, elements: out.shape.count)).quantize(v, into: pointer(out)) }
        }
    }

    /// Rows `rows` of W (`[wRows, columns]`, any dtype) as f32 into `panel`.
    func widen(_ w: Tensor, rows: Range<Int>, into panel: UnsafeMutablePointer<Float>) {
        let columns = w.shape.columns, elements = (rows.lowerBound * columns)..<(rows.upperBound * columns)
        let source = UnsafeRawPointer(pointer(w))
        if w.dtype.isQuantized {
            let quantizer = Quantizer(QuantizedLayout(w.dtype, elements: w.shape.count))
            parallelFor(elements.count, minimumPerThread: 1 << 14) { r in
                quantizer.dequantize(source, (elements.lowerBound + r.lowerBound)..<(elements.lowerBound + r.upperBound), into: panel + r.lowerBound)
            }
        } else {
            parallelFor(elements.count) { r in
                convertToFloat(source + (elements.lowerBound + r.lowerBound) * w.dtype.byteSize, dtype: w.dtype, count: r.count, into: panel + r.lowerBound)
            }
        }
    }

    /// `C[m, n] = alpha·op(A)·op(W) + beta·C` for a frozen weight W `[rows, columns]` of any dtype:
    /// f32 goes straight to sgemm; bfloat16 runs in bfloat16 under the `medium` matmul precision
    /// (`CPUBackend+BFloat16Products.swift`); other 16-bit and quantized weights are widened a panel
    /// of rows at a time. With `transposeW`, op(W) = Wᵀ (`x·Wᵀ`, n = rows), else W (`G·W`, n = columns).
    func weightProduct(_ a: UnsafePointer<Float>, transposeA: Bool = false, m: Int, _ w: Tensor, transposeW: Bool,
                       _ c: UnsafeMutablePointer<Float>, alpha: Float = 1, beta: Float, activations: ActivationPrecision = .weight) {
        if roundsActivations(for: w, activations) {
            return bfloat16Product(a, transposeA: transposeA, m: m, pointer(w).assumingMemoryBound(to: UInt16.self), rows: w.shape[0],
                                   columns: w.shape[1], transposeW: transposeW, c, alpha: alpha, beta: beta)
        }
        let rows = w.shape[0], columns = w.shape[1]
        // An empty W has no values to widen: sgemm then only applies beta (it never reads W).
        if w.dtype == .f32 || w.shape.count == 0 {
            let (n, k) = transposeW ? (rows, columns) : (columns, rows)
            return sgemm(a, transpose: transposeA, pointer(w).assumingMemoryBound(to: Float.self), transpose: transposeW, c,
                         m: m, n: n, k: k, alpha: alpha, beta: beta)
        }
        let panelRows = max(1, min(rows, Self.weightPanelElements / max(columns, 1)))
        let k = transposeW ? columns : rows
        let lda = transposeA ? m : k
        withScratch(panelRows * columns) { panel in
            for first in stride(from: 0, to: rows, by: panelRows) {
                let span = first..<min(rows, first + panelRows)
                widen(w, rows: span, into: panel)
                if transposeW {
                    // C[:, span] = alpha·op(A)·panelᵀ + beta·C[:, span]
                    sgemm(a, transpose: transposeA, panel, transpose: true, c + first, m: m, n: span.count, k: columns, alpha: alpha, beta: beta,
                          strides: (lda, columns, rows))
                } else {
                    // C += alpha·op(A)[:, span]·panel, the first panel applying beta.
                    let aSpan = transposeA ? a + first * m : a + first
                    sgemm(aSpan, transpose: transposeA, panel, transpose: false, c, m: m, n: columns, k: span.count, alpha: alpha,
                          beta: first == 0 ? beta : 1, strides: (lda, columns, columns))
                }
            }
        }
    }

    /// Each row's sum of squares of a 16-bit or quantized tensor, a panel of rows at a time.
    func widenedRowSums(_ input: Tensor, _ out: UnsafeMutablePointer<Float>, root: Bool) {
        let rows = input.shape.rows, columns = input.shape.columns
        let panelRows = max(1, min(rows, Self.weightPanelElements / max(columns, 1)))
        withScratch(panelRows * columns) { panel in
            for first in stride(from: 0, to: rows, by: panelRows) {
                let span = first..<min(rows, first + panelRows)
                widen(input, rows: span, into: panel)
                for row in span {
                    let s = sumOfSquares(panel + (row - first) * columns, count: columns)
                    out[row] = root ? s.squareRoot() : s
                }
            }
        }
    }
}
