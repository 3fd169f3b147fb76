import Foundation
import LowRank
@testable import LowRankVulkan

/// A fixture in `Tests/Fixtures`, made by a script in `tools/` with the reference libraries.
func fixturePath(_ name: String) -> String {
    GoldenCases.packageRoot.appendingPathComponent("Tests/Fixtures").appendingPathComponent(name).path
}

/// A file path in the temporary folder, unique to this process; the caller removes the file.
func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("lowrank-\(getpid())-\(name)").path
}

/// A fresh, empty temporary folder; the caller removes it.
func makeTemporaryFolder() throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lowrank-test-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    return folder
}

/// A fresh temporary folder, removed when `body` returns.
func withTemporaryFolder<T>(_ body: (String) throws -> T) throws -> T {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    return try body(folder)
}

/// The bytes of a valid safetensors file, as `SafetensorsFile.write` makes it, holding one f32
/// tensor `w = [1, 2, 3, 4]`: what the tests of damaged files damage.
func oneTensorSafetensors() throws -> [UInt8] {
    let path = temporaryPath("one-tensor-\(UUID().uuidString).safetensors")
    defer { unlink(path) }
    try SafetensorsFile.write([(name: "w", tensor: try Tensor([1, 2, 3, 4], shape: [4], on: try Engine.backend(.cpu)))], to: path)
    return try FileIO.read(path)
}

extension VulkanBackend {
    /// Another backend on this one's device and instance, so under the same validation, with the
    /// options only tests set: a lower binding limit, declined ops, a shader cache of its own, or
    /// transfers through staging memory.
    func sibling(bindingLimit: Int? = nil, disabledOps: Set<Op.Kind> = [], shaders: ShaderCompiler = .shared,
                 stagedTransfers: Bool = false) throws -> VulkanBackend {
        try VulkanBackend(instance: instance, index: info.index, bindingLimit: bindingLimit, disabledOps: disabledOps, shaders: shaders,
                          stagedTransfers: stagedTransfers)
    }
}
