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
                         groups: (min(span.count, 65535), (span.count + 65534) / 65535, 1))
        }
    }

    /// `out = scale · Σ_b partial[b]` over the leading axis of `partial` (`Shaders/sum_blocks.comp`).
    func encodeSumBlocks(_ partial: Tensor, into out: Tensor, scale: Float) throws {
        let count = out.shape.count, blocks = partial.shape[0]
        try dispatch(KernelKey(shader: "sum_blocks.comp", defines: ["C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32], bindings: 2),
                     [.read(partial), .write(out)], push: PushConstants([UInt32(count), UInt32(blocks), scale]),
                     groups: (min((count + 255) / 256, 65535), 1, 1))
    }
}
