// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "LowRank",
    products: [
        .library(name: "LowRank", targets: ["LowRank"]),
        .library(name: "LowRankModels", targets: ["LowRankModels"]),
        // The C ABI (header: Sources/CLowRank/lowrank.h), for Python and any language that calls C.
        .library(name: "LowRankC", type: .dynamic, targets: ["LowRankC"]),
        .executable(name: "lowrank", targets: ["lowrank"]),
        .executable(name: "lowrank-bench", targets: ["lowrank-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.6.0"),
        // `swift package generate-documentation` (DocC catalogs in Sources/<module>/<module>.docc); nothing links it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // C shims, one per C library.
        .target(name: "CVulkan", path: "Sources/CVulkan", linkerSettings: [.linkedLibrary("dl")]),
        // Open MPI, dlopened as Vulkan is: only a run launched by mpirun needs it.
        .target(name: "CMPI", path: "Sources/CMPI", linkerSettings: [.linkedLibrary("dl")]),
        .systemLibrary(name: "CShaderc", path: "Sources/CShaderc"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        // Products of f32 activations with bfloat16 weights on AVX-512 BF16 (Debian's OpenBLAS has no sbgemm).
        .target(name: "CBFloat16GEMM", path: "Sources/CBFloat16GEMM"),
        // The C ABI's hand-written header, so the Swift side uses its very structs and constants.
        .systemLibrary(name: "CLowRank", path: "Sources/CLowRank"),

        // Embeds Shaders/*.glsl into the Vulkan backend at build time, so no source tree is needed at run time.
        .executableTarget(name: "ShaderEmbedder", path: "Sources/ShaderEmbedder"),
        .plugin(name: "EmbedShaders", capability: .buildTool(), dependencies: ["ShaderEmbedder"],
                path: "Plugins/EmbedShaders"),

        // Core: tensors, dtypes, shapes, op definitions, adapters, formats, errors.
        .target(name: "LowRankCore", path: "Sources/LowRankCore"),
        // Backends.
        .target(name: "LowRankCPU", dependencies: ["LowRankCore", "COpenBLAS", "CBFloat16GEMM"], path: "Sources/LowRankCPU"),
        .target(name: "LowRankVulkan", dependencies: ["LowRankCore", "CVulkan", "CShaderc"],
                path: "Sources/LowRankVulkan", plugins: ["EmbedShaders"]),
        // The library users embed: device choice and the public API over both backends.
        .target(name: "LowRank", dependencies: ["LowRankCore", "LowRankCPU", "LowRankVulkan"],
                path: "Sources/LowRank"),
        // Models: Llama-family decoders from Hugging Face checkpoints, PEFT adapters, training and evaluation.
        .target(name: "LowRankModels", dependencies: ["LowRank", "LowRankText", "CMPI"], path: "Sources/LowRankModels"),
        // Text: Hugging Face tokenizers and chat templates, exact, in Swift.
        .target(name: "LowRankText", dependencies: ["LowRankCore"], path: "Sources/LowRankText"),
        // The C ABI over the models layer: handles, status codes and a last-error string; nothing traps.
        .target(name: "LowRankC", dependencies: ["CLowRank", "LowRankModels"], path: "Sources/LowRankC"),
        // Tools.
        .executableTarget(name: "lowrank", dependencies: [
            "LowRank", "LowRankModels", "LowRankText", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/lowrank"),
        // Benchmark records, the roofline, baseline comparison and plots; the CLI runs the suites.
        .target(name: "LowRankBench", dependencies: ["LowRank"], path: "Sources/LowRankBench"),
        .executableTarget(name: "lowrank-bench", dependencies: [
            "LowRank", "LowRankBench", "LowRankModels", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/lowrank-bench"),

        .testTarget(name: "LowRankTests", dependencies: ["LowRank", "LowRankVulkan", "LowRankBench", "LowRankModels", "LowRankText"], path: "Tests/LowRankTests"),
        .testTarget(name: "LowRankTextTests", dependencies: ["LowRankText"], path: "Tests/LowRankTextTests"),
    ],
    swiftLanguageModes: [.v6]
)
