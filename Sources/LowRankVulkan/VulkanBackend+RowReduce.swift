import LowRankCore

/// `Shaders/row_reduce.comp`: `Σ a[row, :]²`, or its square root, one workgroup per row.
struct RowReduceKernel: Kernel {
    struct Push: BitwiseCopyable {
        var rows: UInt32
        var columns: UInt32
        var firstRow: UInt32
        var total: UInt32
    }

    static let shader = Shader.rowReduce
    /// A float dtype, or a block-quantized one (bound whole, decoded by `quant.glsl`).
    var a: DType
    var root: Bool

    var defines: [String: String] { a.operandDefines("A") + a.quantFormat.defines + ["ROOT": root.define] }

    static var variants: [RowReduceKernel] {
        (DType.floats + DType.quantized).flatMap { a in [false, true].map { RowReduceKernel(a: a, root: $0) } }
    }
}

/// `Shaders/sum_blocks.comp`: `out[i] = scale · Σ_b partial[b, i]`, in block order.
struct SumBlocksKernel: Kernel {
    struct Push: BitwiseCopyable {
        var count: UInt32
        var blocks: UInt32
        var scale: Float
    }

    static let shader = Shader.sumBlocks
    var c: DType
    /// Adds onto the f32 values `out` holds.
    var accumulate: Bool

    var defines: [String: String] { c.operandDefines("C", written: true) + ["ACCUMULATE": accumulate.define] }

    static var variants: [SumBlocksKernel] { DType.floats.map { SumBlocksKernel(c: $0, accumulate: false) } + [SumBlocksKernel(c: .f32, accumulate: true)] }
}

extension VulkanBackend {
    /// Row sum of squares and L2 norm: one workgroup per row, in windows of rows when the input is
    /// larger than one binding.
    func encodeRowReduce(_ input: Tensor, _ out: Tensor, root: Bool) throws {
        let rows = out.shape.count, columns = input.shape.columns
        let quantized = input.dtype.isQuantized
        let kernel = RowReduceKernel(a: input.dtype, root: root)
        let window = quantized ? max(rows, 1) : windowElements([input], unit: columns) ?? max(rows, 1)
        for first in stride(from: 0, to: rows, by: window) {
            let span = first..<min(first + window, rows)
            let source: TensorBinding = quantized ? .read(input) : .read(input, (span.lowerBound * columns)..<(span.upperBound * columns))
            try dispatch(kernel, [source, .write(out, span)],
                         push: .init(rows: UInt32(span.count), columns: UInt32(columns), firstRow: UInt32(first), total: UInt32(input.shape.count)),
                         groups: rowGroups(span.count))
        }
    }

    /// `out[elements] = scale · Σ_b partial[b]` over the first `blocks` blocks of `partial`, each of
    /// `elements.count` values; with `accumulate`, added onto the f32 values `out` holds there.
    func encodeSumBlocks(_ partial: Tensor, blocks: Int? = nil, into out: Tensor, at elements: Range<Int>? = nil,
                         scale: Float, accumulate: Bool = false) throws {
        let elements = elements ?? 0..<out.shape.count, blocks = blocks ?? partial.shape[0]
        precondition(!accumulate || out.dtype == .f32, "sums gather in f32")
        try dispatch(SumBlocksKernel(c: out.dtype, accumulate: accumulate), [.read(partial, 0..<(blocks * elements.count)), .write(out, elements)],
                     push: .init(count: UInt32(elements.count), blocks: UInt32(blocks), scale: scale),
                     groups: (min((elements.count + 255) / 256, 65535), 1, 1))
    }
}
