import Foundation
import LowRank
import LowRankModels
import Testing

/// `Tests/Fixtures/deep-llama`, made by `tools/make_deep_llama_fixture.py`: a random Llama 24
/// blocks deep with a 16384-token vocabulary, shaped like a trained model where precision shows,
/// and its loss in float64.
@Suite("A deep model's loss against float64")
struct DeepModelPrecisionTests {
    static let folder = fixturePath("deep-llama")
    static let expected: JSON = try! JSON.parse(FileIO.read(folder + "/expected.json"))
    /// The loss as PyTorch computes the bf16 model in bf16 (`tools/make_bf16_compute_fixtures.py`).
    static let expectedBF16: JSON = try! JSON.parse(FileIO.read(folder + "/expected-bf16.json"))

    static func evaluate(on backend: any Backend, packedInto length: Int?) throws -> Evaluation {
        let model = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: Self.folder + "/model"), on: backend)
        #expect(model.config.layerCount >= 24)
        let rows = try TokenDataset(contentsOf: Self.folder + "/data.jsonl", vocabularySize: model.config.vocabularySize)
        let data = try length.map { try rows.packed(into: $0) } ?? rows
        #expect(length == nil || data.sequenceLengths == [[64, 64], [64, 64]])
        return try Evaluation(model: model, adapter: nil, data: data, batchSize: 4)
    }

    /// The mean loss within 2e-6 of float64 on both backends with exact products (`highest`; PyTorch
    /// in f32 is 6e-7 off here), the f32 sums' precision this measures. Measured: 3.3e-7 on the CPU
    /// backend and on lavapipe; the CPU backend's f32 running sums in cross-entropy made it 8.8e-6
    /// (and 3.6e-5 on SmolLM2-135M). Likewise with the four rows of 64 packed two to a row of 128
    /// (`--pack`; measured: 2.5e-7 on both).
    @Test(arguments: BackendKind.allCases, [nil, 128])
    func evaluationWithinTwoMillionthsOfFloat64(_ kind: BackendKind, packedInto length: Int?) throws {
        try onBackend(kind, exact: true) { backend in
            let result = try Self.evaluate(on: backend, packedInto: length)
            let exact = Self.expected["loss"]!.number!
            let error = abs(result.loss - exact) / exact
            print("deep model eval on \(kind)\(length.map { ", packed into rows of \($0)" } ?? ""): \(result.loss) vs float64 \(exact), relative \(error)")
            #expect(result.tokens == Self.expected["tokens"]!.int!)
            #expect(error < 2e-6, "\(result.loss) vs float64 \(exact)")
        }
    }

    /// The CPU's default, `medium`: the activations entering each bf16 product are rounded to bf16,
    /// as PyTorch's bf16 model rounds them, which also rounds every op's output. So the loss is off
    /// float64 by PyTorch's own bf16 scale (1.2e-4 here), a different sample of roundings of that
    /// size: at most twice PyTorch's distance (measured: 1.4e-4, 1.18 times it, and 2.1e-5 from
    /// PyTorch's bf16 loss).
    @Test(arguments: [nil, 128])
    func mediumWithinPyTorchsBF16Rounding(packedInto length: Int?) throws {
        let backend = try BackendKind.cpu.open()
        guard Engine.matmulPrecision(of: backend) == .medium, CPUBackend.hasBFloat16DotProducts else {
            try Test.cancel("the CPU backend does not compute at medium here (LOWRANK_MATMUL_PRECISION, or no AVX-512 BF16)")
        }
        let result = try Self.evaluate(on: backend, packedInto: length)
        let exact = Self.expected["loss"]!.number!, pytorch = Self.expectedBF16["loss"]!.number!
        let (error, scale) = (abs(result.loss - exact) / exact, abs(pytorch - exact) / exact)
        print("deep model eval at medium\(length.map { ", packed into rows of \($0)" } ?? ""): \(result.loss) vs float64 \(exact), relative \(error); "
            + "PyTorch's bf16 \(pytorch), relative \(scale); ours vs PyTorch's bf16 \(abs(result.loss - pytorch) / exact)")
        #expect(error <= 2 * scale, "\(result.loss) vs float64 \(exact), PyTorch's bf16 \(pytorch)")
    }

    /// A row whose softmax is one token over a long tail of tiny terms (a trained model's logits
    /// over a 49152-token vocabulary): each term is far below the rounding step of a running f32
    /// sum, which dropped the tail: the loss, log(1 + tail), came out 32% low; the row sums in f64 now.
    @Test func crossEntropyKeepsALongTail() throws {
        let (rows, classes) = (4, 49152)
        let tail = randomValues(rows * classes, seed: 7, scale: 2)
        let logits = tail.enumerated().map { i, v in i % classes == i / classes ? 1 : v - 17 }
        let labels = (0..<rows).map { Int32($0) }
        let cpu = try BackendKind.cpu.open(), op = Op.crossEntropy(ignoreIndex: -100)
        let inputs = [try Tensor(logits, shape: [rows, classes], on: cpu), try Tensor(ids: labels, on: cpu)]
        let loss = try Ops.execute(op, inputs)[0]
        let exact = Float64Reference.outputs(of: op, try inputs.map(Float64Values.init), prior: { [] })!
        let error = relativeError(try loss.floats(), exact[0])
        print("cross-entropy over a long tail: relative error \(error)")
        #expect(error < 1e-7)
    }
}
