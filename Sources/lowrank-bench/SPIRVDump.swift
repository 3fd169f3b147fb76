import Foundation
import LowRank

/// `lowrank-bench --dump-spirv DIR` (hidden): every kernel variant the host can select, compiled to
/// `DIR/NNN-<shader>.spv`, and `DIR/variants.jsonl` with one object per variant (`file`, `kernel`,
/// `variant`: its choosing defines, `path`: `coopmat` or `scalar`, and `spec`, `ID=VALUE,…`, where it
/// is measured with specialization constants). `tools/isa-report.sh` compiles
/// these for real AMD GPUs to measure registers, occupancy and the main loop's instructions.
enum SPIRVDump {
    struct Entry: Encodable {
        var file: String
        var kernel: String
        var variant: String
        var path: String
        var spec: String?
    }

    static func write(to directory: String) throws {
        try FileIO.makeDirectories(directory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var lines = ""
        for (i, variant) in ShaderVariant.all.enumerated() {
            let words = try variant.spirv()
            let kernel = String(variant.shader.prefix { $0 != "." })
            let file = String(format: "%03d-", i) + kernel + ".spv"
            try words.withUnsafeBytes { try FileIO.writeAtomically(directory + "/" + file, $0) }
            let entry = Entry(file: file, kernel: kernel, variant: variant.choices,
                              path: ShaderVariant.usesCooperativeMatrix(words) ? "coopmat" : "scalar",
                              spec: variant.specialization.isEmpty ? nil
                                  : variant.specialization.enumerated().map { "\($0.offset)=\($0.element)" }.joined(separator: ","))
            lines += String(decoding: try encoder.encode(entry), as: UTF8.self) + "\n"
        }
        try FileIO.writeAtomically(directory + "/variants.jsonl", text: lines)
    }
}
