import LowRankCore

extension VulkanBackend {
    /// x, weight -> y, rstd (`Shaders/rms_norm.comp` PASS 0), one workgroup per row.
    func encodeRMSNorm(_ epsilon: Float, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (x, weight) = (inputs[0], inputs[1])
        let rows = x.shape.rows
        try dispatch(rmsNormKernel(pass: 0, x: x, weight: weight, gradient: nil, out: outputs[0]),
                     [.read(x), .read(weight), .write(outputs[0]), .write(outputs[1])],
                     push: PushConstants([UInt32(rows), UInt32(x.shape.columns), epsilon]), groups: rowGroups(rows))
    }

    /// G, x, weight, rstd -> dx (PASS 1, one workgroup per row), d weight (PASS 2: partial sums over
    /// blocks of 64 rows, then summed in block order by `sum_blocks.comp`).
    func encodeRMSNormBackward(_ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (g, x, weight, rstd) = (inputs[0], inputs[1], inputs[2], inputs[3])
        let (rows, columns) = (x.shape.rows, x.shape.columns)
        let push = PushConstants([UInt32(rows), UInt32(columns), Float(0)])
        try dispatch(rmsNormKernel(pass: 1, x: x, weight: weight, gradient: g, out: outputs[0]),
                     [.read(x), .read(weight), .read(g), .read(rstd), .write(outputs[0])], push: push, groups: rowGroups(rows))
        let blocks = max((rows + 63) / 64, 1)
        let partial = try scratch([blocks, columns])
        try dispatch(rmsNormKernel(pass: 2, x: x, weight: weight, gradient: g, out: partial),
                     [.read(x), .read(weight), .read(g), .read(rstd), .write(partial)], push: push,
                     groups: ((columns + 255) / 256, blocks, 1))
        try encodeSumBlocks(partial, into: outputs[1], scale: 1)
    }

    private func rmsNormKernel(pass: Int, x: Tensor, weight: Tensor, gradient: Tensor?, out: Tensor) -> KernelKey {
        var defines = ["PASS": "\(pass)", "X_T": x.dtype.glslType, "W_T": weight.dtype.glslType,
                       "C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32]
        if let gradient { defines["G_T"] = gradient.dtype.glslType }
        return KernelKey(shader: "rms_norm.comp", defines: defines, bindings: gradient == nil ? 4 : 5)
    }
}
