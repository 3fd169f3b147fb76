import LowRankCore

extension CPUBackend {
    /// Calls `body` with `t`'s elements as f32: its own memory when it is f32, else a widened copy.
    func withFloats<R>(_ t: Tensor, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        if t.dtype == .f32 { return try body(pointer(t).assumingMemoryBound(to: Float.self)) }
        let count = t.shape.count
        let tmp = temporary(count)
        defer { release(tmp, count) }
        let source = pointer(t)
        parallelFor(count) { r in
            convertToFloat(source + r.lowerBound * t.dtype.byteSize, dtype: t.dtype, count: r.count, into: tmp + r.lowerBound)
        }
        return try body(tmp)
    }

    /// `withFloats` for several tensors at once: `body` gets their f32 views in the same order.
    func withFloats<R>(_ tensors: [Tensor], _ body: ([UnsafeMutablePointer<Float>]) throws -> R) rethrows -> R {
        guard let first = tensors.first else { return try body([]) }
        return try withFloats(first) { head in try withFloats(Array(tensors.dropFirst())) { try body([head] + $0) } }
    }

    /// `withFloats` for an optional tensor (an absent bias, say).
    func withOptionalFloats<R>(_ t: Tensor?, _ body: (UnsafeMutablePointer<Float>?) throws -> R) rethrows -> R {
        guard let t else { return try body(nil) }
        return try withFloats(t) { try body($0) }
    }

    /// Lets `body` write `out` as f32, narrowing afterwards when `out` is a 16-bit type.
    /// With `preserving`, the f32 view starts with `out`'s current values (for accumulation).
    func producing(_ out: Tensor, preserving: Bool = false, _ body: (UnsafeMutablePointer<Float>) throws -> Void) rethrows {
        if out.dtype == .f32 { return try body(pointer(out).assumingMemoryBound(to: Float.self)) }
        let count = out.shape.count
        let tmp = temporary(count)
        defer { release(tmp, count) }
        let destination = pointer(out)
        if preserving {
            parallelFor(count) { r in
                convertToFloat(destination + r.lowerBound * out.dtype.byteSize, dtype: out.dtype, count: r.count, into: tmp + r.lowerBound)
            }
        }
        try body(tmp)
        parallelFor(count) { r in
            convertFromFloat(tmp + r.lowerBound, count: r.count, dtype: out.dtype, into: destination + r.lowerBound * out.dtype.byteSize)
        }
    }

    /// A scratch f32 buffer of `count` elements for the duration of `body`.
    func withScratch<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let tmp = temporary(count)
        defer { release(tmp, count) }
        return try body(tmp)
    }

    /// An f32 temporary, counted in the backend's memory statistics while it lives.
    private func temporary(_ count: Int) -> UnsafeMutablePointer<Float> {
        usage.allocated(count * 4)
        return UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(count, 1))
    }

    private func release(_ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
        pointer.deallocate()
        usage.freed(count * 4)
    }
}
