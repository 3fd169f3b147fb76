import LowRankCore

/// Every compute shader in `Shaders/`; the raw value is its file name.
enum Shader: String, CaseIterable, Sendable {
    case activation = "activation.comp"
    case adamW = "adamw.comp"
    case attention = "attention.comp"
    case attentionCoopmat = "attention_coopmat.comp"
    case crossEntropy = "cross_entropy.comp"
    case dequantize = "dequantize.comp"
    case doraCompose = "dora_compose.comp"
    case doraNorm = "dora_norm.comp"
    case elementwise = "elementwise.comp"
    case embedding = "embedding.comp"
    case linearCrossEntropy = "linear_cross_entropy.comp"
    case loraBackward = "lora_backward.comp"
    case matmul = "matmul.comp"
    case matmulCoopmat = "matmul_coopmat.comp"
    case matmulVec = "matmul_vec.comp"
    case meanSquaredError = "mean_squared_error.comp"
    case probeCopy = "probe_copy.comp"
    case probeFMA = "probe_fma.comp"
    case quantize = "quantize.comp"
    case rmsNorm = "rms_norm.comp"
    case rope = "rope.comp"
    case rowReduce = "row_reduce.comp"
    case sumBlocks = "sum_blocks.comp"
    case transpose = "transpose.comp"

    /// The cooperative-matrix shaders: their SPIR-V is compiled ahead of time (`Shaders/spirv/`,
    /// `PrecompiledShaders`), as the glslang that shaderc links cannot compile them, and their pipelines
    /// require full subgroups.
    var usesCooperativeMatrices: Bool { self == .matmulCoopmat || self == .attentionCoopmat }

    /// The kernel type that compiles this shader: its variants and its push-constant block.
    var kernel: any Kernel.Type {
        switch self {
        case .activation: ActivationKernel.self
        case .adamW: AdamWKernel.self
        case .attention: AttentionKernel.self
        case .attentionCoopmat: AttentionCoopmatKernel.self
        case .crossEntropy: CrossEntropyKernel.self
        case .dequantize: DequantizeKernel.self
        case .doraCompose: DoRAComposeKernel.self
        case .doraNorm: DoRANormKernel.self
        case .elementwise: ElementwiseKernel.self
        case .embedding: EmbeddingKernel.self
        case .linearCrossEntropy: LinearCrossEntropyKernel.self
        case .loraBackward: LoRABackwardKernel.self
        case .matmul: MatmulKernel.self
        case .matmulCoopmat: MatmulCoopmatKernel.self
        case .matmulVec: MatrixVectorKernel.self
        case .meanSquaredError: MeanSquaredErrorKernel.self
        case .probeCopy: ProbeCopyKernel.self
        case .probeFMA: ProbeFMAKernel.self
        case .quantize: QuantizeKernel.self
        case .rmsNorm: RMSNormKernel.self
        case .rope: RoPEKernel.self
        case .rowReduce: RowReduceKernel.self
        case .sumBlocks: SumBlocksKernel.self
        case .transpose: TransposeKernel.self
        }
    }
}

/// One shader's variants: a value is one set of defines, and `Push` mirrors the shader's
/// `layout(push_constant)` block field for field (std430 offsets; `ShaderTests` parses the GLSL and
/// compares names, types and offsets, and checks the size against `PipelineStore.pushConstantBytes`).
protocol Kernel: Hashable, Sendable {
    associatedtype Push: BitwiseCopyable
    static var shader: Shader { get }
    var defines: [String: String] { get }
    /// Every variant the host can ask for: `ShaderTests` compiles each without a device. Operand
    /// dtypes are covered rather than multiplied out where they only pick conversion functions
    /// (`DType.cover`).
    static var variants: [Self] { get }
    /// The specialization constants (in `constant_id` order) `tools/isa-report.sh` compiles this
    /// variant with for real GPUs: empty where the defaults are what the host dispatches.
    var measuredSpecialization: [UInt32] { get }
    /// Whether the variant needs every subgroup full (`VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT`):
    /// cooperative matrices in SPIR-V before 1.6, and threads numbered in subgroup order.
    var requiresFullSubgroups: Bool { get }
}

