import Foundation
import LowRank
import LowRankModels
import Testing

/// What the engine reads besides safetensors (JSON configs, token data, model folders) and how it
/// opens files: a hostile input is an error naming the file, line or field, never a trap, a hang
/// or a silent success.
@Suite("hostile input files")
struct HostileInputFileTests {
    static func expectError(_ words: [String], _ body: () throws -> Void) {
        #expect(throws: LowRankError.self) { try body() }
        do { try body() } catch {
            for word in words { #expect("\(error)".contains(word), "\(error) lacks \(word)") }
        }
    }

    /// Strict JSON for every config reader: a key given twice is refused, as are inputs serde_json refuses.
    @Test func strictJSON() throws {
        Self.expectError(["\"hidden_size\"", "twice"]) { _ = try JSON.parse(Array(#"{"hidden_size": 32, "hidden_size": 64}"#.utf8)) }
        for bad in [#"{"a": 01}"#, #"{"a": +1}"#, #"{"a": .5}"#, #"{"a": 1.}"#, #"{"a": 1e999}"#, "{\"a\": \"x\ty\"}", #"{"a": "\ud800"}"#,
                    #"{"a": "\q"}"#, #"{"a": "\u+123"}"#, #"[1, 2,]"#] {
            #expect(throws: LowRankError.self, "\(bad)") { try JSON.parse(Array(bad.utf8)) }
        }
        #expect(throws: LowRankError.self) { try JSON.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(try JSON.parse(Array(#""\ud83d\ude00 \/ \u00e9""#.utf8)) == .string("😀 / é"))
        #expect(try JSON.parse(Array(#"[-0.5e+2, 0, 12]"#.utf8)) == .array([.number(-50), .number(0), .number(12)]))
    }

    /// A folder, FIFO or device where a file belongs is refused by name at once: the FIFO used to
    /// block forever, the folder to abort allocating 9223372036854775839 bytes.
    @Test func onlyRegularFilesAreRead() throws {
        try withTemporaryFolder { folder in
            let directory = folder + "/dir.jsonl"
            try FileIO.makeDirectories(directory)
            let fifo = folder + "/fifo.jsonl"
            #expect(mkfifo(fifo, 0o600) == 0)
            for (path, kind) in [(directory, "a folder"), (fifo, "a FIFO"), ("/dev/zero", "a character device")] {
                Self.expectError([kind, path]) { _ = try TokenDataset(contentsOf: path, vocabularySize: 64) }
                Self.expectError([kind, path]) { _ = try SafetensorsFile(path: path) }
                Self.expectError([kind, path]) { _ = try JSON.read(path, what: "a config") }
                Self.expectError([kind, path]) { _ = try FileIO.read(path) }
            }
            Self.expectError(["NUL"]) { _ = try FileIO.read(folder + "/a\u{0}b") }
        }
    }

    func withTinyCheckpoint(_ name: String = "tiny-llama", _ body: (String) throws -> Void) throws {
        try withTemporaryFolder { folder in
            let model = folder + "/model"
            try FileManager.default.copyItem(atPath: LlamaFixtures.path(name), toPath: model)
            try body(model)
        }
    }

    @Test func hostileModelFolders() throws {
        try withTinyCheckpoint { model in
            try FileManager.default.removeItem(atPath: model + "/config.json")
            try FileIO.makeDirectories(model + "/config.json")
            Self.expectError(["a folder", "config.json"]) { _ = try HuggingFaceCheckpoint(folder: model) }
        }
        try withTinyCheckpoint { model in
            var config = try String(contentsOfFile: model + "/config.json", encoding: .utf8)
            config = config.replacingOccurrences(of: "\"hidden_size\": 32,", with: "\"hidden_size\": 32, \"hidden_size\": 48,")
            try FileIO.writeAtomically(model + "/config.json", text: config)
            Self.expectError(["hidden_size", "twice", "config.json"]) { _ = try HuggingFaceCheckpoint(folder: model) }
        }
        let indexName = HuggingFaceCheckpoint.indexName
        func editIndex(_ model: String, _ change: (inout [String: JSON]) -> Void) throws {
            var index = try JSON.read(model + "/" + indexName, what: "index").object!
            var map = index["weight_map"]!.object!
            change(&map)
            index["weight_map"] = .object(map)
            try FileIO.writeAtomically(model + "/" + indexName, text: JSON.object(index).serialized)
        }
        for shard in ["..", ".", "", "../model.safetensors"] {
            try withTinyCheckpoint("tiny-qwen2-bf16") { model in
                try editIndex(model) { $0["model.norm.weight"] = .string(shard) }
                Self.expectError(["\"\(shard)\"", indexName]) { _ = try HuggingFaceCheckpoint(folder: model) }
            }
        }
        try withTinyCheckpoint("tiny-qwen2-bf16") { model in
            let shards = try FileIO.contents(ofDirectory: model).filter { $0.hasPrefix("model-") }
            try FileManager.default.copyItem(atPath: model + "/" + shards[0], toPath: model + "/copy.safetensors")
            let first = try SafetensorsFile(path: model + "/copy.safetensors").names[0]
            try editIndex(model) { $0["extra"] = .string("copy.safetensors") }
            Self.expectError(["tensor \(first) is in both", "copy.safetensors"]) { _ = try HuggingFaceCheckpoint(folder: model) }
        }
        try withTinyCheckpoint("tiny-qwen2-bf16") { model in
            let index = try JSON.read(model + "/" + indexName, what: "index")["weight_map"]!.object!
            let (tensor, shard) = index.min { $0.key < $1.key }!
            let other = Set(index.values.compactMap(\.string)).first { $0 != shard.string }!
            try editIndex(model) { $0[tensor] = .string(other) }
            Self.expectError(["tensor \(tensor)", other, "does not hold it"]) { _ = try HuggingFaceCheckpoint(folder: model) }
        }
    }

    /// A checkpoint's bf16 weights convert chunk by chunk from the mapped file to the same values
    /// the whole-tensor conversion gives, quantized ones to the same bytes.
    @Test func mappedLoadingConvertsAsBefore() throws {
        let cpu = try Engine.backend(.cpu)
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-qwen2-bf16"))
        let name = "model.layers.0.mlp.gate_proj.weight"
        let file = try checkpoint.file(containing: name)
        #expect(try file.entry(name).dtype == .bf16)
        #expect(try checkpoint.tensor(name, on: cpu).floats() == (try file.floats(name)))
        let quantized = try checkpoint.tensor(name, as: .nf4DoubleQuant, on: cpu)
        let expected = try Tensor(try file.floats(name), shape: quantized.shape, dtype: .nf4DoubleQuant, on: cpu)
        #expect(try quantized.bytes() == expected.bytes())
        // Several chunks, the last partial.
        let count = (1 << 20) * 2 + 77
        let values = (0..<count).map { Float($0 % 1000) / 8 - 60 }
        try withTemporaryFolder { folder in
            let path = folder + "/big.safetensors"
            try SafetensorsFile.write([(name: "w", tensor: try Tensor(values, shape: [count], dtype: .f16, on: cpu))], to: path)
            let loaded = try SafetensorsFile(path: path).tensor("w", as: .f32, on: cpu)
            #expect(try loaded.floats() == values)
            #expect(try SafetensorsFile(path: path).tensor("w", as: .bf16, on: cpu).floats() == (try Tensor(values, shape: [count], dtype: .bf16, on: cpu).floats()))
        }
    }

    /// A 1 TiB (sparse) checkpoint is mapped, not read: its header opens at once, and a tensor
    /// the host cannot hold is the engine's out-of-memory error, not an abort.
    @Test func checkpointsLargerThanMemory() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/huge.safetensors"
            let elements = 1 << 39
            let header = Array(#"{"w":{"dtype":"F16","shape":[\#(elements)],"data_offsets":[0,\#(2 * elements)]}}"#.utf8)
            try ((0..<8).map { UInt8(truncatingIfNeeded: header.count >> (8 * $0)) } + header).withUnsafeBytes { try FileIO.writeAtomically(path, $0) }
            #expect(truncate(path, off_t(8 + header.count + 2 * elements)) == 0)
            let file = try SafetensorsFile(path: path)
            #expect(try file.entry("w").shape == [elements])
            #expect { try file.tensor("w", as: .f32, on: try Engine.backend(.cpu)) } throws: { ($0 as? LowRankError)?.kind == .outOfMemory }
            #expect { try file.tensor("w", as: .nf4, on: try Engine.backend(.cpu)) } throws: { ($0 as? LowRankError)?.kind == .outOfMemory }
        }
    }

    static func numPy(_ shape: String, descr: String = "<i8", data: [UInt8]) -> [UInt8] {
        var header = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }".utf8)
        while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
        header.append(0x0A)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)] + header + data
    }

