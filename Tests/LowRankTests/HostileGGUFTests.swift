import LowRank
import LowRankModels
import Testing

/// GGUF bytes written field by field, so that each test can break one.
struct GGUFBytes {
    var bytes: [UInt8] = []

    mutating func u32(_ v: UInt32) { bytes += withUnsafeBytes(of: v.littleEndian, Array.init) }
    mutating func u64(_ v: UInt64) { bytes += withUnsafeBytes(of: v.littleEndian, Array.init) }
    mutating func string(_ s: String, length: UInt64? = nil) { u64(length ?? UInt64(s.utf8.count)); bytes += Array(s.utf8) }
    mutating func header(version: UInt32 = 3, tensors: UInt64, keys: UInt64) { u32(GGUF.magic); u32(version); u64(tensors); u64(keys) }
    mutating func key(_ name: String, u32 value: UInt32) { string(name); u32(GGUF.ValueType.uint32.rawValue); u32(value) }
    mutating func tensor(_ name: String, dims: [UInt64], type: GGUF.TensorType = .f32, offset: UInt64) {
        string(name); u32(UInt32(dims.count)); dims.forEach { u64($0) }; u32(type.rawValue); u64(offset)
    }
    mutating func pad(to alignment: Int = 32) { while bytes.count % alignment != 0 { bytes.append(0) } }

    /// A valid file: one key, two f32 tensors of 8 values each, back to back.
    static func valid() -> [UInt8] {
        var b = GGUFBytes()
        b.header(tensors: 2, keys: 1)
        b.key("general.alignment", u32: 32)
        b.tensor("a.weight", dims: [8], offset: 0)
        b.tensor("b.weight", dims: [4, 2], offset: 32)
        b.pad()
        b.bytes += [UInt8](repeating: 0, count: 64)
        return b.bytes
    }
}

