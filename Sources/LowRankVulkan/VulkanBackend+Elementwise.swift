import LowRankCore

/// `Shaders/elementwise.comp`: `c[i] = f(a[i], b[…])`.
struct ElementwiseKernel: Kernel {
    /// `OP`: which f. add and mul read `b[i % columns]` (b broadcast over rows, or columns = count),
    /// scale_rows `b[i / columns]`; scale and clip_coefficient take `factor` and no b.
    enum Operation: ShaderChoice {
        case add, mul, scale, cast, scaleRows, clipCoefficient
        static let macro = "OP"
        var readsB: Bool { self == .add || self == .mul || self == .scaleRows }
    }

    struct Push: BitwiseCopyable {
        var count: UInt32
        var factor: Float
        var columns: UInt32
    }

    static let shader = Shader.elementwise
    var operation: Operation
    var a: DType
    var b: DType?
    var c: DType

    var defines: [String: String] {
        operation.defines + a.operandDefines("A") + c.operandDefines("C", written: true) + b.operandDefines("B")
    }

    static var variants: [ElementwiseKernel] {
        Operation.allCases.flatMap { operation in
            DType.cover(operands: 3).map { t in ElementwiseKernel(operation: operation, a: t[0], b: operation.readsB ? t[1] : nil, c: t[2]) }
        }
    }
}

extension VulkanBackend {
    /// add, mul, scale, cast, scale_rows and clip_coefficient; tensors larger than one binding run as
    /// consecutive windows, of whole rows where the second input has one factor per row (scale_rows)
    /// or is one row broadcast over all (add, mul).
    func encodeElementwise(_ operation: ElementwiseKernel.Operation, _ inputs: [Tensor], _ out: Tensor, factor: Float = 1) throws {
        let count = out.shape.count
        let broadcast = (operation == .add || operation == .mul) && inputs[1].shape.count != count
        let perRow = operation == .scaleRows || broadcast
        let columns = broadcast ? max(inputs[1].shape.count, 1) : perRow ? max(out.shape.columns, 1) : max(count, 1)
        let kernel = ElementwiseKernel(operation: operation, a: inputs[0].dtype, b: operation.readsB ? inputs[1].dtype : nil, c: out.dtype)
        let window = perRow ? windowElements([inputs[0], out], unit: columns).map { $0 * columns } : windowElements(inputs + [out])
        try dispatchPerElement(kernel, count: count, window: window) { elements in
            let second = broadcast ? 0..<columns : perRow ? (elements.lowerBound / columns)..<(elements.upperBound / columns) : elements
            return ([.read(inputs[0], elements)] + inputs.dropFirst().map { .read($0, second) } + [.write(out, elements)],
                    .init(count: UInt32(elements.count), factor: factor, columns: UInt32(columns)))
        }
    }
}
