import LowRankCore

/// One kernel variant the host can select: a shader of `Shaders/` and one set of its defines. The
/// list is `Kernel.variants` of every `Shader`, the set `ShaderTests` compiles without a device and
/// `tools/isa-report.sh` measures as GPU machine code (`lowrank-bench --dump-spirv`).
public struct ShaderVariant: Sendable {
    /// The shader's file name in `Shaders/`.
    public let shader: String
    /// Every define, sorted by name.
    public let defines: [(String, String)]

    init<K: Kernel>(_ kernel: K) {
        shader = K.shader.rawValue
        defines = kernel.defines.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Every variant of every shader, shader by shader in `Shader`'s order.
    public static var all: [ShaderVariant] { Shader.allCases.flatMap(\.variants) }

    /// The defines that choose this variant, `NAME=VALUE` separated by spaces: a `ShaderChoice`'s
    /// case numbering (`OP_ADD=0`, the same in every variant) is left out, the choice (`OP=OP_ADD`) kept.
    public var choices: String {
        let names = Set(defines.map(\.0))
        let choiceMacros = defines.filter { names.contains($0.1) }.map { $0.0 + "_" }
        func isCaseNumber(_ define: (String, String)) -> Bool {
            Int(define.1) != nil && choiceMacros.contains { define.0.hasPrefix($0) }
        }
        return defines.filter { !isCaseNumber($0) }.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
    }

    /// Its SPIR-V, compiled as the device path compiles it; `warningsAsErrors` as the no-device test does.
    public func spirv(warningsAsErrors: Bool = false) throws -> [UInt32] {
        try ShaderCompiler.shared.compile(shader, defines: defines, warningsAsErrors: warningsAsErrors)
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
