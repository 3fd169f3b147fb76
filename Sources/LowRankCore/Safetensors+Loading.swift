extension SafetensorsFile {
    /// Tensor `name` on `backend` as `dtype`, converted from the mapped file as
    /// `Tensor(converting:…)` describes: a float type chunk by chunk, a quantized one from one f32 copy.
    public func tensor(_ name: String, as dtype: DType, on backend: any Backend) throws -> Tensor {
        let e = try entry(name)
        defer { evict(e) }
        return try withBytes(name) { try Tensor(converting: $0, from: e.dtype, shape: e.shape, to: dtype, name: name, file: path, on: backend) }
    }
}
