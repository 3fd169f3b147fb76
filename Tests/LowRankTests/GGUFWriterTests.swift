import Foundation
import LowRank
import LowRankModels
import LowRankText
import Testing

/// The GGUF writers. The files as a whole are checked by `tools/check_gguf.py` with the `gguf`
/// package, PEFT and transformers (and llama.cpp's own adapter converter); these tests check what
/// needs no Python: the header's layout, refusals, ggml's quantized bytes, the pre-tokenizer hash.
@Suite("GGUF writing")
struct GGUFWriterTests {
    /// The fields of a header this test reads back: a minimal reader of what the writer wrote.
    struct Header {
        var version: UInt32 = 0, tensorCount = 0, keys: [String] = [], alignment: UInt32 = 0
        var tensors: [(name: String, dims: [Int], type: UInt32, offset: Int)] = [], dataStart = 0

        init(_ bytes: [UInt8]) {
            var at = 0
            func integer<T: FixedWidthInteger>(_: T.Type) -> T {
                defer { at += MemoryLayout<T>.size }
                return bytes[at..<(at + MemoryLayout<T>.size)].reversed().reduce(0) { $0 << 8 | T($1) }
            }
            func string() -> String {
                let count = Int(integer(UInt64.self))
                defer { at += count }
                return String(decoding: bytes[at..<(at + count)], as: UTF8.self)
            }
            func skip(_ type: UInt32) {
                switch type {
                case 0, 1, 7: at += 1
                case 2, 3: at += 2
                case 4, 5, 6: at += 4
                case 10, 11, 12: at += 8
                case 8: _ = string()
                default:
                    let element = integer(UInt32.self), count = integer(UInt64.self)
                    for _ in 0..<count { skip(element) }
                }
            }
            #expect(integer(UInt32.self) == GGUF.magic)
            version = integer(UInt32.self)
            tensorCount = Int(integer(UInt64.self))
            let keyCount = Int(integer(UInt64.self))
            for _ in 0..<keyCount {
                let key = string(), type = integer(UInt32.self)
                keys.append(key)
                if key == GGUF.alignmentKey { alignment = integer(UInt32.self) } else { skip(type) }
            }
            for _ in 0..<tensorCount {
                let name = string(), rank = Int(integer(UInt32.self))
                let dims = (0..<rank).map { _ in Int(integer(UInt64.self)) }
                tensors.append((name, dims, integer(UInt32.self), Int(integer(UInt64.self))))
            }
            dataStart = (at + 31) / 32 * 32
        }
    }

