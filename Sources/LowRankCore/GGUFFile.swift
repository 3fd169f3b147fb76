/// A GGUF file (versions 2 and 3; see `GGUF`), mapped, not read: the header, metadata and tensor
/// infos are parsed at open, tensors copied out of the page cache one at a time. Every number the
/// file supplies is checked before it is used, so a hostile or truncated file is a `fileFormat`
/// error naming the file and the field, key or tensor: a string or array longer than the bytes
/// left, an unknown value or tensor type, a key or tensor named twice, a dimension that does not
/// split into its type's blocks or whose size overflows, an offset not on `general.alignment`, a
/// tensor past the end of the data section or overlapping another.
public struct GGUFFile: Sendable {
    public struct TensorInfo: Sendable, Equatable {
        public var name: String
        /// Innermost first, as GGUF stores them: a `[out, in]` matrix has dims `[in, out]`.
        public var dims: [Int]
        public var type: GGUF.TensorType
        /// Byte offset inside the data section.
        public var offset: Int
        public var byteCount: Int

        /// The dimensions outermost first, as the engine and PyTorch write shapes.
        public var shape: Shape { Shape(dims.reversed()) }
        public var elementCount: Int { dims.reduce(1, *) }
    }

    public let path: String
    public let version: UInt32
    /// The metadata keys in file order, and their values.
    public let keys: [String]
    public let metadata: [String: GGUF.Value]
    /// The tensors in file order.
    public let tensors: [TensorInfo]
    public let alignment: Int
    private let index: [String: Int]
    private let storage: MappedBytes
    private let dataStart: Int

    /// Nesting of arrays within arrays the reader follows (llama.cpp's own files nest none).
    static let maximumArrayDepth = 8
    /// ggml's `GGML_MAX_DIMS`.
    static let maximumDimensions = 4

    public init(path: String) throws {
        try self.init(storage: try MappedBytes(contentsOf: path), path: path)
    }

    public init(bytes: [UInt8], path: String = "<memory>") throws {
        try self.init(storage: try MappedBytes(copying: bytes), path: path)
    }

    private init(storage: MappedBytes, path: String) throws {
        let parsed = try storage.withBytes { bytes in
            var reader = Reader(bytes: bytes, path: path)
            return try reader.parse()
        }
        (version, keys, metadata, tensors, alignment, dataStart) = parsed
        index = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($1.name, $0) })
        self.path = path
        self.storage = storage
    }

    /// A metadata value, or nil when the file has no such key.
    public subscript(key: String) -> GGUF.Value? { metadata[key] }

    public func tensorInfo(_ name: String) -> TensorInfo? { index[name].map { tensors[$0] } }

    public func info(_ name: String) throws -> TensorInfo {
        guard let info = tensorInfo(name) else {
            throw LowRankError(.fileFormat, "no tensor named \(name)", context: [("file", path), ("tensor", name)])
        }
        return info
    }

    /// The bytes of tensor `name`, valid only inside `body`.
    public func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let t = try info(name)
        let start = dataStart + t.offset
        return try storage.withBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<(start + t.byteCount)])) }
    }

    /// Drops tensor `name`'s pages from resident memory once they are copied (see `MappedBytes.evict`).
    public func evict(_ name: String) {
        guard let t = tensorInfo(name) else { return }
        storage.evict((dataStart + t.offset)..<(dataStart + t.offset + t.byteCount))
    }

    /// Tensor `name` on `backend` as `dtype` (its own type's dtype when nil), converted as
    /// `Tensor(converting:…)` does. A type the engine has no dtype for is an error naming it.
    public func tensor(_ name: String, as dtype: DType? = nil, on backend: any Backend) throws -> Tensor {
        let t = try info(name)
        let source = try sourceDType(t)
        defer { evict(name) }
        return try withBytes(name) { try Tensor(converting: $0, from: source, shape: t.shape, to: dtype ?? source, name: name, file: path, on: backend) }
    }

    /// The tensor's values widened to f32.
    public func floats(_ name: String) throws -> [Float] {
        let t = try info(name)
        let source = try sourceDType(t)
        var out = [Float](repeating: 0, count: t.elementCount)
        try withBytes(name) { raw in
            out.withUnsafeMutableBufferPointer { values in
                guard let base = raw.baseAddress, values.count > 0 else { return }
                if source.isQuantized {
                    Quantizer(QuantizedLayout(source, elements: values.count)).dequantize(base, 0..<values.count, into: values.baseAddress!)
                } else {
                    convertToFloat(base, dtype: source, count: values.count, into: values.baseAddress!)
                }
            }
        }
        return out
    }

    /// The engine's dtype for the tensor's GGML type, or an error naming the tensor and type.
    public func sourceDType(_ t: TensorInfo) throws -> DType {
        guard let dtype = t.type.dtype else {
            let loaded = GGUF.TensorType.allCases.filter { $0.dtype != nil }.map(\.name).joined(separator: ", ")
            throw LowRankError(.unsupported, "GGML type \(t.type.name) has no dtype in this engine (\(loaded) load)",
                               context: [("file", path), ("tensor", t.name), ("type", t.type.name)])
        }
        return dtype
    }
}

