import Foundation
import LowRank
import Testing

@Suite("quantized weights (NF4, Q8_0, Q4_0)")
struct QuantizationTests {
    static let formats: [DType] = [.nf4, .nf4DoubleQuant, .q8_0, .q4_0]

    /// GGML blocks with known bytes: Q8_0 with a tie (−63.5 rounds away from zero to −64), Q4_0
    /// with its signed extreme at −8 and the clamp at 15.
    @Test(arguments: BackendKind.allCases)
    func ggmlFixtures(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            var q8 = [Float](repeating: 0, count: 32)
            (q8[0], q8[1], q8[2]) = (127, -63.5, 0.49)
            let q8Bytes: [UInt8] = [0x00, 0x3C, 0x7F, 0xC0] + [UInt8](repeating: 0, count: 30)
            var q4 = [Float](repeating: 0, count: 32)
            (q4[0], q4[1], q4[16], q4[17]) = (-8, 0.5, 7, -7.6)
            let q4Bytes: [UInt8] = [0x00, 0x3C, 0xF0, 0x09] + [UInt8](repeating: 0x88, count: 14)
            for (dtype, values, bytes, decoded) in [(DType.q8_0, q8, q8Bytes, [127, -64] + [Float](repeating: 0, count: 30)),
                                                    (.q4_0, q4, q4Bytes, [-8, 1] + [Float](repeating: 0, count: 14) + [7, -8] + [Float](repeating: 0, count: 14))] {
                let quantized = try Ops.cast(try Tensor(values, shape: [1, 32], on: backend), to: dtype)
                #expect(try quantized.bytes() == bytes, "\(dtype) bytes")
                #expect(try Ops.cast(quantized, to: .f32).floats() == decoded, "\(dtype) values")
            }
        }
    }

    /// bitsandbytes' 8-bit CPU coder (the absmax codes of double quantization) on values chosen
    /// around every midpoint of its map, where it and the nearest code disagree: the codes and
    /// scales its own library gave (`tools/make_bnb_coder_fixture.py`) must come out exactly.
    @Test func bitsAndBytesBlockwiseCoder() throws {
        let path = fixturePath("bnb_blockwise8.safetensors")
        let file = try SafetensorsFile(path: path)
        #expect(try file.floats("code_map") == QuantizationTables.dynamic)
        let values = try file.floats("values"), scales = try file.floats("scales")
        let expected = try file.tensor("codes", on: try Engine.backend(.cpu)).bytes()
        var differing = 0, notNearest = 0
        for (block, slice) in values.chunks(256).enumerated() {
            let scale = slice.reduce(Float(0)) { max($0, abs($1)) }
            #expect(scale == scales[block], "block \(block) scale")
            let reciprocal = 1 / scale
            for i in slice.indices {
                let code = scale == 0 ? 0 : Quantizer.dynamicCode(values[i] * reciprocal)
                if code != expected[i] { differing += 1 }
                if scale != 0 && Int(code) != Quantizer.nearest(values[i] * reciprocal, in: QuantizationTables.dynamic) { notNearest += 1 }
            }
        }
        #expect(differing == 0, "\(differing) of \(values.count) codes differ from bitsandbytes'")
        #expect(notNearest > 0, "the fixture should hold values where bitsandbytes' code is not the nearest")
        print("bitsandbytes' 8-bit coder: \(values.count) values, \(differing) codes differ, \(notNearest) where it is not the nearest code")
    }

    /// Random weights through every format: the device writes the host's bytes, unpacking is
    /// exact on both, and each value is within its format's bound of the original.
    @Test(arguments: BackendKind.allCases)
    func roundTripWithinBounds(_ kind: BackendKind) throws {
        let cpu = try Engine.backend(.cpu)
        try onBackend(kind) { backend in
            // 300 blocks of 64: the double quantization spans two nested blocks, the second partial.
            let (rows, columns) = (150, 128)
            let values = randomValues(rows * columns, seed: 200, scale: 0.05)
            for dtype in Self.formats {
                let quantized = try Ops.cast(try Tensor(values, shape: [rows, columns], on: backend), to: dtype)
                let host = try Tensor(values, shape: [rows, columns], dtype: dtype, on: cpu)
                #expect(try quantized.bytes() == host.bytes(), "\(dtype): device and host bytes")
                let back = try Ops.cast(quantized, to: .f32).floats()
                #expect(back == (try host.floats()), "\(dtype): unpacking")
                var worst = 0.0
                for (block, slice) in values.chunks(dtype == .q8_0 || dtype == .q4_0 ? 32 : 64).enumerated() {
                    let amax = Double(slice.map(abs).max() ?? 0)
                    // Half a step of the format's grid (NF4's widest gap is 0.3038 of absmax, between −1 and
                    // its next code; Q4_0's top code is clamped, a whole step), plus the rounding of the
                    // scale (f16 for GGML, the 8-bit code of double quantization).
                    let bound = switch dtype {
                    case .q8_0: amax / 127 * (0.5 + 128 * 0x1p-11)
                    case .q4_0: amax / 8 * (1 + 8 * 0x1p-11)
                    default: amax * (0.1520 + (dtype == .nf4DoubleQuant ? 0.02 : 0))
                    }
                    for (i, v) in slice.enumerated() {
                        let error = abs(Double(back[block * slice.count + i]) - Double(v))
                        worst = max(worst, error / max(bound, .leastNonzeroMagnitude))
                        #expect(error <= bound, "\(dtype): element \(block * slice.count + i)")
                    }
                }
                print("\(dtype) on \(backend.identifier): worst error \(String(format: "%.3f", worst)) of its bound, "
                      + "\(String(format: "%.3f", Double(quantized.byteCount) * 8 / Double(rows * columns))) bits per weight")
            }
        }
    }

    /// QLoRA and QDoRA: forward and backward on a quantized W agree with the f32 path run on its
    /// dequantized copy (`checkAdapters`).
    @Test(arguments: BackendKind.allCases)
    func adaptersOnQuantizedWeights(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let weight = try Tensor(randomValues(40 * 64, seed: 215, scale: 0.2), shape: [40, 64], on: backend)
            for dtype in Self.formats { try Self.checkAdapters(on: try Ops.cast(weight, to: dtype)) }
        }
    }

    /// LoRA (with dropout) and DoRA, forward and backward, on the quantized `weight` `[dOut, dIn]`
    /// and on its dequantized f32 copy. The same values enter the same products, so only summation
    /// order differs: the bound is 1e-5 relative, as for the golden cases.
    static func checkAdapters(on weight: Tensor) throws {
        let backend = weight.backend
        let (t, dOut, dIn, r) = (6, weight.shape[0], weight.shape[1], 4)
        let tensor = { (v: [Float], s: Shape) in try Tensor(v, shape: s, on: backend) }
        let x = try tensor(randomValues(t * dIn, seed: 210), [t, dIn]), a = try tensor(randomValues(r * dIn, seed: 211, scale: 0.2), [r, dIn])
        let b = try tensor(randomValues(dOut * r, seed: 212, scale: 0.1), [dOut, r]), g = try tensor(randomValues(t * dOut, seed: 213), [t, dOut])
        let m = try tensor(randomValues(dOut, seed: 214).map { 1 + $0 / 4 }, [dOut])
        let lora = LoRAOptions(scale: 1.5, dropout: 0.2, seed: 9), dora = DoRAOptions(lora: LoRAOptions(scale: 1.5))
        func run(_ w: Tensor) throws -> [[Float]] {
            let (y, u) = try Ops.loraForward(x: x, weight: w, a: a, b: b, options: lora)
            let (dx, dA, dB) = try Ops.loraBackward(gradOutput: g, x: x, weight: w, a: a, b: b, u: u, options: lora)
            let f = try Ops.doraForward(x: x, weight: w, a: a, b: b, magnitude: m, weightNormSquared: try Ops.rowSumOfSquares(w), options: dora)
            let d = try Ops.doraBackward(gradOutput: g, x: x, weight: w, a: a, b: b, forward: f, options: dora)
            return try [y, dx, dA, dB, f.y, f.norm, d.dx, d.dA, d.dB, try #require(d.dm)].map { try $0.floats() }
        }
        let reference = try run(try Ops.cast(weight, to: .f32))
        let names = ["lora y", "lora dx", "lora dA", "lora dB", "dora y", "dora n", "dora dx", "dora dA", "dora dB", "dora dm"]
        for (name, (got, expected)) in zip(names, zip(try run(weight), reference)) {
            #expect(relativeError(got, expected.map(Double.init)) <= 1e-5, "\(weight.dtype): \(name)")
        }
    }

    @Test(arguments: BackendKind.allCases)
    func rejectsMisuse(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let w = try Tensor(randomValues(8 * 64, seed: 220), shape: [8, 64], on: backend)
            let q = try Ops.cast(w, to: .q4_0)
            #expect(throws: LowRankError.self) { try Ops.cast(try Tensor.zeros([4, 40], on: backend), to: .q8_0) }  // rows of 40
            #expect(throws: LowRankError.self) { try Ops.cast(q, to: .nf4) }
            #expect(throws: LowRankError.self) { try Ops.matmul(q, w, transposeB: true) }  // only B may be quantized
            let error = #expect(throws: LowRankError.self) {
                try LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 2), a: try Tensor.zeros([2, 64], on: backend),
                                b: try Tensor.zeros([8, 2], on: backend)).merge(into: q)
            }
            #expect(error?.description.contains("quantized") == true)
        }
    }

    /// PyTorch's f32 sum and mean on the CPU (`tools/make_torch_sum_fixture.py`), bit for bit, at
    /// lengths that take each path of its kernel: the mean double quantization stores is this one.
    @Test func torchSumAddsInPyTorchsOrder() throws {
        let file = try SafetensorsFile(path: fixturePath("torch_sum.safetensors"))
        let lengths = try #require(file.metadata["lengths"]).split(separator: ",").map { Int($0)! }
        #expect(lengths.count >= 20)
        for n in lengths {
            let values = try file.floats("values\(n)")
            let (sum, expectedSum, expectedMean) = (TorchSum.sum(values), try file.floats("sum\(n)")[0], try file.floats("mean\(n)")[0])
            #expect(sum.bitPattern == expectedSum.bitPattern, "length \(n): \(sum) vs PyTorch \(expectedSum)")
            #expect((sum / Float(n)).bitPattern == expectedMean.bitPattern, "mean of \(n): \(sum / Float(n)) vs PyTorch \(expectedMean)")
        }
    }

    /// A bitsandbytes checkpoint entry, written the way its `QuantState.as_dict(packed=True)` saves
    /// one, loads; corrupt ones are errors that name the tensor.
    @Test func bitsAndBytesCheckpointEntries() throws {
        let cpu = try Engine.backend(.cpu)
        let name = "model.layers.0.mlp.down_proj.weight"
        let (rows, columns) = (20, 64 * 16)
        let original = try Tensor(randomValues(rows * columns, seed: 230, scale: 0.05), shape: [rows, columns], dtype: .nf4DoubleQuant, on: cpu)
        let layout = QuantizedLayout(.nf4DoubleQuant, elements: rows * columns)
        let bytes = try original.bytes()
        let floats = { (range: Range<Int>) in bytes[range].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
        func file(_ edit: (inout [(String, Tensor)], inout [String: JSON]) throws -> Void) throws -> SafetensorsFile {
            var state: [String: JSON] = ["quant_type": .string("nf4"), "blocksize": .number(64), "dtype": .string("bfloat16"),
                                         "shape": .array([.number(Double(rows)), .number(Double(columns))]), "nested_blocksize": .number(256),
                                         "nested_dtype": .string("float32"), "nested_offset": .number(Double(floats(layout.meanOffset..<(layout.meanOffset + 4))[0]))]
            let u8 = { (b: [UInt8]) in try b.withUnsafeBytes { try Tensor(bytes: $0, shape: [b.count], dtype: .u8, on: cpu) } }
            var tensors: [(String, Tensor)] = [
                (name, try u8(Array(bytes[0..<layout.codeBytes]))),
                (name + ".absmax", try u8(Array(bytes[layout.absmaxOffset..<(layout.absmaxOffset + layout.blocks)]))),
                (name + ".quant_map", try Tensor(QuantizationTables.nf4, shape: [16], on: cpu)),
                (name + ".nested_absmax", try Tensor(floats(layout.nestedScaleOffset..<layout.meanOffset), shape: [layout.nestedBlocks], on: cpu)),
                (name + ".nested_quant_map", try Tensor(QuantizationTables.dynamic, shape: [256], on: cpu)),
            ]
            try edit(&tensors, &state)
            tensors.append((name + ".quant_state.bitsandbytes__\(state["quant_type"]?.string ?? "")", try u8(Array(JSON.object(state).serialized.utf8))))
            let path = temporaryPath("bnb.safetensors")
            defer { unlink(path) }
            try SafetensorsFile.write(tensors.map { (name: $0.0, tensor: $0.1) }, to: path)
            return try SafetensorsFile(path: path)
        }
        let loaded = try BitsAndBytesNF4.load(name, from: try file { _, _ in }, on: cpu)
        let loadedBytes = try loaded.bytes()
        #expect(loaded.dtype == .nf4DoubleQuant && loaded.shape == [rows, columns] && loadedBytes == bytes)

        let corruptions: [(String, (inout [(String, Tensor)], inout [String: JSON]) throws -> Void)] = [
            ("quant type fp4", { _, state in state["quant_type"] = .string("fp4") }),
            ("codes for", { tensors, _ in tensors[1].1 = try Tensor.zeros([7], dtype: .u8, on: cpu) }),
            ("nested_absmax has", { tensors, _ in tensors[3].1 = try Tensor.zeros([9], on: cpu) }),
            ("packed bytes", { _, state in state["shape"] = .array([.number(Double(rows + 1)), .number(Double(columns))]) }),
            ("quant_map", { tensors, _ in tensors[2].1 = try Tensor([Float](repeating: 0.5, count: 16), shape: [16], on: cpu) }),
            ("blocksize 32", { _, state in state["blocksize"] = .number(32) }),
            ("codes for 5 blocks of 4096", { _, state in state["blocksize"] = .number(4096) }),
        ]
        for (expected, corrupt) in corruptions {
            let error = #expect(throws: LowRankError.self) { try BitsAndBytesNF4.load(name, from: try file(corrupt), on: cpu) }
            #expect(error?.description.contains(name) == true && error?.description.contains(expected) == true,
                    "\(expected): \(error?.description ?? "no error")")
        }
    }
}
