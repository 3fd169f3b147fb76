/// Shape and element type, without storage: what op validation works on.
public struct TensorDescriptor: Hashable, Sendable, CustomStringConvertible {
    public var shape: Shape
    public var dtype: DType

    public init(_ shape: Shape, _ dtype: DType) {
        self.shape = shape
        self.dtype = dtype
    }

    public var byteCount: Int { dtype.byteCount(elements: shape.count) }
    public var description: String { "\(dtype)\(shape)" }
}

/// A dense row-major tensor living on one backend.
public final class Tensor: Sendable, CustomStringConvertible {
    public let descriptor: TensorDescriptor
    public let backend: any Backend
    public let storage: any TensorStorage

    public var shape: Shape { descriptor.shape }
    public var dtype: DType { descriptor.dtype }
    public var byteCount: Int { descriptor.byteCount }
    public var description: String { "Tensor(\(descriptor) on \(backend.identifier))" }

    /// Uninitialised storage (backends may zero it; do not rely on that).
    public init(empty shape: Shape, dtype: DType, on backend: any Backend) throws {
        guard shape.dims.allSatisfy({ $0 >= 0 }) else {
            throw LowRankError(.invalidArgument, "a tensor's dimensions must not be negative", context: [("shape", "\(shape)")])
        }
        descriptor = TensorDescriptor(shape, dtype)
        guard let byteCount = descriptor.checkedByteCount, byteCount <= Int.max - 3 else {
            throw LowRankError(.outOfMemory, "\(dtype) tensor of shape \(shape) has more bytes than memory can address", context: [("shape", "\(shape)")])
        }
        self.backend = backend
        try Self.checkQuantizedShape(descriptor)
        // Whole 32-bit words, so that kernels may read any tensor as words.
        storage = try backend.makeStorage(byteCount: Swift.max((byteCount + 3) / 4 * 4, 4))
    }

    /// A tensor with raw bytes laid out in `dtype`.
    public convenience init(bytes: UnsafeRawBufferPointer, shape: Shape, dtype: DType, on backend: any Backend) throws {
        let expected = TensorDescriptor(shape, dtype).checkedByteCount
        guard bytes.count == expected else {
            throw LowRankError(.shapeMismatch, "\(bytes.count) bytes do not hold a \(dtype) tensor of shape \(shape) (\(expected.map { "\($0) bytes" } ?? "a size beyond Int"))",
                               context: [("shape", "\(shape)")])
        }
        try self.init(empty: shape, dtype: dtype, on: backend)
        if bytes.count > 0 { try backend.write(bytes, to: storage, offset: 0) }
    }

    /// A tensor from f32 values, rounded to `dtype` (nearest even) on the host.
    public convenience init(_ values: [Float], shape: Shape, dtype: DType = .f32, on backend: any Backend) throws {
        guard values.count == shape.count else {
            throw LowRankError(.shapeMismatch, "\(values.count) values do not fill shape \(shape)")
        }
        try self.init(empty: shape, dtype: dtype, on: backend)
        try assign(values)
    }

    /// A vector of i32 ids (tokens, labels, positions).
    public convenience init(ids: [Int32], on backend: any Backend) throws {
        try self.init(empty: [ids.count], dtype: .i32, on: backend)
        if !ids.isEmpty { try ids.withUnsafeBytes { try backend.write($0, to: storage, offset: 0) } }
    }

    public static func zeros(_ shape: Shape, dtype: DType = .f32, on backend: any Backend) throws -> Tensor {
        try Tensor([Float](repeating: 0, count: shape.count), shape: shape, dtype: dtype, on: backend)
    }

    /// The raw bytes, after every pending op on the backend has finished.
    public func bytes() throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        if byteCount > 0 { try out.withUnsafeMutableBytes { try backend.read(storage, offset: 0, into: $0) } }
        return out
    }

    /// The values widened to f32 (dequantized on the host for a block-quantized tensor).
    public func floats() throws -> [Float] {
        let raw = try bytes()
        var out = [Float](repeating: 0, count: shape.count)
        raw.withUnsafeBytes { r in
            out.withUnsafeMutableBufferPointer { o in
                if dtype.isQuantized {
                    Quantizer(QuantizedLayout(dtype, elements: o.count)).dequantize(r.baseAddress!, 0..<o.count, into: o.baseAddress!)
                } else {
                    convertToFloat(r.baseAddress!, dtype: dtype, count: o.count, into: o.baseAddress!)
                }
            }
        }
        return out
    }

    /// Overwrites the contents with `values`, converted to the tensor's dtype (nearest even for f16
    /// and bf16; quantized on the host for a block-quantized tensor).
    public func assign(_ values: [Float]) throws {
        guard values.count == shape.count else {
            throw LowRankError(.shapeMismatch, "\(values.count) values do not fill \(descriptor)")
        }
        guard !dtype.isQuantized || dtype.hasQuantizer else {
            throw LowRankError(.dtypeMismatch, "the engine does not quantize into \(dtype): its tensors come quantized (from GGUF files) and are only read",
                               context: [("shape", "\(shape)")])
        }
        var bytes = [UInt8](repeating: 0, count: byteCount)
        values.withUnsafeBufferPointer { v in
            bytes.withUnsafeMutableBytes { b in
                if dtype.isQuantized {
                    Quantizer(QuantizedLayout(dtype, elements: v.count)).quantize(v.baseAddress!, into: b.baseAddress!)
                } else {
                    convertFromFloat(v.baseAddress!, count: v.count, dtype: dtype, into: b.baseAddress!)
                }
            }
        }
        if !bytes.isEmpty { try bytes.withUnsafeBytes { try backend.write($0, to: storage, offset: 0) } }
    }

    /// A copy on another backend (or the same one).
    public func copy(to target: any Backend) throws -> Tensor {
        try bytes().withUnsafeBytes { try Tensor(bytes: $0, shape: shape, dtype: dtype, on: target) }
    }

    /// The same storage seen with another shape of the same element count.
    public func reshaped(_ newShape: Shape) throws -> Tensor {
        guard newShape.count == shape.count else {
            throw LowRankError(.shapeMismatch, "cannot reshape \(shape) to \(newShape): element counts differ")
        }
        try Self.checkQuantizedShape(TensorDescriptor(newShape, dtype))
        return Tensor(view: self, shape: newShape)
    }

    /// `descriptor`'s elements at the start of `storage`, which may be larger (a reused buffer of a plan).
    init(viewing storage: any TensorStorage, as descriptor: TensorDescriptor, on backend: any Backend) {
        precondition(descriptor.byteCount <= storage.byteCount, "a view past the end of its storage")
        self.descriptor = descriptor
        self.backend = backend
        self.storage = storage
    }

    private init(view base: Tensor, shape: Shape) {
        descriptor = TensorDescriptor(shape, base.dtype)
        backend = base.backend
        storage = base.storage
    }

    /// GGML's blocks run along rows, so a GGML-quantized tensor's rows are whole blocks (32 values,
    /// 256 for the K-quants); NF4's blocks run over the flattened tensor and take any shape.
    static func checkQuantizedShape(_ d: TensorDescriptor) throws {
        guard let block = d.dtype.rowBlockElements, d.shape.count > 0 else { return }
        guard d.shape.rank >= 1, d.shape.columns % block == 0 else {
            throw LowRankError(.shapeMismatch, "a \(d.dtype) tensor's rows must be whole blocks of \(block) elements, got \(d.shape)")
        }
    }
}
