import Foundation
import LowRank
import Testing

/// Safetensors files a hostile user crafts: each one is refused as the format's own reader (the
/// Rust `safetensors` crate) refuses it, with an error naming the file, never a trap or a success
/// that loads shifted or partial weights.
@Suite("hostile safetensors files")
struct HostileSafetensorsTests {
    /// A file of `header` (its length written as given, `lengthAdjustment` added) and `data` zero bytes.
    static func file(_ header: String, data: Int, lengthAdjustment: Int = 0) -> [UInt8] {
        let h = Array(header.utf8)
        return (0..<8).map { UInt8(truncatingIfNeeded: (h.count + lengthAdjustment) >> (8 * $0)) } + h + [UInt8](repeating: 0, count: data)
    }

    static func expectRefused(_ bytes: [UInt8], _ what: String, mentioning words: [String] = []) {
        let error = #expect(throws: LowRankError.self, "\(what)") { try SafetensorsFile(bytes: bytes, path: "hostile.safetensors") }
        #expect(error?.kind == .fileFormat, "\(what)")
        for word in words + ["hostile.safetensors"] {
            #expect(error?.description.contains(word) == true, "\(what): \(String(describing: error)) lacks \(word)")
        }
    }

    /// Sizes that overflow Int are errors (the old message computed count × size and trapped).
    @Test func overflowingShapes() {
        Self.expectRefused(Self.file(#"{"w":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,8]}}"#, data: 8), "2^61 f32 elements",
                           mentioning: ["w", "2305843009213693952"])
        Self.expectRefused(Self.file(#"{"w":{"dtype":"I64","shape":[4611686018427387904,4,0],"data_offsets":[0,0]}}"#, data: 0), "overflow before a zero")
        Self.expectRefused(Self.file(#"{"w":{"dtype":"F32","shape":[1e300],"data_offsets":[0,8]}}"#, data: 8), "a dimension beyond Int")
    }

    @Test func duplicateTensorNamesAreRefused() {
        let header = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        Self.expectRefused(Self.file(header, data: 8), "a tensor named twice", mentioning: ["\"w\"", "twice"])
    }

    /// A header length off by one shifts every weight by a byte: the header then ends mid-JSON or
    /// in the data, or leaves a byte of data no tensor owns.
    @Test func headerLengthOffByOne() throws {
        let valid = try oneTensorSafetensors()
        #expect(try SafetensorsFile(bytes: valid).floats("w") == [1, 2, 3, 4])
        let length = valid.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
        for change in [-1, 1, -8, 8] {
            let shifted = (0..<8).map { UInt8(truncatingIfNeeded: (length + change) >> (8 * $0)) } + valid.dropFirst(8)
            Self.expectRefused(shifted, "header length \(change)")
        }
    }

    @Test func dataOffsetsMustTileTheDataSection() {
        let one = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        #expect(throws: Never.self) { try SafetensorsFile(bytes: Self.file(one, data: 4)) }
        Self.expectRefused(Self.file(one, data: 5), "a trailing byte", mentioning: ["1 bytes after"])
        Self.expectRefused(Self.file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8), "a hole at the start", mentioning: ["0..<4"])
        Self.expectRefused(Self.file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, data: 12),
                           "a hole between tensors", mentioning: ["4..<8", "b"])
        Self.expectRefused(Self.file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8),
                           "overlapping tensors", mentioning: ["overlap"])
        // Empty tensors may share an offset, in any order of names, as the crate allows.
        let empties = #"{"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"y":{"dtype":"F16","shape":[2,0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        #expect(throws: Never.self) { try SafetensorsFile(bytes: Self.file(empties, data: 4)) }
        #expect(throws: Never.self) { try SafetensorsFile(bytes: Self.file(#"{}"#, data: 0)) }
    }

    @Test func malformedEntries() {
        let cases: [(String, String)] = [
            ("a non-integer inside data_offsets", #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,"x",4]}}"#),
            ("a fraction in data_offsets", #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}}"#),
            ("one offset", #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}}"#),
            ("offsets backwards", #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#),
            ("a shape of strings", #"{"w":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}"#),
            ("an entry that is not an object", #"{"w":[1,2]}"#),
            ("metadata that is not strings", #"{"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#),
            ("a header that does not start with {", #" {"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#),
            ("a header that is an array", #"[]"#),
        ]
        for (what, header) in cases { Self.expectRefused(Self.file(header, data: 4), what) }
        var invalidUTF8 = Self.file(#"{"w?":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: 4)
        invalidUTF8[8 + 3] = 0xFF
        Self.expectRefused(invalidUTF8, "a byte that is not UTF-8", mentioning: ["UTF-8"])
        Self.expectRefused([UInt8](repeating: 0xFF, count: 8) + Array("{}".utf8), "a header length beyond the format's limit", mentioning: ["limit"])
        // Trailing spaces pad a header to 8 bytes, as the crate writes it; null metadata is none.
        let padded = Self.file(#"{"__metadata__":null,"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}      "#, data: 4)
        #expect(throws: Never.self) { try SafetensorsFile(bytes: padded) }
    }

    /// Sizes from files go through checked arithmetic everywhere, tensors included.
    @Test func checkedSizes() throws {
        #expect(Shape([1 << 62, 4]).checkedCount == nil)
        #expect(Shape([3, -1]).checkedCount == nil)
        #expect(Shape([0, 1 << 62, 1 << 62]).checkedCount == 0)
        #expect(DType.f32.checkedByteCount(elements: 1 << 62) == nil)
        #expect(DType.nf4.checkedByteCount(elements: Int.max) == nil)
        #expect(DType.nf4.checkedByteCount(elements: 128) == DType.nf4.byteCount(elements: 128))
        let cpu = try Engine.backend(.cpu)
        #expect { try Tensor(empty: [1 << 61, 8], dtype: .f32, on: cpu) } throws: { ($0 as? LowRankError)?.kind == .outOfMemory }
        #expect(throws: LowRankError.self) { try [UInt8](repeating: 0, count: 8).withUnsafeBytes { try Tensor(bytes: $0, shape: [1 << 62, 4], dtype: .f32, on: cpu) } }
        #expect { try HostBuffer(byteCount: 1 << 60, for: "a test") } throws: { ($0 as? LowRankError)?.kind == .outOfMemory }
    }
}
