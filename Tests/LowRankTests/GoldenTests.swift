import Foundation
import LowRank
import Testing

/// Every `*.safetensors` case in `../shared/golden`, in `Tests/Fixtures/golden` (edge cases the
/// shared set lacks: rank 1, one token, r > d_in, f16 rsDoRA, NF4 partial blocks and blocksizes 128
/// and 256, from `tools/golden_extra_spec.json`) and in each folder of `LOWRANK_GOLDEN_DIR`
/// (colon-separated), all made by PEFT, PyTorch and bitsandbytes (`../shared/tools/make_golden.py`).
enum GoldenCases {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let defaultDirectory = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/golden").path
    static let ownDirectory = packageRoot.appendingPathComponent("Tests/Fixtures/golden").path

    static var directories: [String] {
        [defaultDirectory, ownDirectory] + (ProcessInfo.processInfo.environment["LOWRANK_GOLDEN_DIR"] ?? "").split(separator: ":").map(String.init)
    }

    static let files: [String] = directories.flatMap { directory in
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".safetensors") }.sorted().map { "\(directory)/\($0)" }
    }

    /// The harness bound on max|got − ref| / max|ref| for every checked tensor.
    static let bound = 1e-5
}

@Suite("golden cases (PEFT, PyTorch, bitsandbytes)")
struct GoldenTests {
    @Test func everyGoldenFolderHasCases() {
        for directory in GoldenCases.directories {
            let count = GoldenCases.files.filter { $0.hasPrefix(directory + "/") }.count
            #expect(count > 0, "no *.safetensors cases in \(directory)")
        }
    }

    @Test(arguments: GoldenCases.files, BackendKind.allCases)
    func golden(_ path: String, _ kind: BackendKind) throws {
        let file = try SafetensorsFile(path: path)
        let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        let caseKind = file.metadata["kind"] ?? "?"
        try onBackend(kind) { backend in
            switch caseKind {
            case "lora", "dora":
                let errors = caseKind == "lora" ? try runLoRA(file, on: backend) : try runDoRA(file, on: backend)
                let line = errors.map { "\($0.0) \(String(format: "%.2e", $0.1))" }.joined(separator: ", ")
                let worst = errors.map(\.1).max() ?? .infinity
                print("golden \(name) on \(backend.identifier): \(line) -> \(worst <= GoldenCases.bound ? "ok" : "FAILED")")
                for (tensor, error) in errors {
                    #expect(error <= GoldenCases.bound, "golden \(name) on \(backend.identifier): \(tensor) error \(error)")
                }
            case "nf4":
                try runNF4(file, name: name, on: backend)
            default:
                Issue.record("golden \(name): unknown case kind '\(caseKind)'")
            }
        }
    }

    /// Forward and backward of one PEFT LoRA case; returns each tensor's error.
    private func runLoRA(_ file: SafetensorsFile, on backend: any Backend) throws -> [(String, Double)] {
        let scale = try #require(Float(file.metadata["scaling"] ?? ""), "no scaling in the metadata")
        let hasBias = file.entries["bias"] != nil
        let t = { (name: String) in try file.tensor(name, on: backend) }
        let x = try t("x"), w = try t("W"), a = try t("A"), b = try t("B")
        // f32 outputs: the references are exact results of the stored (rounded) inputs.
        let options = LoRAOptions(scale: scale, outputDType: .f32)
        let (y, u) = try Ops.loraForward(x: x, weight: w, bias: hasBias ? try t("bias") : nil, a: a, b: b, options: options)
        let (dx, dA, dB) = try Ops.loraBackward(gradOutput: try t("gy"), x: x, weight: w, a: a, b: b, u: u, options: options)
        return try compare([("y", y), ("dx", dx), ("dA", dA), ("dB", dB)], file)
    }

