import Foundation
import LowRank
@testable import LowRankVulkan
import Testing

/// The GLSL and its Swift side agree, checked without a Vulkan device: every shader has a kernel
/// type, every push-constant block its Swift mirror, and every variant the host can ask for compiles.
@Suite struct ShaderTests {
    @Test func everyShaderHasAKernel() {
        let files = Set(embeddedShaders.keys.filter { $0.hasSuffix(".comp") })
        #expect(files == Set(Shader.allCases.map(\.rawValue)), "Shaders/*.comp and Shader's cases differ")
        for shader in Shader.allCases { #expect(shader.kernel.shader == shader, "\(shader.kernel) compiles \(shader.kernel.shader), not \(shader)") }
    }

    /// One field of a push-constant block: its name (compared without case or underscores, so
    /// `first_row` is `firstRow`), GLSL type and byte offset.
    struct Field: Equatable, CustomStringConvertible {
        var name: String
        var type: String
        var offset: Int
        var description: String { "\(type) \(name) @\(offset)" }
    }

    /// The fields of `source`'s `layout(push_constant)` block with their std430 offsets.
    static func glslPushFields(_ source: String) throws -> [Field] {
        let regex = try NSRegularExpression(pattern: #"layout\(push_constant\)\s*uniform\s+\w+\s*\{([^}]*)\}"#)
        let ns = source as NSString
        guard let match = regex.firstMatch(in: source, range: NSRange(location: 0, length: ns.length)) else { return [] }
        let body = ns.substring(with: match.range(at: 1))
        let sizes = ["uint": 4, "int": 4, "float": 4, "uvec4": 16, "ivec4": 16, "vec4": 16, "uvec2": 8, "vec2": 8]
        var fields: [Field] = [], offset = 0
        for declaration in body.split(separator: ";") {
            let words = declaration.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," })
            guard let type = words.first.map(String.init) else { continue }
            let size = try #require(sizes[type], "a push-constant type this test does not lay out: \(type)")
            for name in words.dropFirst() {
                offset = (offset + size - 1) / size * size  // std430: scalars and vectors align to their size (vec3 aside)
                fields.append(Field(name: normalized(String(name)), type: type, offset: offset))
                offset += size
            }
        }
        return fields
    }

    /// The fields of a Swift push struct, their offsets measured: the struct is read from bytes
    /// whose 4-byte word i holds i, so each field's value is its own word index.
    static func swiftPushFields<Push: BitwiseCopyable>(_: Push.Type) throws -> [Field] {
        let words = (MemoryLayout<Push>.size + 3) / 4
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: words * 4, alignment: MemoryLayout<Push>.alignment)
        defer { buffer.deallocate() }
        for i in 0..<words { buffer.storeBytes(of: UInt32(i), toByteOffset: i * 4, as: UInt32.self) }
        let value = buffer.load(as: Push.self)
        return try Mirror(reflecting: value).children.map { child in
            let name = normalized(try #require(child.label))
            switch child.value {
            case let v as UInt32: return Field(name: name, type: "uint", offset: Int(v) * 4)
            case let v as Int32: return Field(name: name, type: "int", offset: Int(v) * 4)
            case let v as Float: return Field(name: name, type: "float", offset: Int(v.bitPattern) * 4)
            case let v as SIMD4<UInt32>: return Field(name: name, type: "uvec4", offset: Int(v[0]) * 4)
            default: throw LowRankError(.unsupported, "push field \(name) has a type without a GLSL twin here: \(type(of: child.value))")
            }
        }
    }

    private static func normalized(_ name: String) -> String { name.lowercased().replacingOccurrences(of: "_", with: "") }

    @Test(arguments: Shader.allCases)
    func pushConstantsMirrorTheGLSL(_ shader: Shader) throws {
        func check<K: Kernel>(_: K.Type) throws {
            let glsl = try Self.glslPushFields(try #require(embeddedShaders[shader.rawValue]))
            let swift = try Self.swiftPushFields(K.Push.self)
            #expect(swift == glsl, "\(shader.rawValue): Swift \(K.Push.self) is \(swift), the GLSL block \(glsl)")
            #expect(MemoryLayout<K.Push>.size <= PipelineStore.pushConstantBytes, "\(shader.rawValue): push constants exceed 128 bytes (lavapipe's limit)")
        }
        try check(shader.kernel)
    }

    /// Every variant of every kernel compiles with shaderc (the options the device path uses), any
    /// warning an error: a GLSL mistake in a rarely used variant fails here, not on a device.
    /// Every variant of every kernel compiles with shaderc (the options the device path uses), any
    /// warning an error: a GLSL mistake in a rarely used variant fails here, not on a device. A shader
    /// compiled ahead of time instead has an embedded module per variant, and its variants are the
    /// lines of `Shaders/spirv/variants.txt` (CI checks that the modules match their sources).
    @Test(arguments: Shader.allCases)
    func everyVariantCompiles(_ shader: Shader) throws {
        let compiler = ShaderCompiler(cacheDirectory: nil)
        let variants = shader.variants
        #expect(!variants.isEmpty)
        #expect(Set(variants.map { $0.defines.map { "\($0.0)=\($0.1)" } }).count == variants.count, "\(shader.rawValue): variants with the same defines")
        #expect(Set(variants.map(\.choices)).count == variants.count, "\(shader.rawValue): variants with the same choosing defines (tools/isa-report.sh's key)")
        if shader.usesCooperativeMatrices {
            let listed = try String(contentsOf: GoldenCases.packageRoot.appendingPathComponent("Shaders/spirv/variants.txt"), encoding: .utf8)
                .split(separator: "\n").filter { $0.hasPrefix(shader.rawValue + " ") }
                .map { line in PrecompiledShaders.name(shader, defines: Dictionary(uniqueKeysWithValues: line.split(separator: " ").dropFirst().map {
                    let pair = $0.split(separator: "=", maxSplits: 1)
                    return (String(pair[0]), String(pair[1]))
                })) }
            #expect(Set(listed) == Set(variants.map { PrecompiledShaders.name(shader, defines: Dictionary(uniqueKeysWithValues: $0.defines)) }),
                    "\(shader.rawValue): Shaders/spirv/variants.txt lists \(listed)")
        }
        for variant in variants {
            #expect(throws: Never.self, "\(shader.rawValue) \(variant.choices)") {
                let words = shader.usesCooperativeMatrices ? try variant.spirv()
                    : try compiler.compile(variant.shader, defines: variant.defines, warningsAsErrors: true)
                #expect(words.first == ShaderCompiler.spirvMagic)
            }
        }
    }

    /// What `lowrank-bench --dump-spirv` lists for tools/isa-report.sh: every kernel's variants, each named by
    /// the defines that choose it, and on the cooperative-matrix path exactly when its SPIR-V declares the capability.
    @Test func variantListForTheMachineCodeReport() throws {
        #expect(ShaderVariant.all.count == Shader.allCases.reduce(0) { $0 + $1.variants.count })
        let scaleRows = ShaderVariant(ElementwiseKernel.variants.first { $0.defines["OP"] == "OP_SCALE_ROWS" }!)
        #expect(scaleRows.choices.contains("OP=OP_SCALE_ROWS") && !scaleRows.choices.contains("OP_ADD"))
        let nf4 = try #require(ShaderVariant.all.first { $0.defines.contains { $0 == ("B_QUANT", "QUANT_NF4_DOUBLE_QUANT") } })
        #expect(nf4.choices.contains("B_QUANT=QUANT_NF4_DOUBLE_QUANT") && !nf4.choices.contains("QUANT_NONE") && !nf4.choices.contains("QUANT_Q8_0"))
        let matmul = try #require(ShaderVariant.all.first { $0.shader == Shader.matmul.rawValue }).spirv()
        #expect(!ShaderVariant.usesCooperativeMatrix(matmul))
        // The same module with OpCapability CooperativeMatrixKHR (6022) added after its header.
        let withCapability = Array(matmul[0..<5]) + [2 << 16 | 17, 6022] + matmul[5...]
        #expect(ShaderVariant.usesCooperativeMatrix(withCapability))
    }

    /// `shader`'s specialization constants by `constant_id` (`local_size_x` for `local_size_x_id`), which
    /// must number 0, 1, 2, ….
    static func specializationConstantNames(_ shader: Shader) throws -> [String] {
        let source = try #require(embeddedShaders[shader.rawValue])
        let regex = try NSRegularExpression(pattern: #"layout\((?:local_size_x_id|constant_id)\s*=\s*(\d+)\)\s*(?:in|const\s+\w+\s+(\w+))"#)
        let ns = source as NSString
        var names: [Int: String] = [:]
        for match in regex.matches(in: source, range: NSRange(location: 0, length: ns.length)) {
            let id = Int(ns.substring(with: match.range(at: 1)))!
            names[id] = match.range(at: 2).location == NSNotFound ? "local_size_x" : ns.substring(with: match.range(at: 2))
        }
        #expect(names.keys.sorted() == Array(0..<names.count), "\(shader.rawValue): constant ids with gaps")
        return names.keys.sorted().map { names[$0]! }
    }

    /// The coopmat kernels' specialization constants are their `Constants`, id for id.
    @Test func specializationConstantsMirrorTheGLSL() throws {
        #expect(try Self.specializationConstantNames(.attentionCoopmat) == AttentionCoopmatKernel.Constants.names)
        let shape = VulkanDeviceInfo.CooperativeMatrixShape(m: 8, n: 8, k: 8, a: "f16", b: "f16", c: "f32", result: "f32", saturating: false, scope: "subgroup")
        let attention = AttentionCoopmatKernel.Constants(tile: .init(shape: shape, block: 32, headDimMax: 128, subgroupSize: 16),
                                                         q: .f16, k: .bf16, v: .f32, gradient: .f16, out: .bf16, c: .f32, direct: true)
        #expect(attention.values == [64, 32, 8, 8, 8, 1, 2, 0, 1, 2, 0, 1])
        #expect(try Self.specializationConstantNames(.matmulCoopmat) == MatmulCoopmatKernel.Constants.names)
        let tile = CoopmatTile(shape: .init(m: 8, n: 8, k: 8, a: "f16", b: "f16", c: "f32", result: "f32", saturating: false, scope: "subgroup"),
                               bm: 64, bn: 64, bk: 16, wm: 32, wn: 32, subgroupSize: 8)
        let matmul = MatmulKernel(a: .bf16, b: .f16, c: .f32, transposeA: true, transposeB: false, bias: nil, accumulate: true,
                                  second: .init(a: .f32, b: .bf16), dropout: .second, vector: nil, writesInner: false)
        let constants = MatmulCoopmatKernel.Constants(tile: tile, matmul: matmul)
        #expect(constants.values == [32, 64, 64, 16, 8, 8, 8, 32, 32, 2, 1, 0, 0, 1, 0, 1, 0, 2, 0, 1, 0, 0, 0])
        var dora = matmul
        dora.vector = .doraCompose(addBase: true)
        #expect(MatmulCoopmatKernel.Constants(tile: tile, matmul: dora).values.suffix(3) == [0, 1, 1])
    }

    @Test func choicesNameTheirCases() {
        #expect(ElementwiseKernel.Operation.scaleRows.defines == [
            "OP": "OP_SCALE_ROWS", "OP_ADD": "0", "OP_MUL": "1", "OP_SCALE": "2", "OP_CAST": "3", "OP_SCALE_ROWS": "4", "OP_CLIP_COEFFICIENT": "5",
        ])
        #expect(QuantFormat.q8_0.macroCase == "QUANT_Q8_0" && Activation.geluTanh.macroCase == "ACT_GELU_TANH")
    }
}
