import LowRankCore

/// `Shaders/rope.comp`: one invocation per rotated pair.
struct RoPEKernel: Kernel {
    struct Push: BitwiseCopyable {
        var pairs: UInt32
        var heads: UInt32
        var halfDim: UInt32
    }

    static let shader = Shader.rope
    var inverse: Bool
    var x: DType
    var c: DType

    var defines: [String: String] { ["INVERSE": inverse.define] + x.operandDefines("X") + c.operandDefines("C", written: true) }

    static var variants: [RoPEKernel] {
        [false, true].flatMap { inverse in DType.cover(operands: 2).map { RoPEKernel(inverse: inverse, x: $0[0], c: $0[1]) } }
    }
}

extension VulkanBackend {
    /// x, inverse frequencies, positions -> x rotated.
    func encodeRoPE(inverse: Bool, _ inputs: [Tensor], _ out: Tensor) throws {
        let x = inputs[0]
        let (heads, half) = (x.shape[1], x.shape[2] / 2), pairs = x.shape.count / 2
        try dispatchPerElement(RoPEKernel(inverse: inverse, x: x.dtype, c: out.dtype), count: pairs, window: nil) { _ in
            ([.read(x), .read(inputs[1]), .read(inputs[2]), .write(out)],
             .init(pairs: UInt32(pairs), heads: UInt32(heads), halfDim: UInt32(half)))
        }
    }
}
