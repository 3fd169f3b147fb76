import Glibc
import LowRankCore

/// One golden case of the `shared/golden` layout: a safetensors file made by PEFT, PyTorch and
/// bitsandbytes (`shared/tools/make_golden.py`) holding a case's inputs, its references and, in the
/// metadata, its kind (`lora`, `dora`, `nf4`) and settings. `GoldenTests` and `lowrank check --golden`
/// run them through `run(on:)`.
public struct GoldenCase: Sendable {
    /// The bound on max|got − ref| / max|ref| for every checked tensor, on every path and dtype:
    /// the references are float64 results of the stored (rounded) inputs, and every path multiplies
    /// those inputs exactly (16-bit products fit f32) and accumulates in f32.
    public static let bound = 1e-5

    public let path: String
    /// The file's name without `.safetensors`.
    public var name: String {
        let file = FileIO.lastComponent(path)
        return file.hasSuffix(".safetensors") ? String(file.dropLast(".safetensors".count)) : file
    }

    public init(path: String) { self.path = path }

    /// The `*.safetensors` cases in `directory`, by name; an unreadable folder or one without cases is an error.
    public static func cases(in directory: String) throws -> [GoldenCase] {
        let names = try FileIO.contents(ofDirectory: directory).filter { $0.hasSuffix(".safetensors") }.sorted()
        guard !names.isEmpty else {
            throw LowRankError(.invalidArgument, "no golden cases (*.safetensors) in \(directory)", context: [("folder", directory)])
        }
        return names.map { GoldenCase(path: directory + "/" + $0) }
    }

    /// What one run measured: each checked tensor's error against the reference, and any result that
    /// must be exact and is not (NF4 unpacking and quantization, byte for byte).
    public struct Outcome: Sendable {
        public var kind: String
        public var errors: [(tensor: String, error: Double)] = []
        public var mismatches: [String] = []
        public var worstError: Double { errors.map(\.error).max() ?? 0 }
        public var passed: Bool { mismatches.isEmpty && errors.allSatisfy { $0.error <= GoldenCase.bound } }
    }

    public func run(on backend: any Backend) throws -> Outcome {
        let file = try SafetensorsFile(path: path)
        let kind = file.metadata["kind"] ?? "?"
        var outcome = Outcome(kind: kind)
        switch kind {
        case "lora": outcome.errors = try runLoRA(file, on: backend)
        case "dora": outcome.errors = try runDoRA(file, on: backend)
        case "nf4": try runNF4(file, on: backend, into: &outcome)
        default: throw LowRankError(.fileFormat, "golden case \(name): unknown kind '\(kind)'", context: [("file", path)])
        }
        return outcome
    }

    private func scale(_ file: SafetensorsFile) throws -> Float {
        guard let scale = Float(file.metadata["scaling"] ?? "") else {
            throw LowRankError(.fileFormat, "golden case \(name): no scaling in the metadata", context: [("file", path)])
        }
        return scale
    }

    /// Forward and backward of one PEFT LoRA case.
    private func runLoRA(_ file: SafetensorsFile, on backend: any Backend) throws -> [(String, Double)] {
        let t = { (name: String) in try file.tensor(name, on: backend) }
        let x = try t("x"), w = try t("W"), a = try t("A"), b = try t("B")
        // f32 outputs: the references are exact results of the stored (rounded) inputs.
        let options = LoRAOptions(scale: try scale(file), outputDType: .f32)
        let (y, u) = try Ops.loraForward(x: x, weight: w, bias: file.entries["bias"] != nil ? try t("bias") : nil, a: a, b: b, options: options)
        let (dx, dA, dB) = try Ops.loraBackward(gradOutput: try t("gy"), x: x, weight: w, a: a, b: b, u: u, options: options)
        return try compare([("y", y), ("dx", dx), ("dA", dA), ("dB", dB)], file)
    }

    /// Forward and backward of one PEFT DoRA case (the norm detached), with ‖W‖²_row computed once
    /// as the adapter caches it.
    private func runDoRA(_ file: SafetensorsFile, on backend: any Backend) throws -> [(String, Double)] {
        let t = { (name: String) in try file.tensor(name, on: backend) }
        let x = try t("x"), w = try t("W"), a = try t("A"), b = try t("B")
        let options = DoRAOptions(lora: LoRAOptions(scale: try scale(file), outputDType: .f32))
        let forward = try Ops.doraForward(x: x, weight: w, bias: file.entries["bias"] != nil ? try t("bias") : nil, a: a, b: b,
                                          magnitude: try t("m"), weightNormSquared: try Ops.rowSumOfSquares(w), options: options)
        let (dx, dA, dB, dm) = try Ops.doraBackward(gradOutput: try t("gy"), x: x, weight: w, a: a, b: b, forward: forward, options: options)
        guard let dm else { throw LowRankError(.invalidArgument, "golden case \(name): DoRA's backward gave no dm", context: [("file", path)]) }
        return try compare([("y", forward.y), ("dx", dx), ("dA", dA), ("dB", dB), ("dm", dm)], file)
    }

