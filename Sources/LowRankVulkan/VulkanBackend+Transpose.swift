import LowRankCore

/// `Shaders/transpose.comp`: one invocation per output element.
struct TransposeKernel: Kernel {
    struct Push: BitwiseCopyable {
        var dims: SIMD4<UInt32>
        var strides: SIMD4<UInt32>
        var count: UInt32
    }

    static let shader = Shader.transpose
    var x: DType
    var c: DType

    var defines: [String: String] { x.operandDefines("X") + c.operandDefines("C", written: true) }

    static var variants: [TransposeKernel] { DType.cover(operands: 2).map { TransposeKernel(x: $0[0], c: $0[1]) } }
}

extension VulkanBackend {
    /// x -> x with its axes reordered.
    func encodeTranspose(_ axes: [Int], _ x: Tensor, _ out: Tensor) throws {
        let layout = TransposeLayout(inputShape: x.shape, axes: axes)
        let push = TransposeKernel.Push(dims: SIMD4(layout.outputDims.map { UInt32($0) }), strides: SIMD4(layout.inputStrides.map { UInt32($0) }),
                                        count: UInt32(out.shape.count))
        try dispatchPerElement(TransposeKernel(x: x.dtype, c: out.dtype), count: out.shape.count, window: nil) { _ in ([.read(x), .write(out)], push) }
    }
}
