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

    /// Bytes of one element; for a block-quantized type, 1 (its storage is addressed in bytes:
    /// use `byteCount(elements:)` for its size).
    public var byteSize: Int {
        switch self {
        case .f32, .i32: 4
        case .f16, .bf16: 2
        case .u8, .i8, .nf4, .nf4DoubleQuant, .q8_0, .q4_0: 1
        case .i64: 8
        }
    }

    public var isFloatingPoint: Bool { self == .f32 || self == .f16 || self == .bf16 }
    public var isQuantized: Bool { self == .nf4 || self == .nf4DoubleQuant || self == .q8_0 || self == .q4_0 }

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
