// swift-tools-version: 6.0
// libFuzzer targets for every parser of untrusted input, kept out of the main package so that its
// builds never see the sanitizer flags. Built and run by tools/fuzz.sh (see the README): every
// module compiled with AddressSanitizer and libFuzzer's coverage, and only these executables linked
// with libFuzzer (-sanitize=fuzzer everywhere would link it into the build's own tools too).
import Foundation
import PackageDescription

// SwiftPM names a path dependency by its folder, which differs between checkouts.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let engine = root.lastPathComponent

func fuzzTarget(_ name: String) -> Target {
    .executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzSupport", .product(name: "LowRank", package: engine),
                                                          .product(name: "LowRankModels", package: engine)],
                      path: "Sources/fuzz-\(name)", linkerSettings: [.unsafeFlags(["-sanitize=fuzzer"])])
}

let package = Package(
    name: "LowRankFuzz",
    dependencies: [.package(path: root.path)],
    targets: [
        .target(name: "FuzzSupport", path: "Sources/FuzzSupport"),
        fuzzTarget("safetensors"),
        fuzzTarget("json"),
        fuzzTarget("llama-config"),
        fuzzTarget("adapter-config"),
        fuzzTarget("npy"),
        fuzzTarget("jsonl"),
        fuzzTarget("gguf"),
    ],
    swiftLanguageModes: [.v6]
)
