import Foundation
import LowRank
@testable import LowRankModels
import Testing

/// `merge --dtype`: what rounding to the output dtype does to the adapter's update, measured per
/// tensor and reported, and an f32 merge that keeps what bf16 erases.
@Suite("Merging into a dtype: the rounding of the update")
struct MergeRoundingTests {
    static let bf16Model = "tiny-qwen2-bf16"

    /// A LoRA adapter on every projection of the bf16 fixture whose update `ΔW = s·B·A` is at most
    /// `2⁻¹²·rms(W)` per element: most of it is below half a bf16 unit in the last place of its weight.
    static func smallUpdate(on model: LlamaModel) throws -> ModelAdapter {
        let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, targets: .allLinear), on: model, seed: 3)
        for (path, layer) in adapter.layers {
            let lora = layer.lora, weight = try model.weight(path + ".weight").floats()
            let rms = (weight.reduce(0) { $0 + Double($1) * Double($1) } / Double(weight.count)).squareRoot()
            // With B all ones, every row of ΔW is s·(the column sums of A).
            let a = try lora.a.floats(), rank = lora.a.shape.dims[0], columns = lora.a.shape.dims[1]
            let row = (0..<columns).map { j in (0..<rank).reduce(0.0) { $0 + Double(a[$1 * columns + j]) } * Double(lora.config.scale) }
            let largest = row.map(abs).max()!
            try lora.b.assign([Float](repeating: Float(0x1p-12 * rms / largest), count: lora.b.shape.count))
        }
        return adapter
    }

    static func loss(_ model: LlamaModel, _ adapter: ModelAdapter? = nil) throws -> Double {
        try Evaluation(model: model, adapter: adapter, data: try LlamaFixtures.data(model), batchSize: 6).loss
    }

    /// The dtypes of every tensor of a checkpoint.
    static func dtypes(_ folder: String) throws -> Set<DType> {
        Set(try HuggingFaceCheckpoint(folder: folder).files.flatMap { file in try file.file.names.map { try file.file.entry($0).dtype } })
    }

    static func mergedModel(_ folder: String) throws -> LlamaModel {
        try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: folder), on: exactCPU)
    }

    /// A bf16 checkpoint's own dtype rounds the small update away (reported, with the warning and
    /// its fix); `--dtype f32` keeps it: the merged model's loss is the adapter's, the tensors and
    /// `config.json` say f32. Every loss with exact products (`highest`): the CPU's default
    /// `medium` rounds the bf16 model's activations and not the f32 merge's, 3e-3 here, far more
    /// than the update this measures.
    @Test func bf16LosesASmallUpdateThatF32Keeps() throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path(Self.bf16Model))
        let model = try LlamaModel(checkpoint: checkpoint, on: exactCPU)
        let adapter = try Self.smallUpdate(on: model)
        let (base, adapted) = (try Self.loss(model), try Self.loss(model, adapter))
        try withTemporaryFolder { folder in
            let rounded = try checkpoint.write(merging: adapter, of: model, to: folder + "/bf16")
            let kept = try checkpoint.write(merging: adapter, of: model, to: folder + "/f32", dtype: .f32)
            let (roundedLoss, keptLoss) = (try Self.loss(try Self.mergedModel(folder + "/bf16")), try Self.loss(try Self.mergedModel(folder + "/f32")))
            print("base \(base), with the adapter \(adapted), merged in bf16 \(roundedLoss), in f32 \(keptLoss); bf16 lost \(rounded.lost): "
                + rounded.rounding.map { "\($0.tensor) \($0.lost)" }.joined(separator: ", "))

            #expect(rounded.rounding.count == adapter.layers.count && rounded.rounding.allSatisfy { $0.dtype == .bf16 && $0.updateNorm > 0 })
            #expect(rounded.heavilyRounded.count == rounded.rounding.count && rounded.lost > 0.9, "\(rounded.rounding)")
            #expect(rounded.roundingWarning?.contains("--dtype f32") == true)
            #expect(abs(roundedLoss - base) < 0.1 * abs(adapted - base), "the bf16 merge is close to the base model")

            #expect(kept.rounding.allSatisfy { $0.dtype == .f32 && $0.lost == 0 && $0.kept == 1 } && kept.roundingWarning == nil)
            #expect(abs(keptLoss - adapted) < 1e-3 * abs(adapted - base), "\(keptLoss) vs \(adapted)")
            #expect(try Self.dtypes(folder + "/f32") == [.f32])
            #expect(try JSON.read(folder + "/f32/config.json", what: "config")["dtype"]?.string == "float32")
            #expect(try JSON.read(folder + "/bf16/config.json", what: "config")["dtype"]?.string == "bfloat16")
        }
    }

    /// The fixture adapters PEFT trained: bf16 rounds part of the Qwen2 adapter's update and
    /// none of an f32 checkpoint's; neither loses enough to warn.
    @Test(arguments: [("tiny-llama", "dora", DType.f32), ("tiny-llama", "lora", .f32), (Self.bf16Model, "qwen2-lora", .bf16)])
    func trainedAdaptersKeepTheirUpdate(_ fixture: (model: String, adapter: String, dtype: DType)) throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path(fixture.model))
        let model = try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared)
        let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path(fixture.adapter), on: model)
        try withTemporaryFolder { folder in
            let report = try checkpoint.write(merging: adapter, of: model, to: folder + "/merged")
            print("\(fixture): lost \(report.lost), per tensor \(report.rounding.map(\.lost))")
            #expect(report.rounding.allSatisfy { $0.dtype == fixture.dtype } && report.roundingWarning == nil)
            #expect(fixture.dtype == .f32 ? report.lost == 0 : report.lost > 0 && report.lost < MergeRounding.warningThreshold)
        }
    }

    /// An f32 checkpoint written in bf16 or f16: every float tensor in that dtype, config.json
    /// naming it, the rest of its text as it was.
    @Test(arguments: [DType.bf16, .f16])
    func writesAnF32CheckpointInAnotherDType(_ dtype: DType) throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-llama"))
        let model = try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared)
        let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path("lora"), on: model)
        try withTemporaryFolder { folder in
            let report = try checkpoint.write(merging: adapter, of: model, to: folder + "/merged", dtype: dtype)
            #expect(report.rounding.allSatisfy { $0.dtype == dtype && $0.lost > 0 })
            #expect(try Self.dtypes(folder + "/merged") == [dtype])
            let source = String(decoding: try FileIO.read(checkpoint.folder + "/config.json"), as: UTF8.self)
            let written = String(decoding: try FileIO.read(folder + "/merged/config.json"), as: UTF8.self)
            let torchName = dtype == .bf16 ? "bfloat16" : "float16"
            #expect(written == source.replacingOccurrences(of: "\"dtype\": \"float32\"", with: "\"dtype\": \"\(torchName)\""))
            #expect(written != source)
        }
    }

    /// `lowrank merge` warns on stderr with the figure and the fix, and not with `--dtype f32`;
    /// `--dtype` names its values when given another.
    @Test func commandWarnsAndTakesDType() throws {
        let model = try LlamaModel(checkpoint: try HuggingFaceCheckpoint(folder: LlamaFixtures.path(Self.bf16Model)), on: CPUBackend.shared)
        let cli = CommandLineArgumentTests()
        try withTemporaryFolder { folder in
            try Self.smallUpdate(on: model).save(to: folder + "/adapter")
            let arguments = ["merge", "--model", LlamaFixtures.path(Self.bf16Model), "--adapter", folder + "/adapter", "--out", folder + "/merged"]
            let rounded = try cli.lowrank(arguments)
            #expect(rounded.status == 0 && rounded.output.contains("warning: rounding to bf16") && rounded.output.contains("--dtype f32"),
                    "\(rounded.output)")
            let kept = try cli.lowrank(arguments + ["--dtype", "f32"])
            #expect(kept.status == 0 && !kept.output.contains("warning"), "\(kept.output)")
            try cli.expectRefused("'f32', 'bf16' or 'f16'", arguments + ["--dtype", "q8_0"])
        }
    }
}