    @Test func headerLayoutAndAlignedData() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/model.gguf"
            let tensors: [GGUFWriter.TensorInfo] = [.init(name: "a", shape: [3], type: .f32), .init(name: "b", shape: [2, 64], type: .q8_0),
                                                    .init(name: "c", shape: [5, 2], type: .f16)]
            let metadata: [(key: String, value: GGUF.Value)] = [
                ("general.architecture", .string("llama")), ("x.flag", .bool(true)), ("x.list", .array(.int32, [.int32(-1), .int32(2)])),
                ("x.names", .array(.string, [.string("é"), .string("")])), ("x.big", .uint64(1 << 40)), ("x.f", .float64(0.5)),
            ]
            let data = tensors.map { [UInt8](repeating: UInt8($0.name.utf8.first!), count: $0.byteCount) }
            try GGUFWriter.write(to: path, metadata: metadata, tensors: tensors) { data[$0] }
            let bytes = try FileIO.read(path)
            let header = Header(bytes)
            #expect(header.version == 3 && header.tensorCount == 3)
            #expect(header.keys == metadata.map(\.key) + [GGUF.alignmentKey] && header.alignment == 32)
            #expect(header.tensors.map(\.dims) == [[3], [64, 2], [2, 5]])  // innermost first
            #expect(header.tensors.map(\.type) == [0, 8, 1])
            #expect(tensors.map(\.byteCount) == [12, 136, 20])  // Q8_0: 2 rows of 2 blocks of 34 bytes
            #expect(header.tensors.map(\.offset) == [0, 32, 192])
            for (i, tensor) in header.tensors.enumerated() {
                let start = header.dataStart + tensor.offset
                #expect(Array(bytes[start..<(start + data[i].count)]) == data[i])
            }
            #expect(bytes.count == header.dataStart + 192 + 32)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["model.gguf"])
        }
    }

    /// Each refusal names the key or tensor and leaves what was at the path (here: nothing, then the old file).
    @Test func refusalsLeaveNoFile() throws {
        try withTemporaryFolder { (folder: String) throws in
            let path = folder + "/x.gguf"
            let f32 = GGUFWriter.TensorInfo(name: "t", shape: [4], type: .f32)
            let cases: [(metadata: [(key: String, value: GGUF.Value)], tensors: [GGUFWriter.TensorInfo], bytes: Int, names: String)] = [
                ([("k", .bool(true)), ("k", .bool(false))], [], 0, "k"),
                ([(GGUF.alignmentKey, .uint32(64))], [], 0, GGUF.alignmentKey),
                ([("k", .array(.int32, [.int32(1), .uint8(2)]))], [], 0, "k"),
                ([], [f32, f32], 16, "t"),
                ([], [.init(name: "q", shape: [2, 48], type: .q4_0)], 0, "q"),
                ([], [.init(name: String(repeating: "n", count: 64), shape: [1], type: .f32)], 4, "nnnn"),
                ([], [f32], 15, "t"),
            ]
            for c in cases {
                #expect {
                    try GGUFWriter.write(to: path, metadata: c.metadata, tensors: c.tensors) { _ in [UInt8](repeating: 0, count: c.bytes) }
                } throws: { error in
                    "\(error)".contains(c.names)
                }
                #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty)
            }
            try GGUFWriter.write(to: path, metadata: [], tensors: [f32]) { _ in [UInt8](repeating: 1, count: 16) }
            let before = try FileIO.read(path)
            #expect(throws: LowRankError.self) { try GGUFWriter.write(to: path, metadata: [], tensors: [f32]) { _ in throw LowRankError(.io, "disk full") } }
            #expect(try FileIO.read(path) == before)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["x.gguf"])
        }
    }

    /// The Q8_0 and Q4_0 bytes `merge --gguf-type` writes are `gguf.quants.quantize`'s, bit for bit
    /// (`tools/make_gguf_quant_fixture.py`: ties, zero blocks, extremes of either sign, tiny scales).
    @Test func quantizedBytesAreGGUFPackages() throws {
        let fixture = try SafetensorsFile(path: fixturePath("gguf/quants.safetensors"))
        let values = try fixture.floats("values"), shape = try fixture.entry("values").shape
        for dtype in [DType.q8_0, .q4_0] {
            let ours = try Tensor(values, shape: shape, dtype: dtype, on: CPUBackend.shared).bytes()
            let theirs = try fixture.withBytes(dtype.rawValue) { Array($0) }
            #expect(ours == theirs, "\(dtype): \(zip(ours, theirs).filter { $0 != $1 }.count) bytes differ")
        }
    }

    @Test func sha256() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    /// SmolLM2's tokenizer hashes to the value llama.cpp's converter lists for SmolLM ("smollm"), and
    /// a tokenizer it does not list gets no name.
    @Test func preTokenizerFoundByTheConvertersHash() throws {
        let smollm = try Tokenizer.load(fixturePath("tokenizers/smollm2"))
        let vocabulary = try smollm.ggufVocabulary(size: smollm.vocabularySize)
        #expect(vocabulary.preTokenizerHash == "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249")
        #expect(vocabulary.model == "gpt2" && vocabulary.pre == "smollm" && vocabulary.scores == nil)
        #expect(vocabulary.tokens.count == 49152 && vocabulary.merges.first == "Ġ t")
        let digits = try Tokenizer.load(fixturePath("tokenizers/gpt2_digits.json")).ggufVocabulary(size: 1000)
        #expect(digits.pre == nil && digits.tokens.last == "[PAD999]" && digits.types.last == .unused)
        let sentencePiece = try Tokenizer.load(fixturePath("tokenizers/sp_legacy.json"))
        let sp = try sentencePiece.ggufVocabulary(size: sentencePiece.vocabularySize)
        #expect(sp.model == "llama" && sp.pre == "default" && sp.merges.isEmpty && sp.types.filter { $0 == .byte }.count == 256)
        #expect(throws: LowRankError.self) { try sentencePiece.ggufVocabulary(size: 10) }
    }

    /// What llama.cpp's adapter format cannot express is refused with the advice to merge, and no file is written.
    @Test func exportRefusesWhatLlamaCppCannotApply() throws {
        let config = try LlamaConfig(contentsOf: fixturePath("llama/tiny-llama/config.json"))
        try withTemporaryFolder { (folder: String) throws in
            for (adapter, field) in [("llama/dora", "use_dora"), ("llama/rslora", "use_rslora"), ("peft-init/loftq-iter2", "loftq_config")] {
                #expect {
                    try GGUFAdapterExport.write(adapter: fixturePath(adapter), config: config, to: folder + "/a.gguf")
                } throws: { error in
                    "\(error)".contains(field) && "\(error)".contains("lowrank merge")
                }
            }
            #expect(throws: LowRankError.self) {
                try GGUFAdapterExport.write(adapter: fixturePath("llama/lora"), config: config, to: folder + "/a.gguf", type: .q8_0)
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty)
            #expect(try GGUFAdapterExport.write(adapter: fixturePath("llama/lora"), config: config, to: folder + "/a.gguf") == 4)
        }
    }
}
