/// The safetensors format: an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the data. Every field is checked against the file,
/// so a truncated or inconsistent file is an error naming the file and tensor, never an
/// out-of-bounds read.
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
    private let bytes: [UInt8]
    private let dataStart: Int

    static let dtypeNames: [String: DType] = ["F32": .f32, "F16": .f16, "BF16": .bf16, "U8": .u8, "I8": .i8, "I32": .i32, "I64": .i64]

    public init(path: String) throws {
        try self.init(bytes: try FileIO.read(path), path: path)
    }

    public init(bytes: [UInt8], path: String = "<memory>") throws {
        func bad(_ message: String, tensor: String? = nil) -> LowRankError {
            LowRankError(.fileFormat, message, context: [("file", path)] + (tensor.map { [("tensor", $0)] } ?? []))
        }
        guard bytes.count >= 8 else { throw bad("\(bytes.count) bytes is too short for a safetensors file") }
        let headerLength = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard headerLength <= UInt64(bytes.count - 8), headerLength <= 100_000_000 else {
            throw bad("the header claims \(headerLength) bytes but the file has \(bytes.count - 8) after the length (truncated?)")
        }
        let header: JSON
        do { header = try JSON.parse(bytes[8..<(8 + Int(headerLength))]) } catch let e as LowRankError {
            throw bad("the header is not valid JSON: \(e.message)")
        }
        guard let object = header.object else { throw bad("the header is not a JSON object") }
        self.path = path
        self.bytes = bytes
        dataStart = 8 + Int(headerLength)
        let dataLength = bytes.count - dataStart

        var metadata: [String: String] = [:]
        var entries: [String: Entry] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value.object else { throw bad("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v.string else { throw bad("metadata value \(k) is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let dtypeName = value["dtype"]?.string else { throw bad("no dtype", tensor: name) }
            guard let dtype = Self.dtypeNames[dtypeName] else {
                throw bad("dtype \(dtypeName) is not supported (F32, F16, BF16, U8, I8, I32, I64)", tensor: name)
            }
            guard let dims = value["shape"]?.array?.map(\.int), dims.allSatisfy({ ($0 ?? -1) >= 0 }) else {
                throw bad("shape is not a list of non-negative integers", tensor: name)
            }
            let shape = Shape(dims.map { $0! })
            guard let offsets = value["data_offsets"]?.array?.compactMap(\.int), offsets.count == 2,
                  offsets[0] >= 0, offsets[0] <= offsets[1] else {
                throw bad("data_offsets is not [begin, end]", tensor: name)
            }
            guard offsets[1] <= dataLength else {
                throw bad("data_offsets end at \(offsets[1]) but the data section has \(dataLength) bytes (truncated?)", tensor: name)
            }
            let (count, overflow) = shape.dims.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d)
                return (p, acc.1 || o)
            }
            guard !overflow, count.multipliedReportingOverflow(by: dtype.byteSize) == (offsets[1] - offsets[0], false) else {
                throw bad("shape \(shape) of \(dtype) needs \(count * dtype.byteSize) bytes but data_offsets give \(offsets[1] - offsets[0])", tensor: name)
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        let sorted = entries.sorted { $0.value.range.lowerBound < $1.value.range.lowerBound }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.value.range.overlaps(b.value.range) {
            throw bad("tensors \(a.key) and \(b.key) overlap")
        }
        self.metadata = metadata
        self.entries = entries
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
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[(dataStart + e.range.lowerBound)..<(dataStart + e.range.upperBound)])) }
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