    /// Forward and backward of one PEFT DoRA case (the norm detached), with ‖W‖²_row computed
    /// once as the adapter caches it.
    private func runDoRA(_ file: SafetensorsFile, on backend: any Backend) throws -> [(String, Double)] {
        let scale = try #require(Float(file.metadata["scaling"] ?? ""), "no scaling in the metadata")
        let hasBias = file.entries["bias"] != nil
        let t = { (name: String) in try file.tensor(name, on: backend) }
        let x = try t("x"), w = try t("W"), a = try t("A"), b = try t("B")
        let options = DoRAOptions(lora: LoRAOptions(scale: scale, outputDType: .f32))
        let forward = try Ops.doraForward(x: x, weight: w, bias: hasBias ? try t("bias") : nil, a: a, b: b, magnitude: try t("m"),
                                          weightNormSquared: try Ops.rowSumOfSquares(w), options: options)
        let (dx, dA, dB, dm) = try Ops.doraBackward(gradOutput: try t("gy"), x: x, weight: w, a: a, b: b, forward: forward, options: options)
        return try compare([("y", forward.y), ("dx", dx), ("dA", dA), ("dB", dB), ("dm", try #require(dm))], file)
    }

    /// One bitsandbytes NF4 case: our unpacking reproduces `Wdq` bit for bit, `x·Wdqᵀ` from the packed
    /// weight is within the bound, and, for blocks of 64 (the blocksize the engine quantizes with),
    /// quantizing `W` ourselves reproduces bitsandbytes' bytes.
    private func runNF4(_ file: SafetensorsFile, name: String, on backend: any Backend) throws {
        let doubleQuant = file.entries["absmax_q"] != nil
        let code = try file.floats("code")
        #expect(code == QuantizationTables.nf4, "golden \(name): bitsandbytes' NF4 table")
        let cpu = try Engine.backend(.cpu)
        let packed = try file.tensor("q", on: cpu).bytes()
        let absmax: BitsAndBytesNF4.Absmax
        if doubleQuant {
            let map = try file.floats("absmax_code")
            #expect(map == QuantizationTables.dynamic, "golden \(name): bitsandbytes' dynamic map")
            absmax = .doubleQuantized(codes: try file.tensor("absmax_q", on: cpu).bytes(), scales: try file.floats("absmax_scale"),
                                      map: map, offset: try file.floats("absmax_offset")[0])
        } else {
            absmax = .plain(try file.floats("absmax"))
        }
        let shape = try file.entry("W").shape
        let nestedBlocksize = doubleQuant ? Int(try file.floats("absmax_blocksize")[0]) : 256
        let blocksize = try #require(Int(file.metadata["blocksize"] ?? "64"), "golden \(name): blocksize \(file.metadata["blocksize"] ?? "")")
        let weight = try BitsAndBytesNF4.tensor(named: name, shape: shape, packed: packed, absmax: absmax, quantMap: code,
                                                blocksize: blocksize, nestedBlocksize: nestedBlocksize, on: backend)

        let unpacked = try Ops.cast(weight, to: .f32).floats().map(\.bitPattern)
        let reference = try file.floats("Wdq").map(\.bitPattern)
        let unpackDiffs = zip(unpacked, reference).filter { $0 != $1 }.count
        #expect(unpackDiffs == 0, "golden \(name) on \(backend.identifier): \(unpackDiffs) dequantized values differ from bitsandbytes'")

        let y = try Ops.matmul(try file.tensor("x", on: backend), weight, transposeB: true)
        let yError = relativeError(try y.floats(), try file.floats("y").map(Double.init))
        #expect(yError <= GoldenCases.bound, "golden \(name) on \(backend.identifier): y error \(yError)")
        let summary = "golden \(name) on \(backend.identifier): blocksize \(blocksize), unpacked values differing \(unpackDiffs), y \(String(format: "%.2e", yError))"
        guard blocksize == 64 else { return print(summary) }

        // Quantize W ourselves and compare byte for byte with what bitsandbytes wrote.
        let ours = try Ops.cast(try file.tensor("W", on: backend), to: weight.dtype).bytes()
        let theirs = try weight.bytes()
        let layout = QuantizedLayout(weight.dtype, elements: shape.count)
        let codeDiffs = (0..<shape.count).filter { i in
            let shift = i % 2 == 0 ? 4 : 0
            return (ours[i / 2] >> shift) & 15 != (theirs[i / 2] >> shift) & 15
        }.count
        #expect(codeDiffs == 0, "golden \(name) on \(backend.identifier): \(codeDiffs) of \(shape.count) 4-bit codes differ")
        // The absmax section: plain f32, or the mean, nested scales and 8-bit codes of double
        // quantization (bitsandbytes' CPU coder, which is not always the nearest code).
        let absmaxDiffs = zip(ours[layout.absmaxOffset...], theirs[layout.absmaxOffset...]).filter { $0 != $1 }.count
        #expect(absmaxDiffs == 0, "golden \(name) on \(backend.identifier): \(absmaxDiffs) bytes of the absmax section differ")
        print(summary + ", 4-bit codes differing \(codeDiffs) of \(shape.count), absmax bytes differing \(absmaxDiffs)")
    }

    private func compare(_ results: [(String, Tensor)], _ file: SafetensorsFile) throws -> [(String, Double)] {
        try results.map { tensorName, got in
            let reference = try file.floats(tensorName).map(Double.init)
            #expect(got.shape == (try file.entry(tensorName)).shape, "\(tensorName) shape")
            return (tensorName, relativeError(try got.floats(), reference))
        }
    }
}
