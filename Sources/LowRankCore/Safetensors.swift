/// The safetensors format: an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the data. The file is mapped, not read: tensors are
/// copied out of the page cache one at a time. The header is held to what the format's own
/// reader (the Rust `safetensors` crate) validates, so a file it refuses is an error here too,
/// naming the file and tensor: a header that does not start with `{` or is not strict JSON (a
/// tensor named twice included), sizes that overflow, and data_offsets that do not tile the data
/// section exactly (a hole, an overlap or trailing bytes: what a header length off by one leaves).
public struct SafetensorsFile: Sendable {
    public struct Entry: Sendable {
        public var dtype: DType
        public var shape: Shape
        /// Byte range inside `data`.
        public var range: Range<Int>
    }

    public let path: String
    public let metadata: [String: String]
    public let entries: [String: Entry]
    private let storage: MappedBytes
    private let dataStart: Int

    static let dtypeNames: [String: DType] = ["F32": .f32, "F16": .f16, "BF16": .bf16, "U8": .u8, "I8": .i8, "I32": .i32, "I64": .i64]
    /// The format's bound on the header, as its reader sets it.
    static let maximumHeaderLength: UInt64 = 100_000_000

    public init(path: String) throws {
        try self.init(storage: try MappedBytes(contentsOf: path), path: path)
    }

    public init(bytes: [UInt8], path: String = "<memory>") throws {
        try self.init(storage: try MappedBytes(copying: bytes), path: path)
    }

    private init(storage: MappedBytes, path: String) throws {
        (metadata, entries, dataStart) = try storage.withBytes { try Self.parseHeader($0, path: path) }
        self.path = path
        self.storage = storage
    }

