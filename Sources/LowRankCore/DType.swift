/// Element types. Float types are what kernels compute on (always accumulating in f32); the
/// integer types exist for formats (safetensors); the block-quantized types hold frozen weights
/// (their tensors keep the logical shape, their bytes the packed layout of `QuantizedLayout`).
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case f32, f16, bf16
    case u8, i8, i32, i64
    /// bitsandbytes NF4: blocks of 64, one f32 absmax per block.
    case nf4
    /// bitsandbytes NF4 with double quantization: the absmax values coded in 8 bits.
    case nf4DoubleQuant = "nf4_dq"
    /// GGML Q8_0 and Q4_0: blocks of 32 with an f16 scale.
    case q8_0, q4_0
    /// GGML Q4_1, Q5_0 and Q5_1: blocks of 32 with an f16 scale (and an f16 minimum for the _1 types).
    case q4_1, q5_0, q5_1
    /// GGML's K-quants: super-blocks of 256 in sub-blocks with 6-bit (Q4_K, Q5_K) or 8-bit (Q6_K) scales.
    case q4_K = "q4_k", q5_K = "q5_k", q6_K = "q6_k"

    /// Bytes of one element; for a block-quantized type, 1 (its storage is addressed in bytes:
    /// use `byteCount(elements:)` for its size).
    public var byteSize: Int {
        switch self {
        case .f32, .i32: 4
        case .f16, .bf16: 2
        case .u8, .i8, .nf4, .nf4DoubleQuant, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K: 1
        case .i64: 8
        }
    }

    public var isFloatingPoint: Bool { self == .f32 || self == .f16 || self == .bf16 }
    public var isQuantized: Bool { self == .nf4 || self == .nf4DoubleQuant || ggmlBlockType != nil }

    /// Whether the engine quantizes into this type (a cast from a float type, `--quantize`). The
    /// other GGML types arrive quantized, from GGUF files, and are only read.
    public var hasQuantizer: Bool { self == .nf4 || self == .nf4DoubleQuant || self == .q8_0 || self == .q4_0 }

    /// The GGML block type whose blocks a GGML-quantized tensor stores byte for byte, back to back
    /// along each row; nil for NF4 and the unquantized types.
    public var ggmlBlockType: GGUF.TensorType? {
        switch self {
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        case .q4_1: .q4_1
        case .q5_0: .q5_0
        case .q5_1: .q5_1
        case .q4_K: .q4_K
        case .q5_K: .q5_K
        case .q6_K: .q6_K
        case .f32, .f16, .bf16, .u8, .i8, .i32, .i64, .nf4, .nf4DoubleQuant: nil
        }
    }

    /// GGML types: the values of one block, which every row's length is a multiple of.
    public var rowBlockElements: Int? { ggmlBlockType?.blockGeometry.elements }

    /// Bytes that `elements` values of this type take.
    public func byteCount(elements: Int) -> Int {
        isQuantized ? QuantizedLayout(self, elements: elements).byteCount : elements * byteSize
    }

    /// Unit roundoff of the storage type: what one rounding of an f32 result to it adds, relatively.
    public var unitRoundoff: Double {
        switch self {
        case .f32: 0x1p-24
        case .f16: 0x1p-11
        case .bf16: 0x1p-8
        default: 0
        }
    }

    public var description: String { rawValue }
}