    static func int64s(_ values: [Int64]) -> [UInt8] { values.flatMap { v in (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } } }

    /// `--seq-len 0` (a stride of 0), shapes that overflow or are negative, ids beyond Int32 and
    /// malformed lines: each an error naming the file and what is wrong.
    @Test func hostileTokenData() throws {
        Self.expectError(["sequence length", "at least 2", "got 0"]) { _ = try TokenDataset(rows: [[1, 2, 3]], vocabularySize: 8, maxLength: 0) }
        Self.expectError(["got -3"]) { _ = try TokenDataset(rows: [[1, 2, 3]], vocabularySize: 8, maxLength: -3) }
        #expect(try TokenDataset(rows: [[1, 2, 3, 4, 5]], vocabularySize: 8, maxLength: 2).rows == [[1, 2], [3, 4]])
        let npy: [(String, [UInt8], [String])] = [
            ("(4611686018427387904, 4)", Self.int64s([1, 2]), ["4611686018427387904"]),
            ("(-1, -4)", Self.int64s([1, 2]), ["(-1, -4)"]),
            ("(2, x)", Self.int64s([1, 2]), ["2-D"]),
            ("(2,)", Self.int64s([1, 2]), ["2-D"]),
            ("(1, 2, 1)", Self.int64s([1, 2]), ["2-D"]),
            ("(3, 1)", Self.int64s([1, 2, 3]), ["predict nothing"]),
            ("(1000000000000, 0)", [], ["predict nothing"]),
            ("(1, 3)", Self.int64s([1, 2]), ["16 bytes"]),
            ("(1, 2)", Self.int64s([1, 1 << 40]), ["1099511627776", "32 bits"]),
        ]
        for (shape, data, words) in npy {
            Self.expectError(words + ["tokens.npy"]) { _ = try Array(Self.numPy(shape, data: data)).withUnsafeBytes { try TokenDataset.parseNumPy($0, path: "tokens.npy") } }
        }
        #expect(try Self.numPy("(1, 2)", data: Self.int64s([3, 4])).withUnsafeBytes { try TokenDataset.parseNumPy($0, path: "t.npy") } == [[3, 4]])
        var future = Self.numPy("(1, 2)", data: Self.int64s([3, 4]))
        future[6] = 9
        Self.expectError(["version 9"]) { _ = try future.withUnsafeBytes { try TokenDataset.parseNumPy($0, path: "t.npy") } }
        let lines: [(String, [String])] = [
            ("{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 2.5]}", ["line 2", "2.5"]),
            ("{\"input_ids\": [1, 2]}\n\n{\"input_ids\": [1, 4294967296]}", ["line 3", "4294967296"]),
            ("{\"input_ids\": [1, 2], \"input_ids\": [3, 4]}", ["line 1", "twice"]),
            ("[1, 2]", ["line 1", "input_ids"]),
            ("{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 2]", ["line 2", "not JSON"]),
        ]
        for (text, words) in lines {
            Self.expectError(words + ["tokens.jsonl"]) { _ = try Array(text.utf8).withUnsafeBytes { try TokenDataset.parseJSONLines($0, path: "tokens.jsonl") } }
        }
    }
}
