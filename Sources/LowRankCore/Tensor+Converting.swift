extension Tensor {
    /// Elements converted per step when a tensor changes dtype on its way to a backend.
    static let conversionChunk = 1 << 20

    /// The tensor whose `source`-typed bytes are `raw` (a weight file's, mapped), on `backend` as
    /// `dtype`. The same dtype is copied straight; another float type is converted a chunk at a
    /// time, as is a block-quantized source dequantized to a float type, so host memory holds the
    /// tensor and one chunk, never a whole-tensor staging copy; a float source quantized to a
    /// block-quantized type is quantized on the host from one f32 copy (double quantization's mean
    /// needs every block). Host memory comes from the checked allocator: a tensor the host cannot
    /// hold is an out-of-memory error. `name` and `file` name the tensor in errors.
    public convenience init(converting raw: UnsafeRawBufferPointer, from source: DType, shape: Shape, to dtype: DType,
                            name: String, file: String, on backend: any Backend) throws {
        if dtype == source {
            try self.init(bytes: raw, shape: shape, dtype: dtype, on: backend)
            return
        }
        if dtype.isQuantized && !dtype.hasQuantizer {
            throw LowRankError(.dtypeMismatch, "the engine quantizes into \(DType.allCases.filter(\.hasQuantizer).map(\.rawValue).joined(separator: ", ")); "
                               + "\(dtype) tensors come quantized (from GGUF files) and are only read", context: [("file", file), ("tensor", name)])
        }
        guard dtype.isFloatingPoint || dtype.isQuantized, source.isFloatingPoint || (source.isQuantized && dtype.isFloatingPoint) else {
            throw LowRankError(.dtypeMismatch, "\(source) does not convert to \(dtype): only float tensors load as another float or quantized type, "
                               + "and quantized ones as a float type", context: [("file", file), ("tensor", name)])
        }
        let count = shape.count
        try self.init(empty: shape, dtype: dtype, on: backend)
        guard count > 0 else { return }
        if dtype.isQuantized {
            let values = try HostBuffer(byteCount: count * MemoryLayout<Float>.size, for: "tensor \(name) in f32 before quantizing")
            let floats = values.pointer.assumingMemoryBound(to: Float.self)
            convertToFloat(raw.baseAddress!, dtype: source, count: count, into: floats)
            let packed = try HostBuffer(byteCount: dtype.byteCount(elements: count), for: "tensor \(name) quantized to \(dtype)")
            Quantizer(QuantizedLayout(dtype, elements: count)).quantize(floats, into: packed.pointer)
            try backend.write(UnsafeRawBufferPointer(packed.bytes), to: storage, offset: 0)
            return
        }
        let chunk = Swift.min(count, Self.conversionChunk)
        let values = try HostBuffer(byteCount: chunk * MemoryLayout<Float>.size, for: "converting tensor \(name)")
        let converted = try HostBuffer(byteCount: chunk * dtype.byteSize, for: "converting tensor \(name)")
        let floats = values.pointer.assumingMemoryBound(to: Float.self)
        for start in stride(from: 0, to: count, by: chunk) {
            let n = Swift.min(chunk, count - start)
            if source.isQuantized {
                Quantizer(QuantizedLayout(source, elements: count)).dequantize(raw.baseAddress!, start..<(start + n), into: floats)
            } else {
                convertToFloat(raw.baseAddress! + start * source.byteSize, dtype: source, count: n, into: floats)
            }
            convertFromFloat(floats, count: n, dtype: dtype, into: converted.pointer)
            try backend.write(UnsafeRawBufferPointer(start: converted.pointer, count: n * dtype.byteSize), to: storage, offset: start * dtype.byteSize)
        }
    }
}
