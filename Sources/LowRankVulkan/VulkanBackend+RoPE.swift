import LowRankCore

/// `Shaders/rope.comp`: one invocation per rotated pair, of x and then of a pair's second tensor y.
struct RoPEKernel: Kernel {
    struct Push: BitwiseCopyable {
        var pairs: UInt32
        var heads: UInt32
        var halfDim: UInt32
        var pairsY: UInt32
        var headsY: UInt32
    }

    /// y's dtype and its output's.
    struct Pair: Hashable {
        var y: DType
        var d: DType
    }

    static let shader = Shader.rope
    var inverse: Bool
    var x: DType
    var c: DType
    var pair: Pair?

    var defines: [String: String] {
        ["INVERSE": inverse.define, "PAIR": (pair != nil).define] + x.operandDefines("X") + c.operandDefines("C", written: true)
            + (pair?.y).operandDefines("Y") + (pair?.d).operandDefines("D", written: true)
    }

    static var variants: [RoPEKernel] {
        [false, true].flatMap { inverse in
            DType.cover(operands: 4).flatMap { t in
                [nil, Pair(y: t[2], d: t[3])].map { RoPEKernel(inverse: inverse, x: t[0], c: t[1], pair: $0) }
            }
        }
    }
}

extension VulkanBackend {
    /// x, inverse frequencies, positions [, y] -> x rotated [, y rotated], in one dispatch.
    func encodeRoPE(inverse: Bool, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (x, y) = (inputs[0], inputs.count == 4 ? inputs[3] : nil)
        let half = x.shape[2] / 2, pairs = x.shape.count / 2, pairsY = (y?.shape.count ?? 0) / 2
        let kernel = RoPEKernel(inverse: inverse, x: x.dtype, c: outputs[0].dtype, pair: y.map { .init(y: $0.dtype, d: outputs[1].dtype) })
        var bindings: [TensorBinding] = [.read(x), .read(inputs[1]), .read(inputs[2]), .write(outputs[0])]
        if let y { bindings += [.read(y), .write(outputs[1])] }
        try dispatchPerElement(kernel, count: pairs + pairsY, window: nil) { _ in
            (bindings, .init(pairs: UInt32(pairs), heads: UInt32(x.shape[1]), halfDim: UInt32(half),
                             pairsY: UInt32(pairsY), headsY: UInt32(y?.shape[1] ?? 0)))
        }
    }
}
