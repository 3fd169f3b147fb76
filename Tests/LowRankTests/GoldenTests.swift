import Foundation
import LowRank
import Testing

/// Every `*.safetensors` case in `../shared/golden`, in `Tests/Fixtures/golden` (edge cases the
/// shared set lacks: rank 1, one token, r > d_in, f16 rsDoRA, NF4 partial blocks and blocksizes 128
/// and 256, from `tools/golden_extra_spec.json`) and in each folder of `LOWRANK_GOLDEN_DIR`
/// (colon-separated), all made by PEFT, PyTorch and bitsandbytes (`../shared/tools/make_golden.py`),
/// run by `GoldenCase` (which `lowrank check --golden` runs too).
enum GoldenCases {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let defaultDirectory = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/golden").path
    static let ownDirectory = packageRoot.appendingPathComponent("Tests/Fixtures/golden").path

    static var directories: [String] {
        [defaultDirectory, ownDirectory] + (ProcessInfo.processInfo.environment["LOWRANK_GOLDEN_DIR"] ?? "").split(separator: ":").map(String.init)
    }

    static let files: [String] = directories.flatMap { directory in
        ((try? GoldenCase.cases(in: directory)) ?? []).map(\.path)
    }
}

@Suite("golden cases (PEFT, PyTorch, bitsandbytes)")
struct GoldenTests {
    @Test func everyGoldenFolderHasCases() {
        for directory in GoldenCases.directories {
            let count = GoldenCases.files.filter { $0.hasPrefix(directory + "/") }.count
            #expect(count > 0, "no *.safetensors cases in \(directory)")
        }
    }

    /// With exact products (`highest`), as the bound assumes: the references are exact results of
    /// the stored inputs. The CPU's default `medium` rounds what a bf16 weight multiplies to bf16,
    /// dora_bf16's scaled gradient before d x among them (measured: d x 1.6e-3 off, that rounding).
    @Test(arguments: GoldenCases.files, BackendKind.allCases)
    func golden(_ path: String, _ kind: BackendKind) throws {
        let golden = GoldenCase(path: path)
        try onBackend(kind, exact: true) { backend in
            let outcome = try golden.run(on: backend)
            let line = outcome.errors.map { "\($0.tensor) \(String(format: "%.2e", $0.error))" }.joined(separator: ", ")
            print("golden \(golden.name) on \(backend.identifier): \(line)\(outcome.mismatches.map { ", " + $0 }.joined()) -> \(outcome.passed ? "ok" : "FAILED")")
            for (tensor, error) in outcome.errors {
                #expect(error <= GoldenCase.bound, "golden \(golden.name) on \(backend.identifier): \(tensor) error \(error)")
            }
            #expect(outcome.mismatches.isEmpty, "golden \(golden.name) on \(backend.identifier): \(outcome.mismatches)")
        }
    }
}
