import Foundation
import LowRank
import LowRankModels
import Testing

/// The GGML types the engine reads from GGUF files, checked against the `gguf` package's encoder and
/// decoder (`tools/make_gguf_quant_fixtures.py`): blocks decode to its values bit for bit, and the
/// products over them match numpy's float64 product.
@Suite("GGML quantized types (Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) against gguf-py")
struct GGUFQuantizationTests {
    static let ggmlTypes: [DType] = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    static func fixture() throws -> SafetensorsFile { try SafetensorsFile(path: fixturePath("gguf_quant.safetensors")) }

    /// `dtype`'s weight from the fixture's raw blocks, and its values as gguf-py decodes them.
    static func weight(_ dtype: DType, from file: SafetensorsFile, on backend: any Backend) throws -> (Tensor, [Float]) {
        let values = try file.entry("\(dtype).values")
        let blocks = try file.withBytes("\(dtype).blocks") { try Tensor(bytes: $0, shape: values.shape, dtype: dtype, on: backend) }
        return (blocks, try file.floats("\(dtype).values"))
    }

    /// Decoding on the host, the cast on the device, `x·Wᵀ` (the quantized B of the matmul kernels)
    /// and the row norms DoRA takes of W.
    @Test(arguments: BackendKind.allCases, ggmlTypes)
    func decodesAndMultipliesAsGGUF(_ kind: BackendKind, _ dtype: DType) throws {
        let file = try Self.fixture()
        try onBackend(kind) { backend in
            let (w, values) = try Self.weight(dtype, from: file, on: backend)
            let bits = values.map(\.bitPattern)
            #expect(try w.floats().map(\.bitPattern) == bits, "\(dtype): host decoding")
            // A range that starts and ends inside blocks, as the CPU's parallel panels cut them.
            let part = 37..<(values.count - 45)
            var decoded = [Float](repeating: 0, count: part.count)
            try w.bytes().withUnsafeBytes { Quantizer(QuantizedLayout(dtype, elements: values.count)).dequantize($0.baseAddress!, part, into: &decoded) }
            #expect(decoded.map(\.bitPattern) == Array(bits[part]), "\(dtype): decoding elements \(part)")
            #expect(try Ops.cast(w, to: .f32).floats().map(\.bitPattern) == bits, "\(dtype): cast to f32 on \(backend.identifier)")

            let x = try file.tensor("\(dtype).x", on: backend)
            let reference = try file.withBytes("\(dtype).xwt") { raw in
                (0..<(raw.count / 8)).map { raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
            }
            let y = try Ops.matmul(x, w, transposeB: true)
            #expect(y.shape == [x.shape[0], w.shape[0]])
            let error = relativeError(try y.floats(), reference)
            #expect(error <= 1e-5, "\(dtype): x·Wᵀ on \(backend.identifier)")

            let columns = w.shape.columns
            let norms = (0..<w.shape.rows).map { row in values[(row * columns)..<(row * columns + columns)].reduce(0.0) { $0 + Double($1) * Double($1) } }
            #expect(relativeError(try Ops.rowSumOfSquares(w).floats(), norms) <= 1e-5, "\(dtype): row sums of squares")
            print("\(dtype) on \(backend.identifier): x·Wᵀ within \(error) of float64")
        }
    }

    /// QLoRA and QDoRA over a GGUF base: one type of each family, from the fixture's blocks.
    @Test(arguments: BackendKind.allCases, [DType.q5_1, .q4_K])
    func adaptersOnGGUFWeights(_ kind: BackendKind, _ dtype: DType) throws {
        let file = try Self.fixture()
        try onBackend(kind) { backend in try QuantizationTests.checkAdapters(on: try Self.weight(dtype, from: file, on: backend).0) }
    }

    /// Each GGUF type the engine maps to a dtype stores ggml's blocks: the same geometry, the name the
    /// `gguf` package gives it, and the dtype back to the type; memory planning counts those bytes.
    @Test func gGUFTypesMapToTheirBlocks() throws {
        let mapped = GGUF.TensorType.allCases.filter { $0.dtype?.isQuantized == true }
        #expect(Set(mapped.compactMap(\.dtype)) == Set(Self.ggmlTypes))
        for type in mapped {
            let dtype = try #require(type.dtype)
            let geometry = type.blockGeometry
            #expect(dtype.ggmlBlockType == type && dtype.rawValue == type.name.lowercased())
            #expect(QuantizedLayout(dtype, elements: 3 * geometry.elements).byteCount == 3 * geometry.bytes, "\(dtype)")
            #expect(dtype.byteCount(elements: 5 * geometry.elements) == 5 * geometry.bytes, "\(dtype)")
            let planning = PlanningBackend()
            _ = try Tensor(empty: [4, 2 * geometry.elements], dtype: dtype, on: planning)
            #expect(planning.memoryStatistics()[0].peakBytes == 8 * geometry.bytes, "\(dtype): planned bytes")
        }
    }

    /// A run planned with its projections held in a GGML type (as a GGUF file holds them) counts
    /// their blocks' bytes: the plan's weights are the f32 plan's less each projection's f32 bytes,
    /// plus its blocks.
    @Test func memoryPlanCountsGGUFProjections() throws {
        let folder = LlamaFixtures.path("tiny-llama")
        let config = try LlamaConfig(contentsOf: folder + "/config.json")
        let adapter = try AdapterSettings(rank: 8, alpha: 16, targets: try AdapterSettings.targets(parsing: "all-linear"), baseModel: folder)
        let projections = Set((0..<config.layerCount).flatMap { layer in config.projections.map { "model.layers.\(layer).\($0.path).weight" } })
        func plan(_ projectionType: DType) throws -> MemoryPlan {
            try MemoryPlan(MemoryPlan.Run(config: config, weightDType: { projections.contains($0) ? projectionType : .f32 }, quantize: nil,
                                          adapter: adapter, batch: 2, sequence: 16, checkpointing: false))
        }
        let f32 = try plan(.f32)
        for dtype in Self.ggmlTypes where config.projections.allSatisfy({ $0.inFeatures % dtype.rowBlockElements! == 0 }) {
            // Storage is whole 32-bit words.
            let change = config.projections.reduce(0) { sum, p in
                sum + (dtype.byteCount(elements: p.inFeatures * p.outFeatures) + 3) / 4 * 4 - 4 * p.inFeatures * p.outFeatures
            }
            #expect(try plan(dtype).weightsBytes == f32.weightsBytes + config.layerCount * change, "\(dtype)")
        }
    }

    /// Rows that are not whole blocks, and quantizing into a type the engine only reads, are refused by name.
    @Test(arguments: BackendKind.allCases)
    func refusesWhatItCannotHold(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            for dtype in Self.ggmlTypes {
                let block = try #require(dtype.rowBlockElements)
                let rows = #expect(throws: LowRankError.self) { try Tensor(empty: [2, block + block / 2], dtype: dtype, on: backend) }
                #expect(rows?.description.contains("\(dtype)") == true && rows?.description.contains("blocks of \(block)") == true,
                        "\(rows?.description ?? "no error")")
                guard !dtype.hasQuantizer else { continue }
                let w = try Tensor(randomValues(2 * block, seed: 240), shape: [2, block], on: backend)
                let cast = #expect(throws: LowRankError.self) { try Ops.cast(w, to: dtype) }
                #expect(cast?.description.contains("\(dtype)") == true, "\(cast?.description ?? "no error")")
                #expect(throws: LowRankError.self) { try Tensor([Float](repeating: 0, count: 2 * block), shape: [2, block], dtype: dtype, on: backend) }
            }
        }
    }
}
