import CShaderc
import Glibc
import LowRankCore
import Synchronization

/// Compiles the embedded GLSL of `Shaders/` to SPIR-V with shaderc, keeping results in memory and
/// on disk (`$LOWRANK_CACHE_DIR`, else `$XDG_CACHE_HOME/lowrank`, else `~/.cache/lowrank`), keyed by
/// the source (with every header), the defines and the compiler's version. Each disk entry carries
/// a checksum (`CacheEnvelope`); a damaged one is recompiled and rewritten.
final class ShaderCompiler: Sendable {
    // shaderc's compiler object may be used from several threads at once (shaderc.h).
    private nonisolated(unsafe) let compiler: shaderc_compiler_t
    private let memory = Mutex<[String: [UInt32]]>([:])
    let cacheDirectory: String?
    private let compilerVersion: String

    static let shared = ShaderCompiler(cacheDirectory: makeCacheDirectory())

    /// A compiler whose disk cache is `cacheDirectory` (which must hold a `spirv` folder), or none.
    init(cacheDirectory: String?) {
        compiler = shaderc_compiler_initialize()
        var version: UInt32 = 0, revision: UInt32 = 0
        shaderc_get_spv_version(&version, &revision)
        compilerVersion = "shaderc spv \(version).\(revision), glslang \(GLSLANG_VERSION_MAJOR).\(GLSLANG_VERSION_MINOR).\(GLSLANG_VERSION_PATCH)"
        self.cacheDirectory = cacheDirectory
    }

    deinit { shaderc_compiler_release(compiler) }

    static func makeCacheDirectory() -> String? {
        let env = FileIO.environment
        let base = env("LOWRANK_CACHE_DIR") ?? env("XDG_CACHE_HOME").map { $0 + "/lowrank" }
            ?? env("HOME").map { $0 + "/.cache/lowrank" }
        guard let base, (try? FileIO.makeDirectories(base + "/spirv")) != nil else { return nil }
        return base
    }

    /// SPIR-V of `shader` (a file name in Shaders/) with `defines`.
    func spirv(_ shader: String, defines: [(String, String)]) throws -> [UInt32] {
        guard let source = embeddedShaders[shader] else {
            throw LowRankError(.shaderCompilation, "no shader named \(shader) is embedded", context: [("shader", shader)])
        }
        let definesText = defines.map { "\($0.0)=\($0.1)" }.joined(separator: ";")
        // Headers are few and small: keying on all of them keeps the key simple and never stale.
        let headers = embeddedShaders.filter { $0.key.hasSuffix(".glsl") }.sorted { $0.key < $1.key }.map { $0.key + $0.value }
        let key = Digest.of([compilerVersion, shader, source, definesText] + headers)
        let keyHex = String(key, radix: 16)
        if let cached = memory.withLock({ $0[keyHex] }) { return cached }
        let path = cacheDirectory.map { "\($0)/spirv/\(shader)-\(keyHex).spv" }
        if let path, let words = readWords(path) {
            memory.withLock { $0[keyHex] = words }
            return words
        }
        let words = try compile(shader, defines: defines)
        memory.withLock { $0[keyHex] = words }
        if let path {
            // A cache that cannot be written only costs a recompile next time.
            let entry = words.withUnsafeBytes { CacheEnvelope.wrap(.spirv, $0) }
            entry.withUnsafeBytes { try? FileIO.writeAtomically(path, $0) }
        }
        return words
    }

    /// Compiles without the caches; `warningsAsErrors` is how the no-device test holds every variant
    /// to a clean compile.
    func compile(_ shader: String, defines: [(String, String)], warningsAsErrors: Bool = false) throws -> [UInt32] {
        guard let source = embeddedShaders[shader] else {
            throw LowRankError(.shaderCompilation, "no shader named \(shader) is embedded", context: [("shader", shader)])
        }
        let options = shaderc_compile_options_initialize()
        if warningsAsErrors { shaderc_compile_options_set_warnings_as_errors(options) }
        defer { shaderc_compile_options_release(options) }
        shaderc_compile_options_set_target_env(options, shaderc_target_env_vulkan, UInt32(shaderc_env_version_vulkan_1_2.rawValue))
        shaderc_compile_options_set_optimization_level(options, shaderc_optimization_level_performance)
        shaderc_compile_options_set_include_callbacks(options, includeResolver, includeReleaser, nil)
        for (name, value) in defines {
            shaderc_compile_options_add_macro_definition(options, name, name.utf8.count, value, value.utf8.count)
        }
        let result = shaderc_compile_into_spv(compiler, source, source.utf8.count, shaderc_compute_shader, shader, "main", options)
        defer { shaderc_result_release(result) }
        guard shaderc_result_get_compilation_status(result) == shaderc_compilation_status_success else {
            let message = String(cString: shaderc_result_get_error_message(result))
            throw LowRankError(.shaderCompilation, message.trimmingTrailingNewlines(),
                               context: [("shader", shader), ("defines", defines.map { "\($0.0)=\($0.1)" }.joined(separator: " "))])
        }
        let length = shaderc_result_get_length(result)
        var words = [UInt32](repeating: 0, count: length / 4)
        words.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: shaderc_result_get_bytes(result), count: length)) }
        return words
    }

    /// The cached module at `path`, or nil when it is absent, damaged or not SPIR-V.
    private func readWords(_ path: String) -> [UInt32]? {
        guard let file = try? FileIO.read(path), let bytes = CacheEnvelope.unwrap(.spirv, file), bytes.count % 4 == 0 else { return nil }
        let words = bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
        return words.first == Self.spirvMagic ? words : nil
    }

    static let spirvMagic: UInt32 = 0x0723_0203
}

/// Serves `#include "name"` from the embedded shaders, so that errors name the header and line.
private let includeResolver: shaderc_include_resolve_fn = { _, requested, _, _, _ in
    let name = String(cString: requested!)
    let result = UnsafeMutablePointer<shaderc_include_result>.allocate(capacity: 1)
    if let source = embeddedShaders[name] {
        result.pointee.source_name = UnsafePointer(strdup(name))
        result.pointee.source_name_length = name.utf8.count
        result.pointee.content = UnsafePointer(strdup(source))
        result.pointee.content_length = source.utf8.count
    } else {
        // shaderc reports an include failure as an empty source name with the message as content.
        let message = "no embedded shader header named \(name)"
        result.pointee.source_name = UnsafePointer(strdup(""))
        result.pointee.source_name_length = 0
        result.pointee.content = UnsafePointer(strdup(message))
        result.pointee.content_length = message.utf8.count
    }
    result.pointee.user_data = nil
    return result
}

private let includeReleaser: shaderc_include_result_release_fn = { _, result in
    guard let result else { return }
    free(UnsafeMutableRawPointer(mutating: result.pointee.source_name))
    free(UnsafeMutableRawPointer(mutating: result.pointee.content))
    result.deallocate()
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var s = self
        while s.last == "\n" { s.removeLast() }
        return s
    }
}
