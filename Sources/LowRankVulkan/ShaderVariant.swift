import LowRankCore

/// One kernel variant the host can select: a shader of `Shaders/` and one set of its defines. The
/// list is `Kernel.variants` of every `Shader`, the set `ShaderTests` compiles without a device and
/// `tools/isa-report.sh` measures as GPU machine code (`lowrank-bench --dump-spirv`).
public struct ShaderVariant: Sendable {
    let source: Shader
    /// The shader's file name in `Shaders/`.
    public var shader: String { source.rawValue }
    /// Every define, sorted by name.
    public let defines: [(String, String)]
    /// The specialization constants it is measured with (`Kernel.measuredSpecialization`).
    public let specialization: [UInt32]

    init<K: Kernel>(_ kernel: K) {
        source = K.shader
        defines = kernel.defines.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        specialization = kernel.measuredSpecialization
    }

    /// Every variant of every shader, shader by shader in `Shader`'s order.
    public static var all: [ShaderVariant] { Shader.allCases.flatMap(\.variants) }

    /// The defines that choose this variant, `NAME=VALUE` separated by spaces: a `ShaderChoice`'s case
    /// numbering (`QUANT_NF4=1`, the same in every variant) is left out, the choice (`B_QUANT=QUANT_NF4`) kept.
    public var choices: String {
        let numbered = defines.filter { Int($0.1) != nil }.map(\.0)
        var cases = Set<String>()
        for (_, chosen) in defines where numbered.contains(chosen) {
            // The cases are the numbered defines sharing the chosen case's longest "_"-ended prefix that more
            // than one of them has (`QUANT_` for QUANT_NF4_DOUBLE_QUANT, whose `QUANT_NF4_` only it has).
            let ends = chosen.indices.filter { chosen[$0] == "_" }.reversed()
            for end in ends {
                let prefix = chosen[...end]
                let sharing = numbered.filter { $0.hasPrefix(prefix) }
                if sharing.count > 1 { cases.formUnion(sharing); break }
            }
        }
        return defines.filter { !cases.contains($0.0) }.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
    }

    /// Its SPIR-V, from where the device path takes it: compiled ahead of time for the
    /// cooperative-matrix shaders (`PrecompiledShaders`), else the shared compiler and its caches.
    public func spirv() throws -> [UInt32] {
        try source.spirv(defines: Dictionary(uniqueKeysWithValues: defines), compiler: .shared)
    }

    /// Whether `spirv` declares the `CooperativeMatrixKHR` capability: a variant on the
    /// cooperative-matrix (tensor-core) path rather than the scalar one.
    public static func usesCooperativeMatrix(_ spirv: [UInt32]) -> Bool {
        // Instructions follow the 5-word header; OpCapability (opcode 17, 2 words) comes first.
        var i = 5
        while i < spirv.count {
            let length = Int(spirv[i] >> 16), opcode = spirv[i] & 0xFFFF
            guard length > 0 else { return false }
            if opcode == 17, i + 1 < spirv.count, spirv[i + 1] == cooperativeMatrixKHR { return true }
            if opcode != 17 && opcode != 10 && opcode != 11 { return false }  // past OpCapability, OpExtension, OpExtInstImport
            i += length
        }
        return false
    }

    private static let cooperativeMatrixKHR: UInt32 = 6022
}

extension Shader {
    /// This shader's variants (its kernel type's `variants`).
    var variants: [ShaderVariant] {
        func of<K: Kernel>(_: K.Type) -> [ShaderVariant] { K.variants.map(ShaderVariant.init) }
        return of(kernel)
    }
}
