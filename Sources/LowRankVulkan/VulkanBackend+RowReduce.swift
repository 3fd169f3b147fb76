import LowRankCore

extension VulkanBackend {
    /// Row sum of squares and L2 norm, `Shaders/row_reduce.comp`: one workgroup per row, in
    /// windows of rows when the input is larger than one binding.
    func encodeRowReduce(_ input: Tensor, _ out: Tensor, root: Bool) throws {
        let rows = out.shape.count, columns = input.shape.columns
        let quantized = input.dtype.isQuantized
        let key = KernelKey(shader: "row_reduce.comp",
                            defines: ["A_T": input.dtype.glslType, "ROOT": root ? "1" : "0", "QUANT": "\(input.dtype.quantCode)"], bindings: 2)
        let window = quantized ? max(rows, 1) : windowElements([input], unit: columns) ?? max(rows, 1)
        for first in stride(from: 0, to: rows, by: window) {
            let span = first..<min(first + window, rows)
            let source: TensorBinding = quantized ? .read(input) : .read(input, (span.lowerBound * columns)..<(span.upperBound * columns))
            try dispatch(key, [source, .write(out, span)],
                         push: PushConstants([UInt32(span.count), UInt32(columns), UInt32(first), UInt32(input.shape.count)]),
                         groups: rowGroups(span.count))
        }
    }

    /// `out[elements] = scale · Σ_b partial[b]` over the first `blocks` blocks of `partial`, each of
    /// `elements.count` values (`Shaders/sum_blocks.comp`); with `accumulate`, added onto the f32
    /// values `out` holds there.
    func encodeSumBlocks(_ partial: Tensor, blocks: Int? = nil, into out: Tensor, at elements: Range<Int>? = nil,
                         scale: Float, accumulate: Bool = false) throws {
        let elements = elements ?? 0..<out.shape.count, blocks = blocks ?? partial.shape[0]
        precondition(!accumulate || out.dtype == .f32, "sums gather in f32")
        let key = KernelKey(shader: "sum_blocks.comp", defines: ["C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32,
                                                                 "ACCUMULATE": accumulate ? "1" : "0"], bindings: 2)
        try dispatch(key, [.read(partial, 0..<(blocks * elements.count)), .write(out, elements)],
                     push: PushConstants([UInt32(elements.count), UInt32(blocks), scale]),
                     groups: (min((elements.count + 255) / 256, 65535), 1, 1))
    }
}
