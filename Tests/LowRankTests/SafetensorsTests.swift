import Foundation
import LowRank
import Testing

@Suite("safetensors")
struct SafetensorsTests {
    @Test func roundTripsEveryDType() throws {
        let cpu = try Engine.backend(.cpu)
        let tensors = try DType.allCases.filter { !$0.isQuantized }.map { dtype in
            (name: "t\(dtype)", tensor: try Tensor([1, -2, 3, 4, 5, 6], shape: [2, 3], dtype: dtype, on: cpu))
        }
        let path = temporaryPath("roundtrip.safetensors")
        defer { unlink(path) }
        try SafetensorsFile.write(tensors, metadata: ["kind": "test"], to: path)
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata == ["kind": "test"])
        for (name, tensor) in tensors {
            let back = try file.tensor(name, on: cpu)
            #expect(back.dtype == tensor.dtype && back.shape == tensor.shape)
            #expect(try back.bytes() == tensor.bytes())
        }
        // safetensors has no dtype for our packed blocks: writing one is an error naming it.
        let packed = try Tensor.zeros([2, 64], dtype: .nf4, on: cpu)
        let error = #expect(throws: LowRankError.self) { try SafetensorsFile.write([("w", packed)], to: path) }
        #expect(error?.description.contains("nf4") == true)
    }

    @Test func corruptFilesAreClearErrors() throws {
        let cpu = try Engine.backend(.cpu)
        let valid = try oneTensorSafetensors()
        func header(_ json: String) -> [UInt8] {
            let h = Array(json.utf8)
            return (0..<8).map { UInt8(truncatingIfNeeded: h.count >> (8 * $0)) } + h + [UInt8](repeating: 0, count: 16)
        }
        let cases: [(String, [UInt8])] = [
            ("too short", [1, 2, 3]),
            ("truncated data", Array(valid.dropLast(4))),
            ("header length past the end", [255, 255, 255, 0, 0, 0, 0, 0] + valid.dropFirst(8)),
            ("not JSON", header("{\"w\": [")),
            ("unknown dtype", header(#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#)),
            ("shape and size disagree", header(#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#)),
            ("negative dimension", header(#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#)),
            ("offsets out of range", header(#"{"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}"#)),
            ("overlapping tensors", header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#)),
            ("overflowing shape", header(#"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}"#)),
        ]
        for (what, bytes) in cases {
            let error = #expect(throws: LowRankError.self, "\(what)") { try SafetensorsFile(bytes: bytes, path: "case.safetensors") }
            #expect(error?.kind == .fileFormat, "\(what)")
            #expect(error?.description.contains("case.safetensors") == true, "\(what): \(String(describing: error))")
        }
        let missing = #expect(throws: LowRankError.self) { try SafetensorsFile(path: "/nonexistent/x.safetensors") }
        #expect(missing?.kind == .io)
        #expect(throws: LowRankError.self) { try SafetensorsFile(bytes: valid).tensor("absent", on: cpu) }
    }
}
