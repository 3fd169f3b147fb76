/// Index arithmetic of a transpose, shared by both backends: the output's dimensions, padded to
/// 4 at the front with 1s, and for each the input's stride along that axis.
public struct TransposeLayout: Sendable {
    public let outputDims: [Int]
    public let inputStrides: [Int]

    public init(inputShape: Shape, axes: [Int]) {
        var strides = [Int](repeating: 1, count: inputShape.rank)
        for i in stride(from: inputShape.rank - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * inputShape[i + 1] }
        let pad = 4 - axes.count
        outputDims = [Int](repeating: 1, count: pad) + axes.map { inputShape[$0] }
        inputStrides = [Int](repeating: 0, count: pad) + axes.map { strides[$0] }
    }

    /// Where output element `i` (row-major) is read from.
    public func source(_ i: Int) -> Int {
        var rest = i, offset = 0
        for axis in stride(from: 3, through: 0, by: -1) {
            offset += rest % outputDims[axis] * inputStrides[axis]
            rest /= outputDims[axis]
        }
        return offset
    }
}
