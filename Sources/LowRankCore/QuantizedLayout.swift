/// Where each part of a block-quantized tensor lives in its one buffer. Every section starts on a
/// 4-byte boundary, so kernels read the buffer as 32-bit words.
///
/// - NF4 (bitsandbytes, blocks of 64 over the row-major flattened tensor, the last block possibly
///   partial): the packed codes, element 2k in the high nibble of byte k and 2k+1 in the low one;
///   then one f32 absmax per block. With double quantization the absmax section holds instead one
///   byte per block (an index into the dynamic map), then one f32 scale per 256 blocks, then the
///   f32 offset (the mean absmax): `absmax = dynamic[q]·scale + offset`.
/// - GGML types (blocks along each row, so a row is whole blocks): GGML's own blocks back to back,
///   as `ggml-common.h` declares them (f16 values little-endian):
///   - Q8_0 (34 bytes per 32): f16 d, 32 int8; value `q·d`.
///   - Q4_0 (18 bytes per 32): f16 d, 16 bytes (element j in the low nibble of byte j, element
///     j+16 in the high one); value `(q − 8)·d`.
///   - Q4_1 (20 bytes per 32): f16 d, f16 m, nibbles as Q4_0; value `q·d + m`.
///   - Q5_0 (22 bytes per 32): f16 d, a 32-bit little-endian qh whose bit j is element j's fifth
///     bit, nibbles as Q4_0; value `(q − 16)·d`. Q5_1 (24 bytes): d, m, qh, nibbles; `q·d + m`.
///   - Q4_K (144 bytes per 256): f16 d, f16 dmin, 12 bytes of eight 6-bit scales and mins
///     (`get_scale_min_k4`), 128 bytes of nibbles: 64 elements per 32 bytes, the first 32 in the
///     low nibbles (sub-block 2c), the next 32 in the high ones (2c + 1); value
///     `d·sc·q − dmin·m`, sub-blocks of 32.
///   - Q5_K (176 bytes per 256): d, dmin, scales as Q4_K, 32 bytes qh (bit s of byte l is the fifth
///     bit of element 32s + l), nibbles as Q4_K.
///   - Q6_K (210 bytes per 256): 128 bytes ql, 64 bytes qh, 16 int8 scales (one per 16 elements),
///     f16 d. Each half of 128 elements takes 64 bytes of ql (elements r and r+64 in the low and high
///     nibbles of byte r) and 32 of qh (two bits of element 32t + l at bit 2t of byte l); value
///     `d·scale·(q − 32)`.
public struct QuantizedLayout: Sendable, Equatable {
    public let dtype: DType
    public let elements: Int

    public init(_ dtype: DType, elements: Int) {
        precondition(dtype.isQuantized, "\(dtype) is not a block-quantized type")
        self.dtype = dtype
        self.elements = elements
    }

    public var blockElements: Int { dtype.ggmlBlockType?.blockGeometry.elements ?? 64 }
    public var blocks: Int { (elements + blockElements - 1) / blockElements }

    /// GGML: bytes per block.
    public var ggmlBlockBytes: Int { dtype.ggmlBlockType?.blockGeometry.bytes ?? 0 }

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
