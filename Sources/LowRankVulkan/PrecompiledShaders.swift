import LowRankCore

/// SPIR-V compiled ahead of time (`tools/compile-coopmat-shaders.sh`, from `Shaders/spirv/variants.txt`)
/// for shaders beyond the linked shaderc's glslang, embedded at build time like the GLSL.
enum PrecompiledShaders {
    /// The module's name in `Shaders/spirv/`: the shader's file name and its defines, sorted, each after a `+`.
    static func name(_ shader: Shader, defines: [String: String]) -> String {
        ([shader.rawValue] + defines.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: "+")
    }

    /// The words of that module.
    static func spirv(_ shader: Shader, defines: [String: String]) throws -> [UInt32] {
        let name = name(shader, defines: defines)
        guard let hex = embeddedSPIRV[name] else {
            throw LowRankError(.shaderCompilation, "no SPIR-V compiled ahead of time for \(name): add it to Shaders/spirv/variants.txt and run tools/compile-coopmat-shaders.sh",
                               context: [("shader", shader.rawValue)])
        }
        var bytes = [UInt8](), high: UInt8?
        bytes.reserveCapacity(hex.utf8.count / 2)
        for c in hex.utf8 {
            let nibble = c <= 57 ? c - 48 : c - 87  // '0'…'9', 'a'…'f' (ShaderEmbedder writes lowercase)
            if let h = high { bytes.append(h << 4 | nibble); high = nil } else { high = nibble }
        }
        let words = bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
        guard bytes.count % 4 == 0, words.first == ShaderCompiler.spirvMagic else {
            throw LowRankError(.shaderCompilation, "the embedded \(name).spv is not SPIR-V", context: [("shader", shader.rawValue)])
        }
        return words
    }
}

extension Shader {
    /// This shader's SPIR-V for `defines`: compiled ahead of time for the cooperative-matrix shaders
    /// (bookworm's glslang cannot compile them), else by `compiler` and its caches.
    func spirv(defines: [String: String], compiler: ShaderCompiler) throws -> [UInt32] {
        if usesCooperativeMatrices { return try PrecompiledShaders.spirv(self, defines: defines) }
        return try compiler.spirv(rawValue, defines: defines.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }
}
