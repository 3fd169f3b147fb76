import LowRankCore

extension VulkanBackend {
    /// cast: between float types in `Shaders/elementwise.comp`; out of a block-quantized type in
    /// `Shaders/dequantize.comp`; into one in `Shaders/quantize.comp`. The packed tensor is bound whole.
    func encodeCast(_ input: Tensor, _ out: Tensor) throws {
        if input.dtype.isQuantized { return try encodeDequantize(input, out) }
        if out.dtype.isQuantized { return try encodeQuantize(input, out) }
        try encodeElementwise(operation: 3, [input], out)
    }

    private func encodeDequantize(_ input: Tensor, _ out: Tensor) throws {
        let count = out.shape.count
        let key = KernelKey(shader: "dequantize.comp",
                            defines: ["QUANT": "\(input.dtype.quantCode)", "C_T": out.dtype.glslType, "C_FROM_F32": out.dtype.glslFromF32],
                            specialization: [UInt32(elementWorkgroupSize)], bindings: 2)
        try dispatchPerElement(key, count: count, window: windowElements([out])) { elements in
            ([.read(input), .write(out, elements)], PushConstants([UInt32(elements.count), UInt32(elements.lowerBound), UInt32(count)]))
        }
    }

    /// `QuantizationTables.dynamicGridStarts` as a GLSL array initializer, formed once.
    private static let dynamicGridStartsDefine = QuantizationTables.dynamicGridStarts.map { "\($0)u" }.joined(separator: ",")

    private func encodeQuantize(_ input: Tensor, _ out: Tensor) throws {
        let count = out.shape.count, code = out.dtype.quantCode
        let layout = QuantizedLayout(out.dtype, elements: count)
        let size = 64
        let key = { (pass: Int, bindings: Int) in
            var defines = ["QUANT": "\(code)", "A_T": input.dtype.glslType, "PASS": "\(pass)"]
            if pass == 2 { defines["DYNAMIC_GRID_STARTS"] = Self.dynamicGridStartsDefine }
            return KernelKey(shader: "quantize.comp", defines: defines, specialization: [UInt32(pass == 1 ? 32 : size)], bindings: bindings)
        }
        let push = PushConstants([UInt32(count)])
        guard count > 0 else { return }
        if out.dtype == .nf4DoubleQuant {
            let absmax = try scratch([layout.blocks])
            try dispatch(key(0, 3), [.read(input), .write(out), .write(absmax)], push: push, groups: ((layout.blocks + size - 1) / size, 1, 1))
            try dispatch(key(1, 3), [.read(input), .write(out), .read(absmax)], push: push, groups: (1, 1, 1))
            try dispatch(key(2, 3), [.read(input), .write(out), .read(absmax)], push: push, groups: (layout.nestedBlocks, 1, 1))
        } else {
            let invocations = out.dtype == .nf4 ? layout.blocks : (layout.blocks + 1) / 2
            try dispatch(key(0, 2), [.read(input), .write(out)], push: push, groups: ((invocations + size - 1) / size, 1, 1))
        }
    }
}
