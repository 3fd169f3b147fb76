extension SafetensorsFile {
    /// Elements converted per step when a tensor changes dtype on its way to a backend.
    static let conversionChunk = 1 << 20

    /// Tensor `name` on `backend` as `dtype`. The same dtype is copied straight from the mapped
    /// file; another float type is converted a chunk at a time, so host memory holds the tensor and
    /// one chunk, never a whole-tensor staging copy; a block-quantized type is quantized on the
    /// host from one f32 copy (double quantization's mean needs every block). Host memory comes
    /// from the checked allocator: a tensor the host cannot hold is an out-of-memory error.
    public func tensor(_ name: String, as dtype: DType, on backend: any Backend) throws -> Tensor {
        let e = try entry(name)
        defer { evict(e) }
        if dtype == e.dtype { return try tensor(name, on: backend) }
        guard dtype.isFloatingPoint || dtype.hasQuantizer, e.dtype.isFloatingPoint else {
            throw LowRankError(.dtypeMismatch, "\(e.dtype) does not convert to \(dtype): only float tensors load as another float or quantized type",
                               context: [("file", path), ("tensor", name)])
        }
        let count = e.shape.count
        guard count > 0 else { return try Tensor(empty: e.shape, dtype: dtype, on: backend) }
        return try withBytes(name) { raw in
            if dtype.isQuantized {
                let values = try HostBuffer(byteCount: count * MemoryLayout<Float>.size, for: "tensor \(name) in f32 before quantizing")
                let floats = values.pointer.assumingMemoryBound(to: Float.self)
                convertToFloat(raw.baseAddress!, dtype: e.dtype, count: count, into: floats)
                let packed = try HostBuffer(byteCount: dtype.byteCount(elements: count), for: "tensor \(name) quantized to \(dtype)")
                Quantizer(QuantizedLayout(dtype, elements: count)).quantize(floats, into: packed.pointer)
                return try Tensor(bytes: UnsafeRawBufferPointer(packed.bytes), shape: e.shape, dtype: dtype, on: backend)
            }
            let tensor = try Tensor(empty: e.shape, dtype: dtype, on: backend)
            let chunk = Swift.min(count, Self.conversionChunk)
            let values = try HostBuffer(byteCount: chunk * MemoryLayout<Float>.size, for: "converting tensor \(name)")
            let converted = try HostBuffer(byteCount: chunk * dtype.byteSize, for: "converting tensor \(name)")
            let floats = values.pointer.assumingMemoryBound(to: Float.self)
            for start in stride(from: 0, to: count, by: chunk) {
                let n = Swift.min(chunk, count - start)
                convertToFloat(raw.baseAddress! + start * e.dtype.byteSize, dtype: e.dtype, count: n, into: floats)
                convertFromFloat(floats, count: n, dtype: dtype, into: converted.pointer)
                try backend.write(UnsafeRawBufferPointer(start: converted.pointer, count: n * dtype.byteSize), to: tensor.storage,
                                  offset: start * dtype.byteSize)
            }
            return tensor
        }
    }
}
