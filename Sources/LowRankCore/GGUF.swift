/// GGUF, the model file of llama.cpp and GGML (version 3): a little-endian header (magic `GGUF`,
/// version, tensor count, metadata count), typed key/value metadata, one info record per tensor
/// (name, dimensions innermost first, GGML type, offset into the data section), then the tensor
/// data, aligned to `general.alignment` (32 by default). These are the format's vocabulary, shared
/// by the reader and the writer.
public enum GGUF {
    /// "GGUF" read as a little-endian UInt32.
    public static let magic: UInt32 = 0x4655_4747
    public static let version: UInt32 = 3
    public static let defaultAlignment = 32
    public static let alignmentKey = "general.alignment"

    /// The type tag of a metadata value, as `gguf_type` numbers it.
    public enum ValueType: UInt32, Sendable, CaseIterable {
        case uint8 = 0, int8, uint16, int16, uint32, int32, float32, bool, string, array, uint64, int64, float64
    }

    /// One metadata value. Arrays are homogeneous in the format; `array` keeps the element type so
    /// that an empty array is written back with the type it was read with.
    public indirect enum Value: Sendable, Equatable {
        case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
        case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
        case array(ValueType, [Value])

        public var type: ValueType {
            switch self {
            case .uint8: .uint8
            case .int8: .int8
            case .uint16: .uint16
            case .int16: .int16
            case .uint32: .uint32
            case .int32: .int32
            case .uint64: .uint64
            case .int64: .int64
            case .float32: .float32
            case .float64: .float64
            case .bool: .bool
            case .string: .string
            case .array: .array
            }
        }

        /// An integer of any width, if it is one (configuration keys are written as u32 by
        /// llama.cpp's converter and as other widths by other writers).
        public var integer: Int? {
            switch self {
            case .uint8(let v): Int(v)
            case .int8(let v): Int(v)
            case .uint16(let v): Int(v)
            case .int16(let v): Int(v)
            case .uint32(let v): Int(v)
            case .int32(let v): Int(v)
            case .uint64(let v): v <= UInt64(Int.max) ? Int(v) : nil
            case .int64(let v): Int(v)
            default: nil
            }
        }

        /// A float of either width or an integer, as a Double.
        public var number: Double? {
            switch self {
            case .float32(let v): Double(v)
            case .float64(let v): v
            default: integer.map(Double.init)
            }
        }

        public var string: String? { if case .string(let s) = self { s } else { nil } }
        public var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
        public var array: [Value]? { if case .array(_, let a) = self { a } else { nil } }
    }

    /// A tensor's element type, as `ggml_type` numbers it. Block-quantized types store
    /// `blockElements` values in `blockBytes` bytes along the innermost dimension.
    public enum TensorType: UInt32, Sendable, CaseIterable {
        case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
        case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
        case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
        case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
        case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39

        /// (values per block, bytes per block), from ggml's type traits.
        public var blockGeometry: (elements: Int, bytes: Int) {
            switch self {
            case .f32, .i32: (1, 4)
            case .f16, .bf16, .i16: (1, 2)
            case .i8: (1, 1)
            case .i64, .f64: (1, 8)
            case .q4_0: (32, 18)
            case .q4_1: (32, 20)
            case .q5_0: (32, 22)
            case .q5_1: (32, 24)
            case .q8_0: (32, 34)
            case .q8_1: (32, 36)
            case .q2_K: (256, 84)
            case .q3_K: (256, 110)
            case .q4_K: (256, 144)
            case .q5_K: (256, 176)
            case .q6_K: (256, 210)
            case .q8_K: (256, 292)
            case .iq2_xxs: (256, 66)
            case .iq2_xs: (256, 74)
            case .iq3_xxs: (256, 98)
            case .iq1_s: (256, 50)
            case .iq4_nl: (32, 18)
            case .iq3_s: (256, 110)
            case .iq2_s: (256, 82)
            case .iq4_xs: (256, 136)
            case .iq1_m: (256, 56)
            case .tq1_0: (256, 54)
            case .tq2_0: (256, 66)
            case .mxfp4: (32, 17)
            }
        }

        /// The name ggml and the `gguf` Python package print (`Q4_K`, `BF16`, …).
        public var name: String { String(describing: self).uppercased() }
    }
}

extension GGUF.TensorType {
    /// The engine's dtype for tensors of this type, or nil where the engine has none.
    public var dtype: DType? {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        default: DType.allCases.first { $0.ggmlBlockType == self }
        }
    }
}