    /// One bitsandbytes NF4 case: the unpacking reproduces `Wdq` bit for bit, `x·Wdqᵀ` from the packed
    /// weight is within the bound, and, for blocks of 64 (the blocksize the engine quantizes with),
    /// quantizing `W` here reproduces bitsandbytes' bytes.
    private func runNF4(_ file: SafetensorsFile, on backend: any Backend, into outcome: inout Outcome) throws {
        let doubleQuant = file.entries["absmax_q"] != nil
        let code = try file.floats("code")
        if code != QuantizationTables.nf4 { outcome.mismatches.append("the NF4 table is not bitsandbytes'") }
        let cpu = try Engine.backend(.cpu)
        let packed = try file.tensor("q", on: cpu).bytes()
        let absmax: BitsAndBytesNF4.Absmax
        if doubleQuant {
            let map = try file.floats("absmax_code")
            if map != QuantizationTables.dynamic { outcome.mismatches.append("the dynamic map is not bitsandbytes'") }
            absmax = .doubleQuantized(codes: try file.tensor("absmax_q", on: cpu).bytes(), scales: try file.floats("absmax_scale"),
                                      map: map, offset: try file.floats("absmax_offset")[0])
        } else {
            absmax = .plain(try file.floats("absmax"))
        }
        let shape = try file.entry("W").shape
        let nestedBlocksize = doubleQuant ? Int(try file.floats("absmax_blocksize")[0]) : 256
        guard let blocksize = Int(file.metadata["blocksize"] ?? "64") else {
            throw LowRankError(.fileFormat, "golden case \(name): blocksize '\(file.metadata["blocksize"] ?? "")'", context: [("file", path)])
        }
        let weight = try BitsAndBytesNF4.tensor(named: name, shape: shape, packed: packed, absmax: absmax, quantMap: code,
                                                blocksize: blocksize, nestedBlocksize: nestedBlocksize, on: backend)

        let unpacked = try Ops.cast(weight, to: .f32).floats().map(\.bitPattern)
        let unpackDiffs = zip(unpacked, try file.floats("Wdq").map(\.bitPattern)).filter { $0 != $1 }.count
        if unpackDiffs > 0 { outcome.mismatches.append("\(unpackDiffs) dequantized values differ from bitsandbytes'") }
        let y = try Ops.matmul(try file.tensor("x", on: backend), weight, transposeB: true)
        outcome.errors.append(("y", Self.relativeError(try y.floats(), try file.floats("y").map(Double.init))))
        guard blocksize == 64 else { return }

        // Quantize W here and compare byte for byte with what bitsandbytes wrote.
        let ours = try Ops.cast(try file.tensor("W", on: backend), to: weight.dtype).bytes()
        let theirs = try weight.bytes()
        let layout = QuantizedLayout(weight.dtype, elements: shape.count)
        let codeDiffs = (0..<shape.count).filter { i in
            let shift = i % 2 == 0 ? 4 : 0
            return (ours[i / 2] >> shift) & 15 != (theirs[i / 2] >> shift) & 15
        }.count
        if codeDiffs > 0 { outcome.mismatches.append("\(codeDiffs) of \(shape.count) 4-bit codes differ") }
        // The absmax section: plain f32, or the mean, nested scales and 8-bit codes of double
        // quantization (bitsandbytes' CPU coder, which is not always the nearest code).
        let absmaxDiffs = zip(ours[layout.absmaxOffset...], theirs[layout.absmaxOffset...]).filter { $0 != $1 }.count
        if absmaxDiffs > 0 { outcome.mismatches.append("\(absmaxDiffs) bytes of the absmax section differ") }
    }

    private func compare(_ results: [(String, Tensor)], _ file: SafetensorsFile) throws -> [(String, Double)] {
        try results.map { tensorName, got in
            let entry = try file.entry(tensorName)
            guard got.shape == entry.shape else {
                throw LowRankError(.shapeMismatch, "golden case \(name): \(tensorName) is \(got.shape), the reference \(entry.shape)",
                                   context: [("file", path)])
            }
            return (tensorName, Self.relativeError(try got.floats(), try file.floats(tensorName).map(Double.init)))
        }
    }

    /// max|got − ref| / max|ref| (max|got − ref| when the reference is all zeros); infinite when any
    /// value is not finite.
    public static func relativeError(_ got: [Float], _ reference: [Double]) -> Double {
        precondition(got.count == reference.count, "\(got.count) values against \(reference.count)")
        var maxDiff = 0.0, maxRef = 0.0
        for (g, r) in zip(got, reference) {
            if !g.isFinite { return .infinity }
            maxDiff = max(maxDiff, abs(Double(g) - r))
            maxRef = max(maxRef, abs(r))
        }
        return maxRef == 0 ? maxDiff : maxDiff / maxRef
    }
}