    private static func parseHeader(_ bytes: UnsafeRawBufferPointer, path: String) throws -> (metadata: [String: String], entries: [String: Entry], dataStart: Int) {
        func bad(_ message: String, tensor: String? = nil) -> LowRankError {
            LowRankError(.fileFormat, message, context: [("file", path)] + (tensor.map { [("tensor", $0)] } ?? []))
        }
        guard bytes.count >= 8 else { throw bad("\(bytes.count) bytes is too short for a safetensors file") }
        let headerLength = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[$1]) << (8 * UInt64($1)) }
        guard headerLength <= Self.maximumHeaderLength else {
            throw bad("the header length \(headerLength) is beyond the format's limit of \(Self.maximumHeaderLength) bytes")
        }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw bad("the header claims \(headerLength) bytes but the file has \(bytes.count - 8) after the length (truncated?)")
        }
        let dataStart = 8 + Int(headerLength)
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart])
        guard headerBytes.first == UInt8(ascii: "{") else { throw bad("the header does not start with {: the header length is wrong or this is not a safetensors file") }
        let header: JSON
        do { header = try JSON.parse(raw: headerBytes) } catch let e as LowRankError {
            throw bad("the header is not valid JSON: \(e.message)")
        }
        guard let object = header.object else { throw bad("the header is not a JSON object") }
        let dataLength = bytes.count - dataStart

        var metadata: [String: String] = [:]
        var entries: [String: Entry] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                if value == .null { continue }
                guard let m = value.object else { throw bad("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v.string else { throw bad("metadata value \(k) is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let fields = value.object else { throw bad("the entry is not an object of dtype, shape and data_offsets", tensor: name) }
            guard let dtypeName = fields["dtype"]?.string else { throw bad("no dtype", tensor: name) }
            guard let dtype = Self.dtypeNames[dtypeName] else {
                throw bad("dtype \(dtypeName) is not supported (F32, F16, BF16, U8, I8, I32, I64)", tensor: name)
            }
            guard let dims = fields["shape"]?.array?.map(\.int), dims.allSatisfy({ ($0 ?? -1) >= 0 }) else {
                throw bad("shape is not a list of non-negative integers", tensor: name)
            }
            let shape = Shape(dims.map { $0! })
            guard let offsets = fields["data_offsets"]?.array, offsets.count == 2, let begin = offsets[0].int, let end = offsets[1].int,
                  begin >= 0, begin <= end else {
                throw bad("data_offsets is not [begin, end], two integers with 0 ≤ begin ≤ end", tensor: name)
            }
            guard end <= dataLength else {
                throw bad("data_offsets end at \(end) but the data section has \(dataLength) bytes (truncated?)", tensor: name)
            }
            guard let size = TensorDescriptor(shape, dtype).checkedByteCount else {
                throw bad("shape \(shape) of \(dtype) has more bytes than memory can address", tensor: name)
            }
            guard size == end - begin else {
                throw bad("shape \(shape) of \(dtype) needs \(size) bytes but data_offsets give \(end - begin)", tensor: name)
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: begin..<end)
        }
        try checkTiling(entries, dataLength: dataLength, bad)
        return (metadata, entries, dataStart)
    }

    /// The tensors' byte ranges, in order, must cover the data section from 0 to its end with no
    /// hole, overlap or trailing byte.
    private static func checkTiling(_ entries: [String: Entry], dataLength: Int, _ bad: (String, String?) -> LowRankError) throws {
        let ordered = entries.sorted { ($0.value.range.lowerBound, $0.value.range.upperBound, $0.key) < ($1.value.range.lowerBound, $1.value.range.upperBound, $1.key) }
        var position = 0
        for (name, entry) in ordered {
            let begin = entry.range.lowerBound
            if begin > position {
                throw bad("bytes \(position)..<\(begin) of the data section belong to no tensor: the header length or data_offsets are wrong", name)
            }
            if begin < position { throw bad("the tensor's bytes from \(begin) overlap the tensor before it, which ends at \(position)", name) }
            position = entry.range.upperBound
        }
        guard position == dataLength else {
            throw bad("the data section has \(dataLength - position) bytes after the last tensor's end at \(position): the header length or data_offsets are wrong", nil)
        }
    }

    public var names: [String] { entries.keys.sorted() }

    public func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else {
            throw LowRankError(.fileFormat, "no tensor named \(name)", context: [("file", path), ("tensors", names.joined(separator: ", "))])
        }
        return e
    }

    public func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let e = try entry(name)
        return try storage.withBytes { try body(UnsafeRawBufferPointer(rebasing: $0[(dataStart + e.range.lowerBound)..<(dataStart + e.range.upperBound)])) }
    }

    /// Drops the entry's pages from resident memory (see `MappedBytes.evict`).
    func evict(_ entry: Entry) {
        storage.evict((dataStart + entry.range.lowerBound)..<(dataStart + entry.range.upperBound))
    }

    public func tensor(_ name: String, on backend: any Backend) throws -> Tensor {
        let e = try entry(name)
        return try withBytes(name) { try Tensor(bytes: $0, shape: e.shape, dtype: e.dtype, on: backend) }
    }

    /// The tensor's values widened to f32.
    public func floats(_ name: String) throws -> [Float] {
        let e = try entry(name)
        var out = [Float](repeating: 0, count: e.shape.count)
        try withBytes(name) { raw in
            out.withUnsafeMutableBufferPointer { if let base = raw.baseAddress { convertToFloat(base, dtype: e.dtype, count: $0.count, into: $0.baseAddress!) } }
        }
        return out
    }

    /// Writes `tensors` (read back from their backends) and `metadata` to `path`, atomically.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String) throws {
        let names = Dictionary(tensors.map { ($0.name, 1) }, uniquingKeysWith: +)
        if let duplicate = names.first(where: { $0.value > 1 }) {
            throw LowRankError(.invalidArgument, "tensor \(duplicate.key) is given twice", context: [("file", path)])
        }
        var header: [String: JSON] = [:]
        var data: [UInt8] = []
        for (name, tensor) in tensors {
            guard let dtypeName = dtypeNames.first(where: { $0.value == tensor.dtype })?.key else {
                throw LowRankError(.unsupported, "dtype \(tensor.dtype) cannot be stored", context: [("tensor", name)])
            }
            let begin = data.count
            data += try tensor.bytes()
            header[name] = .object(["dtype": .string(dtypeName), "shape": .array(tensor.shape.dims.map { .number(Double($0)) }),
                                    "data_offsets": .array([.number(Double(begin)), .number(Double(data.count))])])
        }
        if !metadata.isEmpty { header["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        var headerBytes = Array(JSON.object(header).serialized.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var file = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(headerBytes.count) >> (8 * $0)) }
        file += headerBytes
        file += data
        try file.withUnsafeBytes { try FileIO.writeAtomically(path, $0) }
    }
}
