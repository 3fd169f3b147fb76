/// Element types. Float types are what kernels compute on (always accumulating in f32);
/// the integer types exist for formats (safetensors, quantized blocks).
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case f32, f16, bf16
    case u8, i8, i32, i64

    public var byteSize: Int {
        switch self {
        case .f32, .i32: 4
        case .f16, .bf16: 2
        case .u8, .i8: 1
        case .i64: 8
        }
    }

    public var isFloatingPoint: Bool { self == .f32 || self == .f16 || self == .bf16 }

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