@Suite("Hostile GGUF files are errors naming the field")
struct HostileGGUFTests {
    static func expectRefused(_ bytes: [UInt8], mentioning words: [String]) {
        do {
            _ = try GGUFFile(bytes: bytes, path: "hostile.gguf")
            Issue.record("accepted a file that should be refused (\(words))")
        } catch let error as LowRankError {
            #expect(error.kind == .fileFormat, "\(error)")
            #expect(error.description.contains("hostile.gguf"), "\(error)")
            for word in words { #expect(error.description.contains(word), "\(error) should mention \(word)") }
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func validFileReads() throws {
        let file = try GGUFFile(bytes: GGUFBytes.valid(), path: "ok.gguf")
        #expect(file.keys == ["general.alignment"] && file.tensors.map(\.name) == ["a.weight", "b.weight"])
        #expect(try file.info("b.weight").shape == [2, 4] && file.floats("b.weight") == [Float](repeating: 0, count: 8))
        var version2 = GGUFBytes.valid()
        version2[4] = 2
        #expect(try GGUFFile(bytes: version2).version == 2)
    }

    /// Every proper prefix of a valid file is refused (the data section's end included), never read past.
    @Test func everyTruncationIsRefused() {
        let valid = GGUFBytes.valid()
        for length in 0..<valid.count {
            #expect(throws: LowRankError.self, "\(length) bytes") { try GGUFFile(bytes: Array(valid.prefix(length)), path: "cut.gguf") }
        }
    }

    @Test func badHeaders() {
        var b = GGUFBytes(); b.u32(0x4655_4746); b.u32(3); b.u64(0); b.u64(0)
        Self.expectRefused(b.bytes, mentioning: ["magic"])
        b = GGUFBytes(); b.header(version: 1, tensors: 0, keys: 0)
        Self.expectRefused(b.bytes, mentioning: ["version", "1"])
        b = GGUFBytes(); b.header(tensors: 1 << 60, keys: 0)
        Self.expectRefused(b.bytes, mentioning: ["tensor count"])
        b = GGUFBytes(); b.header(tensors: 0, keys: UInt64.max)
        Self.expectRefused(b.bytes, mentioning: ["metadata count"])
    }

    @Test func badMetadata() {
        var b = GGUFBytes(); b.header(tensors: 0, keys: 1); b.string("general.name", length: 1 << 62)
        Self.expectRefused(b.bytes, mentioning: ["metadata key 0", "length"])
        b = GGUFBytes(); b.header(tensors: 0, keys: 1); b.string("general.name"); b.u32(GGUF.ValueType.string.rawValue); b.u64(1 << 40)
        Self.expectRefused(b.bytes, mentioning: ["key general.name", "length"])
        b = GGUFBytes(); b.header(tensors: 0, keys: 1); b.string("tokenizer.ggml.tokens"); b.u32(GGUF.ValueType.array.rawValue)
        b.u32(GGUF.ValueType.string.rawValue); b.u64(1 << 50)
        Self.expectRefused(b.bytes, mentioning: ["key tokenizer.ggml.tokens", "count"])
        b = GGUFBytes(); b.header(tensors: 0, keys: 1); b.string("general.name"); b.u32(13); b.u32(0)
        Self.expectRefused(b.bytes, mentioning: ["key general.name", "13"])
        b = GGUFBytes(); b.header(tensors: 0, keys: 2); b.key("llama.block_count", u32: 1); b.key("llama.block_count", u32: 2)
        Self.expectRefused(b.bytes, mentioning: ["llama.block_count", "twice"])
        b = GGUFBytes(); b.header(tensors: 0, keys: 1); b.key("general.alignment", u32: 24)
        Self.expectRefused(b.bytes, mentioning: ["general.alignment", "power of two"])
        b = GGUFBytes(); b.header(tensors: 0, keys: 1); b.string("x"); b.u32(GGUF.ValueType.string.rawValue); b.u64(2); b.bytes += [0xC3, 0x28]
        Self.expectRefused(b.bytes, mentioning: ["key x", "UTF-8"])
        // Arrays of arrays nested past the reader's depth.
        b = GGUFBytes(); b.header(tensors: 0, keys: 1); b.string("deep"); b.u32(GGUF.ValueType.array.rawValue)
        for _ in 0..<20 { b.u32(GGUF.ValueType.array.rawValue); b.u64(1) }
        b.u32(GGUF.ValueType.uint8.rawValue); b.u64(0)
        Self.expectRefused(b.bytes, mentioning: ["key deep", "nest"])
    }

    @Test func badTensorInfos() {
        func file(_ tensors: (inout GGUFBytes) -> Void, count: UInt64, data: Int = 64) -> [UInt8] {
            var b = GGUFBytes(); b.header(tensors: count, keys: 0); tensors(&b); b.pad(); b.bytes += [UInt8](repeating: 0, count: data)
            return b.bytes
        }
        Self.expectRefused(file({ $0.tensor("a", dims: [8], offset: 0); $0.tensor("a", dims: [8], offset: 32) }, count: 2), mentioning: ["tensor: a", "twice"])
        Self.expectRefused(file({ $0.tensor("a", dims: [8], offset: 0); $0.tensor("b", dims: [8], offset: 16) }, count: 2, data: 96),
                           mentioning: ["tensor: b", "offset 16"])
        Self.expectRefused(file({ $0.tensor("a", dims: [16], offset: 0); $0.tensor("b", dims: [8], offset: 32) }, count: 2),
                           mentioning: ["overlap", "a"])
        Self.expectRefused(file({ $0.tensor("a", dims: [32], offset: 0) }, count: 1), mentioning: ["tensor: a", "past the data section"])
        Self.expectRefused(file({ $0.tensor("a", dims: [1 << 40, 1 << 40], offset: 0) }, count: 1), mentioning: ["tensor: a", "memory"])
        Self.expectRefused(file({ $0.tensor("a", dims: [1, 2, 3, 4, 5], offset: 0) }, count: 1), mentioning: ["tensor: a", "dimensions"])
        Self.expectRefused(file({ $0.tensor("a", dims: [48], type: .q8_0, offset: 0) }, count: 1), mentioning: ["tensor: a", "Q8_0 blocks"])
        Self.expectRefused(file({ $0.string("a"); $0.u32(1); $0.u64(8); $0.u32(99); $0.u64(0) }, count: 1), mentioning: ["tensor: a", "type 99"])
        Self.expectRefused(file({ $0.tensor("a", dims: [8], offset: UInt64.max) }, count: 1), mentioning: ["tensor: a", "offset"])
    }

    /// A one-block llama file (d = 4, two heads, vocabulary 2) with f32 tensors, `change` applied to
    /// its tensor list (GGUF name, dims innermost first) first; `blockCount` is its `llama.block_count`.
    static func llamaFile(ropeScaling: (type: String, factor: Float)? = nil, blockCount: UInt32 = 1,
                          _ change: (inout [(String, [UInt64])]) -> Void) -> [UInt8] {
        var tensors: [(String, [UInt64])] = [("token_embd.weight", [4, 2]), ("output_norm.weight", [4]), ("output.weight", [4, 2])]
        for name in ["attn_norm", "ffn_norm"] { tensors.append(("blk.0.\(name).weight", [4])) }
        for name in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"] { tensors.append(("blk.0.\(name).weight", [4, 4])) }
        change(&tensors)
        var b = GGUFBytes()
        b.header(tensors: UInt64(tensors.count), keys: ropeScaling == nil ? 6 : 8)
        b.string("general.architecture"); b.u32(GGUF.ValueType.string.rawValue); b.string("llama")
        if let ropeScaling {
            b.string("llama.rope.scaling.type"); b.u32(GGUF.ValueType.string.rawValue); b.string(ropeScaling.type)
            b.string("llama.rope.scaling.factor"); b.u32(GGUF.ValueType.float32.rawValue); b.u32(ropeScaling.factor.bitPattern)
        }
        for (key, value) in [("block_count", blockCount), ("embedding_length", 4), ("feed_forward_length", 4), ("attention.head_count", 2), ("vocab_size", 2)] {
            b.key("llama." + key, u32: value)
        }
        var offset: UInt64 = 0
        for (name, dims) in tensors {
            b.tensor(name, dims: dims, offset: offset)
            offset += (dims.reduce(4, *) + 31) / 32 * 32
        }
        b.pad()
        b.bytes += [UInt8](repeating: 0, count: Int(offset))
        return b.bytes
    }

    /// Tensors the `llama.*` keys imply, checked before anything is read: each error names the tensor.
    @Test func tensorsAgainstTheKeys() throws {
        let path = try makeTemporaryFolder() + "/model.gguf"
        func refused(_ bytes: [UInt8], _ words: [String]) throws {
            try bytes.withUnsafeBytes { try FileIO.writeAtomically(path, $0) }
            #expect { try GGUFCheckpoint(path: path) } throws: { error in
                let text = "\(error)"
                return words.allSatisfy(text.contains) && text.contains(path)
            }
        }
        try Self.llamaFile { _ in }.withUnsafeBytes { try FileIO.writeAtomically(path, $0) }
        #expect(try GGUFCheckpoint(path: path).config.tiedEmbeddings == false)
        try refused(Self.llamaFile { $0.removeAll { $0.0 == "blk.0.ffn_up.weight" } }, ["no tensor blk.0.ffn_up.weight"])
        try refused(Self.llamaFile { $0.append(("blk.1.attn_norm.weight", [4])) }, ["blk.1.attn_norm.weight", "not used"])
        try refused(Self.llamaFile { $0.append(("mystery.weight", [4])) }, ["mystery.weight", "not one of the llama architecture's"])
        try refused(Self.llamaFile { $0[$0.firstIndex { $0.0 == "blk.0.attn_k.weight" }!].1 = [4, 2] }, ["blk.0.attn_k.weight", "[4, 2]"])
        // A block count past llama.cpp's 512 is refused by its key (the fuzzer found one whose list
        // of implied tensor names ran out of memory); 512 blocks by the first missing tensor.
        try refused(Self.llamaFile(blockCount: .max) { _ in }, ["llama.block_count", "1...512", "4294967295"])
        try refused(Self.llamaFile(blockCount: 512) { _ in }, ["no tensor blk.1.attn_norm.weight"])
        // llama.cpp's linear RoPE scaling is read with its factor; another kind is refused by its key.
        try Self.llamaFile(ropeScaling: ("linear", 4)) { _ in }.withUnsafeBytes { try FileIO.writeAtomically(path, $0) }
        #expect(try GGUFCheckpoint(path: path).config.ropeScaling == .linear(factor: 4))
        try refused(Self.llamaFile(ropeScaling: ("yarn", 4)) { _ in }, ["llama.rope.scaling.type", "yarn"])
        try refused(Self.llamaFile(ropeScaling: ("linear", 0.5)) { _ in }, ["llama.rope.scaling.factor"])
    }

    /// What the model source adds: another architecture, keys the config needs, tensors the keys imply.
    @Test func badModels() throws {
        var b = GGUFBytes(); b.header(tensors: 0, keys: 1); b.string("general.architecture"); b.u32(GGUF.ValueType.string.rawValue); b.string("gpt2")
        let path = try makeTemporaryFolder() + "/arch.gguf"
        try b.bytes.withUnsafeBytes { try FileIO.writeAtomically(path, $0) }
        #expect { try GGUFCheckpoint(path: path) } throws: { ($0 as? LowRankError)?.description.contains("general.architecture is gpt2") == true }
        b = GGUFBytes(); b.header(tensors: 0, keys: 2); b.string("general.architecture"); b.u32(GGUF.ValueType.string.rawValue); b.string("llama")
        b.key("llama.block_count", u32: 0)
        try b.bytes.withUnsafeBytes { try FileIO.writeAtomically(path, $0) }
        #expect { try GGUFCheckpoint(path: path) } throws: { error in
            let text = (error as? LowRankError)?.description ?? ""
            return text.contains("llama.") && !text.contains("num_hidden_layers") && !text.contains("hidden_size")
        }
    }
}