extension GGUFFile {
    /// A cursor over the file's bytes that checks every read against what is left.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        let path: String
        var position = 0
        /// Where the value being read belongs ("tensor count", "key general.name"), for errors.
        var field = "header"

        init(bytes: UnsafeRawBufferPointer, path: String) {
            (self.bytes, self.path) = (bytes, path)
        }

        func fail(_ message: String, tensor: String? = nil) -> LowRankError {
            var context = [("file", path), ("field", field)]
            if let tensor { context.append(("tensor", tensor)) }
            return LowRankError(.fileFormat, message, context: context)
        }

        var remaining: Int { bytes.count - position }

        mutating func take(_ count: Int, _ what: String) throws -> UnsafeRawBufferPointer {
            guard count >= 0, count <= remaining else {
                throw fail("\(what) needs \(count) bytes at offset \(position) but the file has \(remaining) left (truncated?)")
            }
            defer { position += count }
            return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
        }

        mutating func integer<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
            let raw = try take(MemoryLayout<T>.size, what)
            return T(littleEndian: raw.loadUnaligned(as: T.self))
        }

        /// A u64 count or length that must fit `Int` and, at `minimumBytes` each, the bytes left.
        mutating func count(_ what: String, minimumBytes: Int) throws -> Int {
            let n = try integer(UInt64.self, what)
            guard n <= UInt64(remaining / Swift.max(minimumBytes, 1)) else {
                throw fail("\(what) \(n) needs at least \(minimumBytes) bytes each but the file has \(remaining) left")
            }
            return Int(n)
        }

        mutating func string(_ what: String) throws -> String {
            let length = try count("\(what)'s length", minimumBytes: 1)
            let raw = try take(length, what)
            guard let s = String(validating: raw, as: UTF8.self) else { throw fail("\(what) is not valid UTF-8") }
            return s
        }

        mutating func valueType(_ what: String) throws -> GGUF.ValueType {
            let raw = try integer(UInt32.self, what)
            guard let type = GGUF.ValueType(rawValue: raw) else {
                throw fail("\(what) \(raw) is not a GGUF value type (0...\(GGUF.ValueType.allCases.count - 1))")
            }
            return type
        }

        /// The fewest bytes a value of `type` takes: what bounds an array's count.
        static func minimumBytes(_ type: GGUF.ValueType) -> Int {
            switch type {
            case .uint8, .int8, .bool: 1
            case .uint16, .int16: 2
            case .uint32, .int32, .float32: 4
            case .uint64, .int64, .float64, .string: 8
            case .array: 12
            }
        }

        mutating func value(_ type: GGUF.ValueType, depth: Int = 0) throws -> GGUF.Value {
            switch type {
            case .uint8: return .uint8(try integer(UInt8.self, "a u8"))
            case .int8: return .int8(try integer(Int8.self, "an i8"))
            case .uint16: return .uint16(try integer(UInt16.self, "a u16"))
            case .int16: return .int16(try integer(Int16.self, "an i16"))
            case .uint32: return .uint32(try integer(UInt32.self, "a u32"))
            case .int32: return .int32(try integer(Int32.self, "an i32"))
            case .uint64: return .uint64(try integer(UInt64.self, "a u64"))
            case .int64: return .int64(try integer(Int64.self, "an i64"))
            case .float32: return .float32(Float(bitPattern: try integer(UInt32.self, "an f32")))
            case .float64: return .float64(Double(bitPattern: try integer(UInt64.self, "an f64")))
            case .bool:
                let b = try integer(UInt8.self, "a bool")
                guard b <= 1 else { throw fail("a bool is \(b), not 0 or 1") }
                return .bool(b == 1)
            case .string: return .string(try string("a string"))
            case .array:
                guard depth < GGUFFile.maximumArrayDepth else { throw fail("arrays nest more than \(GGUFFile.maximumArrayDepth) deep") }
                let element = try valueType("the array's element type")
                let n = try count("the array's count", minimumBytes: Self.minimumBytes(element))
                var values: [GGUF.Value] = []
                values.reserveCapacity(n)
                for _ in 0..<n { values.append(try value(element, depth: depth + 1)) }
                return .array(element, values)
            }
        }

        mutating func parse() throws -> (UInt32, [String], [String: GGUF.Value], [TensorInfo], Int, Int) {
            field = "magic"
            let magic = try integer(UInt32.self, "the magic")
            guard magic == GGUF.magic else { throw fail("the file does not start with GGUF: it is not a GGUF file") }
            field = "version"
            let version = try integer(UInt32.self, "the version")
            guard version == 2 || version == 3 else {
                throw fail("version \(version) is not supported (2 and 3 are; a big-endian file reads as a huge version)")
            }
            field = "tensor count"
            // A tensor info takes at least a name length, a dimension count, a type and an offset.
            let tensorCount = try count("the tensor count", minimumBytes: 24)
            field = "metadata count"
            // A key/value pair takes at least a key length, a type and one byte.
            let keyCount = try count("the metadata count", minimumBytes: 13)

            var keys: [String] = [], metadata: [String: GGUF.Value] = [:]
            for i in 0..<keyCount {
                field = "metadata key \(i)"
                let key = try string("the key")
                field = "key \(key)"
                guard metadata[key] == nil else { throw fail("key \(key) appears twice") }
                metadata[key] = try value(try valueType("the value type"))
                keys.append(key)
            }

            field = GGUF.alignmentKey
            var alignment = GGUF.defaultAlignment
            if let value = metadata[GGUF.alignmentKey] {
                guard case .uint32(let a) = value, a > 0, a.nonzeroBitCount == 1 else {
                    throw fail("\(GGUF.alignmentKey) must be a u32 power of two, got \(value)")
                }
                alignment = Int(a)
            }

            var tensors: [TensorInfo] = [], names: Set<String> = []
            for i in 0..<tensorCount {
                field = "tensor info \(i)"
                let name = try string("the tensor's name")
                guard names.insert(name).inserted else { throw fail("tensor \(name) appears twice", tensor: name) }
                tensors.append(try tensorInfo(name))
            }

            // The data section starts at the next multiple of the alignment.
            field = "data section"
            let (padded, overflow) = position.addingReportingOverflow(alignment - 1)
            guard !overflow else { throw fail("the data section's start overflows") }
            let dataStart = padded / alignment * alignment
            guard dataStart <= bytes.count || tensors.isEmpty else {
                throw fail("the data section would start at \(dataStart) but the file has \(bytes.count) bytes (truncated?)")
            }
            let dataLength = Swift.max(0, bytes.count - dataStart)
            var end = 0, previous: String?
            for t in tensors.sorted(by: { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }) {
                field = "tensor info"
                guard t.offset % alignment == 0 else {
                    throw fail("offset \(t.offset) is not a multiple of \(GGUF.alignmentKey) \(alignment)", tensor: t.name)
                }
                guard t.offset >= end else {
                    throw fail("its bytes from \(t.offset) overlap tensor \(previous!)'s, which end at \(end)", tensor: t.name)
                }
                guard t.byteCount <= dataLength - t.offset else {
                    throw fail("its \(t.byteCount) bytes from offset \(t.offset) run past the data section's \(dataLength) bytes (truncated?)", tensor: t.name)
                }
                (end, previous) = (t.offset + t.byteCount, t.name)
            }
            return (version, keys, metadata, tensors, alignment, dataStart)
        }

        /// One tensor info after its name: dimensions, type, offset, each checked.
        private mutating func tensorInfo(_ name: String) throws -> TensorInfo {
            let rank = try integer(UInt32.self, "the dimension count")
            guard rank >= 1, rank <= GGUFFile.maximumDimensions else {
                throw fail("\(rank) dimensions (1...\(GGUFFile.maximumDimensions) are allowed)", tensor: name)
            }
            var dims: [Int] = []
            for _ in 0..<rank {
                let d = try integer(UInt64.self, "a dimension")
                guard d <= UInt64(Int.max) else { throw fail("dimension \(d) is beyond Int", tensor: name) }
                dims.append(Int(d))
            }
            let rawType = try integer(UInt32.self, "the tensor type")
            guard let type = GGUF.TensorType(rawValue: rawType) else { throw fail("tensor type \(rawType) is not a GGML type", tensor: name) }
            let offset = try integer(UInt64.self, "the tensor offset")
            guard let elements = CheckedSize.product(dims) else {
                throw fail("dimensions \(dims) hold more elements than memory can address", tensor: name)
            }
            let (blockElements, blockBytes) = type.blockGeometry
            guard dims[0] % blockElements == 0 else {
                throw fail("its innermost dimension \(dims[0]) is not a whole number of \(type.name) blocks of \(blockElements)", tensor: name)
            }
            guard let byteCount = CheckedSize.product([elements / blockElements, blockBytes]), byteCount <= Int.max / 2 else {
                throw fail("dimensions \(dims) of \(type.name) take more bytes than memory can address", tensor: name)
            }
            guard offset <= UInt64(Int.max / 2) else { throw fail("offset \(offset) is beyond any file", tensor: name) }
            return TensorInfo(name: name, dims: dims, type: type, offset: Int(offset), byteCount: byteCount)
        }
    }
}
