import Glibc

/// Writes a GGUF (version 3) file: metadata in the order given, then `general.alignment` (32),
/// the tensor infos, and each tensor's data at an offset aligned to 32 bytes. The data is asked for
/// and written one tensor at a time, so a model is never held whole in memory. The file is written
/// to `<path>.<pid>.tmp` and renamed into place once complete and synced: a reader, or a run
/// killed at any moment, finds the old file or the new one, never half of one.
public enum GGUFWriter {
    /// One tensor of the file: its name, its shape as the engine holds it (outermost first; the
    /// file lists the dimensions innermost first, as ggml does) and its element type.
    public struct TensorInfo: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let type: GGUF.TensorType

        public init(name: String, shape: [Int], type: GGUF.TensorType) {
            (self.name, self.shape, self.type) = (name, shape, type)
        }

        /// The bytes of its data: whole blocks along the innermost dimension, times the other dimensions.
        public var byteCount: Int {
            let (elements, bytes) = type.blockGeometry
            return shape.dropLast().reduce((shape.last ?? 1) / elements * bytes, *)
        }
    }

    /// ggml's limits: names shorter than `GGML_MAX_NAME` (64) bytes, at most 4 dimensions.
    static let maxNameBytes = 63, maxDimensions = 4

    /// Writes `metadata` and `tensors` to `path`; `data(i)` gives the bytes of `tensors[i]`, exactly
    /// `tensors[i].byteCount` of them, and is called once per tensor, in order. A duplicate key or
    /// tensor name, an array whose elements are not of its element type, a shape whose innermost
    /// dimension is not whole blocks of its type, or data of the wrong length is an error naming
    /// the key or tensor, and leaves nothing at `path` but what was there before.
    public static func write(to path: String, metadata: [(key: String, value: GGUF.Value)], tensors: [TensorInfo],
                             data: (Int) throws -> [UInt8]) throws {
        let header = try header(metadata: metadata, tensors: tensors, path: path)
        let temporary = "\(path).\(getpid()).tmp"
        guard let file = fopen(temporary, "wb") else {
            throw LowRankError(.io, "cannot write: \(String(cString: strerror(errno)))", context: [("file", path)])
        }
        var closed = false
        defer {
            if !closed {
                fclose(file)
                unlink(temporary)
            }
        }
        func put(_ bytes: [UInt8]) throws {
            guard bytes.isEmpty || fwrite(bytes, 1, bytes.count, file) == bytes.count else {
                throw LowRankError(.io, "cannot write: \(String(cString: strerror(errno)))", context: [("file", path)])
            }
        }
        try put(header)
        for (index, tensor) in tensors.enumerated() {
            let bytes = try data(index)
            guard bytes.count == tensor.byteCount else {
                throw LowRankError(.invalidArgument, "\(bytes.count) bytes of data where \(tensor.type.name) \(tensor.shape) takes \(tensor.byteCount)",
                                   context: [("file", path), ("tensor", tensor.name)])
            }
            try put(bytes)
            try put([UInt8](repeating: 0, count: padding(bytes.count)))
        }
        let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
        closed = true
        guard fclose(file) == 0, flushed, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw LowRankError(.io, "cannot write: \(reason)", context: [("file", path)])
        }
    }

    private static func padding(_ count: Int) -> Int { (GGUF.defaultAlignment - count % GGUF.defaultAlignment) % GGUF.defaultAlignment }

    /// Everything before the data section, padded to the alignment.
    static func header(metadata: [(key: String, value: GGUF.Value)], tensors: [TensorInfo], path: String) throws -> [UInt8] {
        var keys = Set<String>()
        for (key, value) in metadata {
            guard key != GGUF.alignmentKey else {
                throw LowRankError(.invalidArgument, "\(key) is the writer's own (\(GGUF.defaultAlignment))", context: [("file", path), ("key", key)])
            }
            guard keys.insert(key).inserted else { throw LowRankError(.invalidArgument, "metadata key given twice", context: [("file", path), ("key", key)]) }
            try check(value, key: key, path: path)
        }
        var names = Set<String>()
        for tensor in tensors {
            let context = [("file", path), ("tensor", tensor.name)]
            guard names.insert(tensor.name).inserted else { throw LowRankError(.invalidArgument, "tensor given twice", context: context) }
            guard !tensor.name.isEmpty, tensor.name.utf8.count <= maxNameBytes else {
                throw LowRankError(.invalidArgument, "a tensor name must be 1 to \(maxNameBytes) bytes (ggml's limit)", context: context)
            }
            guard (1...maxDimensions).contains(tensor.shape.count), tensor.shape.allSatisfy({ $0 > 0 }) else {
                throw LowRankError(.invalidArgument, "shape \(tensor.shape): ggml takes 1 to \(maxDimensions) dimensions, each at least 1", context: context)
            }
            let block = tensor.type.blockGeometry.elements
            guard tensor.shape.last! % block == 0 else {
                throw LowRankError(.invalidArgument, "\(tensor.type.name) stores blocks of \(block) values along the innermost dimension, "
                                       + "and \(tensor.shape.last!) is not a multiple of \(block)", context: context)
            }
        }
        var out = ByteWriter()
        out.u32(GGUF.magic)
        out.u32(GGUF.version)
        out.u64(UInt64(tensors.count))
        out.u64(UInt64(metadata.count + 1))
        for (key, value) in metadata + [(GGUF.alignmentKey, .uint32(UInt32(GGUF.defaultAlignment)))] {
            out.string(key)
            out.u32(value.type.rawValue)
            out.value(value)
        }
        var offset = 0
        for tensor in tensors {
            out.string(tensor.name)
            out.u32(UInt32(tensor.shape.count))
            for dimension in tensor.shape.reversed() { out.u64(UInt64(dimension)) }
            out.u32(tensor.type.rawValue)
            out.u64(UInt64(offset))
            offset += tensor.byteCount + padding(tensor.byteCount)
        }
        out.bytes += [UInt8](repeating: 0, count: padding(out.bytes.count))
        return out.bytes
    }

    /// Arrays hold elements of their declared type only, and no arrays of arrays (ggml reads none).
    private static func check(_ value: GGUF.Value, key: String, path: String) throws {
        guard case .array(let type, let elements) = value else { return }
        guard type != .array else { throw LowRankError(.invalidArgument, "an array of arrays", context: [("file", path), ("key", key)]) }
        guard let wrong = elements.first(where: { $0.type != type }) else { return }
        throw LowRankError(.invalidArgument, "an array of \(type) holds a \(wrong.type)", context: [("file", path), ("key", key)])
    }
}

/// Little-endian serialization of GGUF's scalars, strings and values.
private struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func integer<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func u32(_ value: UInt32) { integer(value) }
    mutating func u64(_ value: UInt64) { integer(value) }
    mutating func string(_ text: String) {
        u64(UInt64(text.utf8.count))
        bytes += text.utf8
    }

    mutating func value(_ value: GGUF.Value) {
        switch value {
        case .uint8(let v): integer(v)
        case .int8(let v): integer(v)
        case .uint16(let v): integer(v)
        case .int16(let v): integer(v)
        case .uint32(let v): integer(v)
        case .int32(let v): integer(v)
        case .uint64(let v): integer(v)
        case .int64(let v): integer(v)
        case .float32(let v): integer(v.bitPattern)
        case .float64(let v): integer(v.bitPattern)
        case .bool(let v): integer(UInt8(v ? 1 : 0))
        case .string(let s): string(s)
        case .array(let type, let elements):
            u32(type.rawValue)
            u64(UInt64(elements.count))
            for element in elements { self.value(element) }
        }
    }
}
