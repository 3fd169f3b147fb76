import LowRankCore

extension VulkanBackend {
    /// add, mul, scale, cast, scale_rows and clip_coefficient (`operation` 0...5), all in `Shaders/elementwise.comp`;
    /// tensors larger than one binding run as consecutive windows, of whole rows where the second
    /// input has one factor per row (scale_rows) or is one row broadcast over all (add, mul).
    func encodeElementwise(operation: Int, _ inputs: [Tensor], _ out: Tensor, factor: Float = 1) throws {
        let count = out.shape.count
        let broadcast = operation <= 1 && inputs[1].shape.count != count
        let perRow = operation == 4 || broadcast
        let columns = broadcast ? max(inputs[1].shape.count, 1) : perRow ? max(out.shape.columns, 1) : max(count, 1)
        var defines = ["OP": "\(operation)", "A_T": inputs[0].dtype.glslType, "C_T": out.dtype.glslType,
                       "C_FROM_F32": out.dtype.glslFromF32]
        if inputs.count > 1 { defines["B_T"] = inputs[1].dtype.glslType }
        let key = KernelKey(shader: "elementwise.comp", defines: defines, specialization: [UInt32(elementWorkgroupSize)], bindings: inputs.count + 1)
        let window = perRow ? windowElements([inputs[0], out], unit: columns).map { $0 * columns } : windowElements(inputs + [out])
        try dispatchPerElement(key, count: count, window: window) { elements in
            let second = broadcast ? 0..<columns : perRow ? (elements.lowerBound / columns)..<(elements.upperBound / columns) : elements
            return ([.read(inputs[0], elements)] + inputs.dropFirst().map { .read($0, second) } + [.write(out, elements)],
                    PushConstants([UInt32(elements.count), factor, UInt32(columns)]))
        }
    }
}
