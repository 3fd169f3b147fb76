/// Conversions between f32 and the 16-bit storage types, rounding to nearest even.
/// bf16 is the top half of an f32; NaN stays NaN (quiet) instead of rounding into infinity.
@inline(__always)
public func bf16Bits(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
    let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
}

/// `bf16Bits` in 16 lanes, bit for bit: to nearest even, NaNs quieted (AVX-512 BF16's `vcvtne2ps2bf16` rounds so too, but flushes subnormal inputs).
@inline(__always)
public func bf16Bits(_ value: SIMD16<Float>) -> SIMD16<UInt16> {
    let bits = unsafeBitCast(value, to: SIMD16<UInt32>.self)
    let rounded = (bits &+ 0x7FFF &+ ((bits &>> 16) & 1)) &>> 16
    let quiet = (bits &>> 16) | 0x0040
    // All ones in a NaN's lanes, from the sign of 0x7F800000 − |bits| (a select by mask,
    // `replacing(with:where:)`, went lane by lane through memory here).
    let nan = unsafeBitCast((0x7F80_0000 &- unsafeBitCast(bits & 0x7FFF_FFFF, to: SIMD16<Int32>.self)) &>> 31, to: SIMD16<UInt32>.self)
    return SIMD16<UInt16>(truncatingIfNeeded: (rounded & ~nan) | (quiet & nan))
}

@inline(__always)
public func floatFromBF16(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

@inline(__always)
public func f16Bits(_ value: Float) -> UInt16 { Float16(value).bitPattern }

@inline(__always)
public func floatFromF16(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }

/// Converts `count` elements of `dtype` at `source` to f32.
public func convertToFloat(_ source: UnsafeRawPointer, dtype: DType, count: Int, into out: UnsafeMutablePointer<Float>) {
    switch dtype {
    case .f32:
        out.update(from: source.assumingMemoryBound(to: Float.self), count: count)
    case .f16:
        let s = source.assumingMemoryBound(to: Float16.self)
        for i in 0..<count { out[i] = Float(s[i]) }
    case .bf16:
        let s = source.assumingMemoryBound(to: UInt16.self)
        var i = 0
        while i + 16 <= count {
            let bits = SIMD16<UInt32>(truncatingIfNeeded: UnsafeRawPointer(s + i).loadUnaligned(as: SIMD16<UInt16>.self)) &<< 16
            UnsafeMutableRawPointer(out + i).storeBytes(of: unsafeBitCast(bits, to: SIMD16<Float>.self), as: SIMD16<Float>.self)
            i += 16
        }
        while i < count { out[i] = floatFromBF16(s[i]); i += 1 }
    case .u8:
        let s = source.assumingMemoryBound(to: UInt8.self)
        for i in 0..<count { out[i] = Float(s[i]) }
    case .i8:
        let s = source.assumingMemoryBound(to: Int8.self)
        for i in 0..<count { out[i] = Float(s[i]) }
    case .i32:
        let s = source.assumingMemoryBound(to: Int32.self)
        for i in 0..<count { out[i] = Float(s[i]) }
    case .i64:
        let s = source.assumingMemoryBound(to: Int64.self)
        for i in 0..<count { out[i] = Float(s[i]) }
    case .nf4, .nf4DoubleQuant, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K:
        preconditionFailure("block-quantized data converts through Quantizer, a whole block at a time")
    }
}

/// Converts `count` f32 values into `dtype` at `destination` (float types round to nearest even).
public func convertFromFloat(_ source: UnsafePointer<Float>, count: Int, dtype: DType, into destination: UnsafeMutableRawPointer) {
    switch dtype {
    case .f32:
        destination.assumingMemoryBound(to: Float.self).update(from: source, count: count)
    case .f16:
        let d = destination.assumingMemoryBound(to: Float16.self)
        for i in 0..<count { d[i] = Float16(source[i]) }
    case .bf16:
        let d = destination.assumingMemoryBound(to: UInt16.self)
        var i = 0
        while i + 16 <= count {
            let v = UnsafeRawPointer(source + i).loadUnaligned(as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(d + i).storeBytes(of: bf16Bits(v), as: SIMD16<UInt16>.self)
            i += 16
        }
        while i < count { d[i] = bf16Bits(source[i]); i += 1 }
    case .u8:
        let d = destination.assumingMemoryBound(to: UInt8.self)
        for i in 0..<count { d[i] = UInt8(clamping: Int(source[i].rounded())) }
    case .i8:
        let d = destination.assumingMemoryBound(to: Int8.self)
        for i in 0..<count { d[i] = Int8(clamping: Int(source[i].rounded())) }
    case .i32:
        let d = destination.assumingMemoryBound(to: Int32.self)
        for i in 0..<count { d[i] = Int32(clamping: Int(source[i].rounded())) }
    case .i64:
        let d = destination.assumingMemoryBound(to: Int64.self)
        for i in 0..<count { d[i] = Int64(source[i].rounded()) }
    case .nf4, .nf4DoubleQuant, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K:
        preconditionFailure("block-quantized data converts through Quantizer, a whole block at a time")
    }
}
