import Foundation
import PackagePlugin

/// Turns every shader under the package's `Shaders/` folder, and the SPIR-V compiled ahead of time in
/// `Shaders/spirv/`, into Swift tables of the target.
@main
struct EmbedShaders: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let shaders = context.package.directoryURL.appending(path: "Shaders")
        let names = try FileManager.default.contentsOfDirectory(atPath: shaders.path())
            .filter { $0.hasSuffix(".glsl") || $0.hasSuffix(".comp") }
            .sorted()
        let spirv = shaders.appending(path: "spirv")
        let modules = try FileManager.default.contentsOfDirectory(atPath: spirv.path()).filter { $0.hasSuffix(".spv") }.sorted()
        let inputs = names.map { shaders.appending(path: $0) } + modules.map { spirv.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedShaders.swift")
        return [.buildCommand(
            displayName: "Embedding \(names.count) shaders and \(modules.count) SPIR-V modules",
            executable: try context.tool(named: "ShaderEmbedder").url,
            arguments: [output.path()] + inputs.map { $0.path() },
            inputFiles: inputs,
            outputFiles: [output])]
    }
}
