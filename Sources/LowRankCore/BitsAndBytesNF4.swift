/// NF4 weights as bitsandbytes writes them, packed into one `nf4` or `nf4_dq` tensor.
public enum BitsAndBytesNF4 {
    /// The absmax statistics of a bitsandbytes NF4 weight: plain f32 per block, or double-quantized.
    public enum Absmax: Sendable {
        case plain([Float])
        /// bitsandbytes' `absmax` codes (u8 per block), `nested_absmax` (f32 per 256 blocks), the
        /// `nested_quant_map` they index and the `nested_offset`.
        case doubleQuantized(codes: [UInt8], scales: [Float], map: [Float], offset: Float)
    }

    /// The blocksizes read: bitsandbytes' default 64 and its larger ones (128 is its default on
    /// ROCm). The engine's NF4 blocks are 64 elements, so a larger block's statistic is repeated
    /// over each of its blocks of 64, which dequantize to the same values bit for bit; bitsandbytes'
    /// blocks of 32 would need two statistics in one block of 64.
    public static let blocksizes = [64, 128, 256, 512, 1024, 2048, 4096]

    /// One tensor from bitsandbytes' parts; `name` is what errors name. The blocksize is one of
    /// `blocksizes`, the nested one 256 and the maps bitsandbytes' own, the only ones its NF4 writes.
    public static func tensor(named name: String, shape: Shape, packed: [UInt8], absmax: Absmax, quantMap: [Float],
                              blocksize: Int = 64, nestedBlocksize: Int = 256, on backend: any Backend) throws -> Tensor {
        let fail = { (message: String) in LowRankError(.fileFormat, "\(name): \(message)", context: [("tensor", name), ("shape", "\(shape)")]) }
        let dtype: DType = if case .plain = absmax { .nf4 } else { .nf4DoubleQuant }
        let layout = QuantizedLayout(dtype, elements: shape.count)
        guard blocksizes.contains(blocksize) else {
            throw fail("NF4 blocksize \(blocksize) is not supported (\(blocksizes.map(String.init).joined(separator: ", ")))")
        }
        // Block b of 64 takes the statistics of block b / repeats of the file's.
        let repeats = blocksize / layout.blockElements
        let blocks = (shape.count + blocksize - 1) / blocksize
        let nestedBlocks = (blocks + QuantizedLayout.nestedBlockElements - 1) / QuantizedLayout.nestedBlockElements
        guard packed.count == layout.codeBytes else {
            throw fail("\(packed.count) packed bytes, but \(shape.count) elements take \(layout.codeBytes)")
        }
        guard quantMap == QuantizationTables.nf4 else { throw fail("quant_map is not bitsandbytes' NF4 table") }
        var bytes = [UInt8](repeating: 0, count: layout.byteCount)
        bytes.replaceSubrange(0..<packed.count, with: packed)
        switch absmax {
        case .plain(let values):
            guard values.count == blocks else { throw fail("absmax has \(values.count) values for \(blocks) blocks of \(blocksize)") }
            bytes.withUnsafeMutableBytes { b in
                for i in 0..<layout.blocks { b.storeBytes(of: values[i / repeats], toByteOffset: layout.absmaxOffset + 4 * i, as: Float.self) }
            }
        case .doubleQuantized(let codes, let scales, let map, let offset):
            guard nestedBlocksize == QuantizedLayout.nestedBlockElements else {
                throw fail("nested blocksize \(nestedBlocksize) is not supported (only 256)")
            }
            guard codes.count == blocks else { throw fail("absmax has \(codes.count) codes for \(blocks) blocks of \(blocksize)") }
            guard scales.count == nestedBlocks else {
                throw fail("nested_absmax has \(scales.count) values for \(nestedBlocks) blocks of 256")
            }
            guard map == QuantizationTables.dynamic else { throw fail("nested_quant_map is not bitsandbytes' dynamic map") }
            // Nested block g of 256 blocks of 64 lies inside nested block g / repeats of the file's.
            for i in 0..<layout.blocks { bytes[layout.absmaxOffset + i] = codes[i / repeats] }
            bytes.withUnsafeMutableBytes { b in
                for g in 0..<layout.nestedBlocks {
                    b.storeBytes(of: scales[g / repeats], toByteOffset: layout.nestedScaleOffset + 4 * g, as: Float.self)
                }
                b.storeBytes(of: offset, toByteOffset: layout.meanOffset, as: Float.self)
            }
        }
        return try bytes.withUnsafeBytes { try Tensor(bytes: $0, shape: shape, dtype: dtype, on: backend) }
    }

    /// The NF4 weight `name` (say `model.layers.0.self_attn.q_proj.weight`) of a Hugging Face
    /// checkpoint saved by bitsandbytes: the packed `name`, `name.absmax`, `name.quant_map`, with
    /// double quantization `name.nested_absmax` and `name.nested_quant_map`, and the JSON in
    /// `name.quant_state.bitsandbytes__nf4` (quant_type, blocksize, shape, nested_blocksize, nested_offset).
    public static func load(_ name: String, from file: SafetensorsFile, on backend: any Backend) throws -> Tensor {
        let fail = { (message: String) in LowRankError(.fileFormat, "\(name): \(message)", context: [("tensor", name), ("file", file.path)]) }
        guard let stateKey = file.names.first(where: { $0.hasPrefix(name + ".quant_state.bitsandbytes__") }) else {
            throw fail("no quant_state entry: not a bitsandbytes 4-bit weight")
        }
        let quantType = String(stateKey.dropFirst((name + ".quant_state.bitsandbytes__").count))
        guard quantType == "nf4" else { throw fail("quant type \(quantType) is not supported (only nf4)") }
        let state = try file.withBytes(stateKey) { try JSON.parse($0) }
        guard let dims = state["shape"]?.array?.compactMap(\.int), !dims.isEmpty else { throw fail("quant_state has no shape") }
        let bytes = { (key: String) throws -> [UInt8] in
            guard file.entries[key] != nil else { throw fail("\(key) is missing") }
            return try file.withBytes(key) { Array($0) }
        }
        let floats = { (key: String) throws -> [Float] in
            guard let entry = file.entries[key] else { throw fail("\(key) is missing") }
            guard entry.dtype == .f32 else { throw fail("\(key) is \(entry.dtype), expected f32") }
            return try file.floats(key)
        }
        let absmax: Absmax
        if file.entries[name + ".nested_absmax"] != nil {
            guard let offset = state["nested_offset"]?.number else { throw fail("quant_state has no nested_offset") }
            absmax = .doubleQuantized(codes: try bytes(name + ".absmax"), scales: try floats(name + ".nested_absmax"),
                                      map: try floats(name + ".nested_quant_map"), offset: Float(offset))
        } else {
            absmax = .plain(try floats(name + ".absmax"))
        }
        return try tensor(named: name, shape: Shape(dims), packed: try bytes(name), absmax: absmax, quantMap: try floats(name + ".quant_map"),
                          blocksize: state["blocksize"]?.int ?? -1, nestedBlocksize: state["nested_blocksize"]?.int ?? 256, on: backend)
    }
}
