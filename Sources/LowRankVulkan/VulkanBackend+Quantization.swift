import LowRankCore

/// `QUANT` in `Shaders/quant.glsl`: how a block-quantized tensor's words decode, or none. Each
/// quantized `DType` has the case of its name.
enum QuantFormat: String, ShaderChoice {
    case none, nf4, nf4DoubleQuant = "nf4_dq", q8_0, q4_0, q4_1, q5_0, q5_1, q4_K = "q4_k", q5_K = "q5_k", q6_K = "q6_k"
    static let macro = "QUANT"
    static let quantized = DType.quantized.map(\.quantFormat)
}

extension DType {
    var quantFormat: QuantFormat { isQuantized ? QuantFormat(rawValue: rawValue)! : .none }
}

/// `Shaders/dequantize.comp`: one invocation per element of the window.
struct DequantizeKernel: Kernel {
    struct Push: BitwiseCopyable {
        var window: UInt32
        var first: UInt32
        var count: UInt32
    }

    static let shader = Shader.dequantize
    var format: QuantFormat
    var c: DType

    var defines: [String: String] { format.defines + c.operandDefines("C", written: true) }

    static var variants: [DequantizeKernel] {
        QuantFormat.quantized.flatMap { format in DType.floats.map { DequantizeKernel(format: format, c: $0) } }
    }
}

/// `Shaders/quantize.comp`.
struct QuantizeKernel: Kernel {
    enum Pass: KernelPass {
        /// One invocation per NF4 block of 64, or per pair of GGML blocks.
        case blocks
        /// Double quantization: the absmax mean, in one workgroup of 32.
        case absmaxMean
        /// Double quantization: one workgroup per 256 absmax values, their scale and codes.
        case nestedBlocks
    }

    struct Push: BitwiseCopyable {
        var count: UInt32
    }

    static let shader = Shader.quantize
    var format: QuantFormat
    var a: DType
    var pass: Pass

    var defines: [String: String] {
        var d = format.defines + a.operandDefines("A") + pass.defines
        if pass == .nestedBlocks { d["DYNAMIC_GRID_STARTS"] = Self.dynamicGridStarts }
        return d
    }

    /// `QuantizationTables.dynamicGridStarts` as a GLSL array initializer, formed once.
    private static let dynamicGridStarts = QuantizationTables.dynamicGridStarts.map { "\($0)u" }.joined(separator: ",")

    /// The passes quantizing into `format` takes.
    static func passes(_ format: QuantFormat) -> [Pass] { format == .nf4DoubleQuant ? Pass.allCases : [.blocks] }

    static var variants: [QuantizeKernel] {
        DType.quantized.filter(\.hasQuantizer).map(\.quantFormat).flatMap { format in
            DType.floats.flatMap { a in passes(format).map { QuantizeKernel(format: format, a: a, pass: $0) } }
        }
    }
}

extension VulkanBackend {
    /// cast: between float types in `Shaders/elementwise.comp`; out of a block-quantized type in
    /// `Shaders/dequantize.comp`; into one in `Shaders/quantize.comp`. The packed tensor is bound whole.
    func encodeCast(_ input: Tensor, _ out: Tensor) throws {
        if input.dtype.isQuantized { return try encodeDequantize(input, out) }
        if out.dtype.isQuantized { return try encodeQuantize(input, out) }
        try encodeElementwise(.cast, [input], out)
    }

    private func encodeDequantize(_ input: Tensor, _ out: Tensor) throws {
        let count = out.shape.count
        try dispatchPerElement(DequantizeKernel(format: input.dtype.quantFormat, c: out.dtype), count: count, window: windowElements([out])) { elements in
            ([.read(input), .write(out, elements)], .init(window: UInt32(elements.count), first: UInt32(elements.lowerBound), count: UInt32(count)))
        }
    }

    private func encodeQuantize(_ input: Tensor, _ out: Tensor) throws {
        let count = out.shape.count
        let layout = QuantizedLayout(out.dtype, elements: count)
        let size = 64
        let kernel = { (pass: QuantizeKernel.Pass) in QuantizeKernel(format: out.dtype.quantFormat, a: input.dtype, pass: pass) }
        let push = QuantizeKernel.Push(count: UInt32(count))
        guard count > 0 else { return }
        if out.dtype == .nf4DoubleQuant {
            let absmax = try scratch([layout.blocks])
            try dispatch(kernel(.blocks), specialization: [UInt32(size)], [.read(input), .write(out), .write(absmax)], push: push,
                         groups: ((layout.blocks + size - 1) / size, 1, 1))
            try dispatch(kernel(.absmaxMean), specialization: [32], [.read(input), .write(out), .read(absmax)], push: push, groups: (1, 1, 1))
            try dispatch(kernel(.nestedBlocks), specialization: [UInt32(size)], [.read(input), .write(out), .read(absmax)], push: push,
                         groups: (layout.nestedBlocks, 1, 1))
        } else {
            let invocations = out.dtype == .nf4 ? layout.blocks : (layout.blocks + 1) / 2
            try dispatch(kernel(.blocks), specialization: [UInt32(size)], [.read(input), .write(out)], push: push,
                         groups: ((invocations + size - 1) / size, 1, 1))
        }
    }
}
