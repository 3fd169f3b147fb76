import LowRankCore

/// `Shaders/embedding.comp`: one invocation per output element.
struct EmbeddingKernel: Kernel {
    struct Push: BitwiseCopyable {
        var count: UInt32
        var columns: UInt32
        var vocabulary: UInt32
    }

    static let shader = Shader.embedding
    var table: DType
    var c: DType

    var defines: [String: String] { table.operandDefines("W") + c.operandDefines("C", written: true) }

    static var variants: [EmbeddingKernel] { DType.cover(operands: 2).map { EmbeddingKernel(table: $0[0], c: $0[1]) } }
}

extension VulkanBackend {
    /// table, ids -> rows. Its backward, a scatter-add, has no kernel here (see `unsupportedReason`)
    /// and runs on the CPU.
    func encodeEmbedding(_ inputs: [Tensor], _ out: Tensor) throws {
        let table = inputs[0]
        try dispatchPerElement(EmbeddingKernel(table: table.dtype, c: out.dtype), count: out.shape.count, window: nil) { _ in
            ([.read(table), .read(inputs[1]), .write(out)],
             .init(count: UInt32(out.shape.count), columns: UInt32(table.shape[1]), vocabulary: UInt32(table.shape[0])))
        }
    }
}
