import Foundation
import PackagePlugin

/// Turns every shader under the package's `Shaders/` folder, and the SPIR-V compiled ahead of time in
/// `Shaders/spirv/`, into Swift tables of the target.
@main
struct EmbedShaders: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let shaders = context.package.directoryURL.appending(path: "Shaders")
        let folders = [shaders, shaders.appending(path: "spirv")]
        let entries = try folders.flatMap { folder in
            try FileManager.default.contentsOfDirectory(atPath: folder.path()).map { folder.appending(path: $0) }
        }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedShaders.swift")
        // The embedder lists the folders when it runs, and the folders are inputs: a file added or
        // removed changes its folder and reruns it, even where SwiftPM reuses this plugin's command
        // from an earlier build (whose list of files would be stale).
        return [.buildCommand(
            displayName: "Embedding Shaders/",
            executable: try context.tool(named: "ShaderEmbedder").url,
            arguments: [output.path(), shaders.path()],
            inputFiles: folders + entries,
            outputFiles: [output])]
    }
}