extension Kernel {
    var measuredSpecialization: [UInt32] { [] }
    var requiresFullSubgroups: Bool { Self.shader.usesCooperativeMatrices }
}

/// A choice among a kernel's code paths, made in its GLSL with `#if NAME == NAME_CASE`: every case
/// is defined as `NAME_CASE`, numbered in declaration order (so `<=` compares in that order), and
/// the choice as `NAME`. A case renamed or added on one side only fails the no-device compile test.
protocol ShaderChoice: CaseIterable, Hashable, Sendable {
    /// `NAME`.
    static var macro: String { get }
}

extension ShaderChoice {
    var macroCase: String { Self.macro + "_" + Self.screamingSnakeCase(String(describing: self)) }

    var defines: [String: String] { defines(choosing: Self.macro) }

    /// The case macros, with the choice defined as `name` (`B_QUANT` for the matmul's B operand).
    func defines(choosing name: String) -> [String: String] {
        var d = [name: macroCase]
        for (i, choice) in Self.allCases.enumerated() { d[choice.macroCase] = "\(i)" }
        return d
    }

    /// `geluTanh` -> `GELU_TANH`, `q8_0` -> `Q8_0`.
    private static func screamingSnakeCase(_ name: String) -> String {
        var out = ""
        for c in name {
            if c.isUppercase, !out.isEmpty, out.last != "_" { out.append("_") }
            out += c.uppercased()
        }
        return out
    }
}

/// The passes of a kernel that runs in several steps from one GLSL file, chosen by `PASS`.
protocol KernelPass: ShaderChoice {}

extension KernelPass {
    static var macro: String { "PASS" }
}

/// The one GLSL define of a boolean switch: `1` or `0`.
extension Bool {
    var define: String { self ? "1" : "0" }
}

extension DType {
    static let floats: [DType] = [.f32, .f16, .bf16]
    /// The block-quantized dtypes, each a `QuantFormat` of `Shaders/quant.glsl`.
    static let quantized = allCases.filter(\.isQuantized)

    /// The float dtypes of `count` operands in variant `index` of a cover: f32, f16 and bf16 rotated,
    /// so that any three consecutive variants give every operand each of them. Operand dtypes only
    /// pick `to_f32` overloads and rounding functions, which do not interact across operands.
    static func cover(_ index: Int, operands count: Int) -> [DType] {
        (0..<count).map { floats[(index + $0) % floats.count] }
    }

    /// The three rotations: every operand in every float dtype.
    static func cover(operands count: Int) -> [[DType]] { floats.indices.map { cover($0, operands: count) } }

    /// The defines of an operand named `name` (`A_T`), and of its rounding (`A_FROM_F32`) when written.
    func operandDefines(_ name: String, written: Bool = false) -> [String: String] {
        written ? [name + "_T": glslType, name + "_FROM_F32": glslFromF32] : [name + "_T": glslType]
    }
}

/// An operand that only some variants have (a backward pass's G, a binary op's b).
extension DType? {
    /// Its defines (`DType.operandDefines`), or none without it.
    func operandDefines(_ name: String, written: Bool = false) -> [String: String] {
        map { $0.operandDefines(name, written: written) } ?? [:]
    }

    /// `BACKWARD`, on when the gradient operand is there, with its defines.
    func backwardDefines(_ name: String, written: Bool = false) -> [String: String] {
        ["BACKWARD": (self != nil).define] + operandDefines(name, written: written)
    }
}

extension Dictionary where Key == String, Value == String {
    /// The union of define sets that never name the same macro twice.
    static func + (a: Self, b: Self) -> Self { a.merging(b) { _, _ in preconditionFailure("a shader macro defined twice") } }
}
