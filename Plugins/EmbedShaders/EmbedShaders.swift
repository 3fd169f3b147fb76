import Foundation
import PackagePlugin

/// Turns every file under the package's `Shaders/` folder into a Swift string table of the target.
@main
struct EmbedShaders: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let shaders = context.package.directoryURL.appending(path: "Shaders")
        let names = try FileManager.default.contentsOfDirectory(atPath: shaders.path())
            .filter { $0.hasSuffix(".glsl") || $0.hasSuffix(".comp") }
            .sorted()
        let inputs = names.map { shaders.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedShaders.swift")
        return [.buildCommand(
            displayName: "Embedding \(names.count) shaders",
            executable: try context.tool(named: "ShaderEmbedder").url,
            arguments: [output.path()] + inputs.map { $0.path() },
            inputFiles: inputs,
            outputFiles: [output])]
    }
}
