/// Where each part of a block-quantized tensor lives in its one buffer. Every section starts on a
/// 4-byte boundary, so kernels read the buffer as 32-bit words.
///
/// - NF4 (bitsandbytes, blocks of 64 over the row-major flattened tensor, the last block possibly
///   partial): the packed codes, element 2k in the high nibble of byte k and 2k+1 in the low one;
///   then one f32 absmax per block. With double quantization the absmax section holds instead one
///   byte per block (an index into the dynamic map), then one f32 scale per 256 blocks, then the
///   f32 offset (the mean absmax): `absmax = dynamic[q]·scale + offset`.
/// - Q8_0 and Q4_0 (GGML, blocks of 32 along each row): GGML's own blocks back to back, an f16
///   scale d and then 32 int8 (Q8_0: value `q·d`) or 16 bytes (Q4_0: element j in the low nibble of
///   byte j, element j+16 in the high one, value `(q − 8)·d`).
public struct QuantizedLayout: Sendable, Equatable {
    public let dtype: DType
    public let elements: Int

    public init(_ dtype: DType, elements: Int) {
        precondition(dtype.isQuantized, "\(dtype) is not a block-quantized type")
        self.dtype = dtype
        self.elements = elements
    }

    public var blockElements: Int { dtype == .nf4 || dtype == .nf4DoubleQuant ? 64 : 32 }
    public var blocks: Int { (elements + blockElements - 1) / blockElements }

    /// GGML: bytes per block.
    public var ggmlBlockBytes: Int { dtype == .q8_0 ? 34 : 18 }

    /// NF4: bytes of packed codes, and where the absmax section starts.
    public var codeBytes: Int { (elements + 1) / 2 }
    public var absmaxOffset: Int { Self.align4(codeBytes) }
    /// NF4 with double quantization: blocks of 256 absmax values per nested scale.
    public static let nestedBlockElements = 256
    public var nestedBlocks: Int { (blocks + Self.nestedBlockElements - 1) / Self.nestedBlockElements }
    public var nestedScaleOffset: Int { absmaxOffset + Self.align4(blocks) }
    public var meanOffset: Int { nestedScaleOffset + 4 * nestedBlocks }

    public var byteCount: Int {
        switch dtype {
        case .nf4: absmaxOffset + 4 * blocks
        case .nf4DoubleQuant: meanOffset + 4
        default: blocks * ggmlBlockBytes
        }
    }

    static func align4(_ n: Int) -> Int { (n + 3) / 4 * 4 }
}
