import LowRankCore

/// `Shaders/rms_norm.comp`.
struct RMSNormKernel: Kernel {
    enum Pass: KernelPass {
        /// y and rstd, one workgroup per row.
        case forward
        /// dx, one workgroup per row.
        case inputGradient
        /// d weight's partial sums over blocks of 64 rows.
        case weightGradient
    }

    struct Push: BitwiseCopyable {
        var rows: UInt32
        var columns: UInt32
        var epsilon: Float
    }

    static let shader = Shader.rmsNorm
    var pass: Pass
    var x: DType
    var weight: DType
    /// G's dtype, in the backward passes.
    var gradient: DType?
    var c: DType
    /// r's dtype forward (x + r normalised, the sum written), R's in the input gradient (added onto dx).
    var residual: DType? = nil

    var defines: [String: String] {
        var d = pass.defines + x.operandDefines("X") + weight.operandDefines("W") + c.operandDefines("C", written: true)
            + gradient.operandDefines("G") + residual.operandDefines("R") + ["RESIDUAL": (residual != nil).define]
        if residual != nil, pass == .forward { d["X_FROM_F32"] = x.glslFromF32 }
        return d
    }

    static var variants: [RMSNormKernel] {
        DType.cover(operands: 5).flatMap { t in
            [nil, t[4]].flatMap { residual in
                [RMSNormKernel(pass: .forward, x: t[0], weight: t[1], gradient: nil, c: t[3], residual: residual),
                 RMSNormKernel(pass: .inputGradient, x: t[0], weight: t[1], gradient: t[2], c: t[3], residual: residual)]
            } + [RMSNormKernel(pass: .weightGradient, x: t[0], weight: t[1], gradient: t[2], c: .f32)]
        }
    }
}

extension VulkanBackend {
    /// x, weight [, r] -> y, rstd [, x + r], one workgroup per row.
    func encodeRMSNorm(_ epsilon: Float, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (x, weight, r) = (inputs[0], inputs[1], inputs.count == 3 ? inputs[2] : nil)
        let rows = x.shape.rows
        var bindings: [TensorBinding] = [.read(x), .read(weight), .write(outputs[0]), .write(outputs[1])]
        if let r { bindings += [.read(r), .write(outputs[2])] }
        try dispatch(RMSNormKernel(pass: .forward, x: x.dtype, weight: weight.dtype, gradient: nil, c: outputs[0].dtype, residual: r?.dtype),
                     bindings,
                     push: .init(rows: UInt32(rows), columns: UInt32(x.shape.columns), epsilon: epsilon), groups: rowGroups(rows))
    }

    /// G, x, weight, rstd [, R] -> dx [+ R] (one workgroup per row) [, d weight (partial sums over blocks of 64
    /// rows, then summed in block order by `sum_blocks.comp`)].
    func encodeRMSNormBackward(_ operands: RMSNormBackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (g, x, weight, rstd) = (operands.gradient, operands.x, operands.weight, operands.rstd)
        let (rows, columns) = (x.shape.rows, x.shape.columns)
        let push = RMSNormKernel.Push(rows: UInt32(rows), columns: UInt32(columns), epsilon: 0)
        let residual = operands.residualGradient
        try dispatch(RMSNormKernel(pass: .inputGradient, x: x.dtype, weight: weight.dtype, gradient: g.dtype, c: outputs[0].dtype, residual: residual?.dtype),
                     [.read(x), .read(weight), .read(g), .read(rstd), .write(outputs[0])] + [residual].compactMap { $0.map { .read($0) } },
                     push: push, groups: rowGroups(rows))
        guard outputs.count > 1 else { return }
        let blocks = max((rows + 63) / 64, 1)
        let partial = try scratch([blocks, columns])
        try dispatch(RMSNormKernel(pass: .weightGradient, x: x.dtype, weight: weight.dtype, gradient: g.dtype, c: partial.dtype),
                     [.read(x), .read(weight), .read(g), .read(rstd), .write(partial)], push: push,
                     groups: ((columns + 255) / 256, blocks, 1))
        try encodeSumBlocks(partial, into: outputs[1], scale: 1)
    }
}
