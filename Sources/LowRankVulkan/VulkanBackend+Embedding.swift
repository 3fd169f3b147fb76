import LowRankCore

/// `Shaders/embedding.comp`: the lookup and its backward scatter.
struct EmbeddingKernel: Kernel {
    enum Pass: KernelPass {
        /// Rows of the table by id, one invocation per output element.
        case gather
        /// G's rows summed into their ids' rows in token order, each invocation owning a column of a block of rows.
        case scatter
    }

    struct Push: BitwiseCopyable {
        var count: UInt32
        var columns: UInt32
        var vocabulary: UInt32
        var tokens: UInt32
        var rowsPerBlock: UInt32
    }

    static let shader = Shader.embedding
    var pass: Pass
    /// The table's dtype (gather) or G's (scatter).
    var table: DType
    var c: DType

    var defines: [String: String] { pass.defines + table.operandDefines("W") + c.operandDefines("C", written: true) }

    static var variants: [EmbeddingKernel] {
        DType.cover(operands: 2).flatMap { [EmbeddingKernel(pass: .gather, table: $0[0], c: $0[1]), EmbeddingKernel(pass: .scatter, table: $0[0], c: .f32)] }
    }
}

extension VulkanBackend {
    /// Invocations the scatter aims for: each walks every token, so more blocks of rows buy parallelism with reads.
    static let scatterInvocations = 1 << 16

    /// table, ids -> rows.
    func encodeEmbedding(_ inputs: [Tensor], _ out: Tensor) throws {
        let table = inputs[0]
        try dispatchPerElement(EmbeddingKernel(pass: .gather, table: table.dtype, c: out.dtype), count: out.shape.count, window: nil) { _ in
            ([.read(table), .read(inputs[1]), .write(out)],
             .init(count: UInt32(out.shape.count), columns: UInt32(table.shape[1]), vocabulary: UInt32(table.shape[0]), tokens: 0, rowsPerBlock: 0))
        }
    }

    /// ids, G -> d table [vocabulary, d] f32, deterministic: every sum in token order, as on the CPU.
    func encodeEmbeddingBackward(_ ids: Tensor, _ g: Tensor, _ out: Tensor) throws {
        let (vocabulary, d) = (out.shape[0], out.shape[1])
        let blocks = max(1, min(vocabulary, Self.scatterInvocations / max(d, 1)))
        let rowsPerBlock = (vocabulary + blocks - 1) / blocks, count = d * ((vocabulary + rowsPerBlock - 1) / rowsPerBlock)
        try dispatchPerElement(EmbeddingKernel(pass: .scatter, table: g.dtype, c: .f32), count: count, window: nil) { _ in
            ([.read(g), .read(ids), .write(out)],
             .init(count: UInt32(count), columns: UInt32(d), vocabulary: UInt32(vocabulary), tokens: UInt32(ids.shape[0]), rowsPerBlock: UInt32(rowsPerBlock)))
        }
    }
}
