/// Sizes computed from numbers a file supplies (shapes, offsets, header lengths): nil on a negative
/// factor or an overflow instead of Swift's trap, so each reader can name the file and field.
public enum CheckedSize {
    /// The product of `factors`, or nil when one is negative or the product overflows `Int`.
    public static func product(_ factors: some Sequence<Int>) -> Int? {
        var result = 1
        for factor in factors {
            guard factor >= 0 else { return nil }
            let (product, overflow) = result.multipliedReportingOverflow(by: factor)
            guard !overflow else { return nil }
            result = product
        }
        return result
    }
}

extension Shape {
    /// The element count, or nil when a dimension is negative or the count overflows `Int`.
    public var checkedCount: Int? { CheckedSize.product(dims) }
}

extension DType {
    /// `byteCount(elements:)`, or nil when it would overflow `Int`.
    public func checkedByteCount(elements: Int) -> Int? {
        guard elements >= 0 else { return nil }
        // A block layout takes at most about 1.1 bytes per element: a quarter of Int's range
        // leaves its block and offset arithmetic room.
        if isQuantized { return elements <= Int.max / 4 ? byteCount(elements: elements) : nil }
        return CheckedSize.product([elements, byteSize])
    }
}

extension TensorDescriptor {
    /// `byteCount`, or nil when the shape has a negative dimension or its size overflows `Int`.
    public var checkedByteCount: Int? { shape.checkedCount.flatMap { dtype.checkedByteCount(elements: $0) } }
}
