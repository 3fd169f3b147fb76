/// Quantizes and dequantizes on the host, bit for bit as bitsandbytes (NF4) and GGML (Q8_0, Q4_0)
/// do: the CPU backend's kernels and the reference the device kernels (`Shaders/quant.glsl`,
/// `Shaders/quantize.comp`) are checked against.
public struct Quantizer: Sendable {
    public let layout: QuantizedLayout

    public init(_ layout: QuantizedLayout) { self.layout = layout }

    // MARK: Dequantize

    /// Elements `range` of the tensor whose packed bytes start at `bytes`, as f32.
    public func dequantize(_ bytes: UnsafeRawPointer, _ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        switch layout.dtype {
        case .nf4, .nf4DoubleQuant:
            let nf4 = QuantizationTables.nf4
            var block = -1, absmax: Float = 0
            for (o, i) in range.enumerated() {
                if i / 64 != block { block = i / 64; absmax = self.absmax(bytes, block: block) }
                let byte = bytes.load(fromByteOffset: i / 2, as: UInt8.self)
                out[o] = nf4[Int(i % 2 == 0 ? byte >> 4 : byte & 0x0F)] * absmax
            }
        case .q8_0:
            for (o, i) in range.enumerated() {
                let base = (i / 32) * 34
                let d = floatFromF16(bytes.loadUnaligned(fromByteOffset: base, as: UInt16.self))
                out[o] = Float(bytes.load(fromByteOffset: base + 2 + i % 32, as: Int8.self)) * d
            }
        case .q4_0:
            for (o, i) in range.enumerated() {
                let base = (i / 32) * 18, j = i % 32
                let d = floatFromF16(bytes.loadUnaligned(fromByteOffset: base, as: UInt16.self))
                let byte = bytes.load(fromByteOffset: base + 2 + j % 16, as: UInt8.self)
                out[o] = Float(Int(j < 16 ? byte & 0x0F : byte >> 4) - 8) * d
            }
        default:
            preconditionFailure("\(layout.dtype) is not block-quantized")
        }
    }

    /// NF4: block `block`'s absmax, decoded from the double quantization when there is one
    /// (`dynamic[q]·scale`, then `+ offset`, each rounded to f32 as bitsandbytes does).
    @inline(__always)
    public func absmax(_ bytes: UnsafeRawPointer, block: Int) -> Float {
        if layout.dtype == .nf4 { return bytes.load(fromByteOffset: layout.absmaxOffset + 4 * block, as: Float.self) }
        let q = bytes.load(fromByteOffset: layout.absmaxOffset + block, as: UInt8.self)
        let scale = bytes.load(fromByteOffset: layout.nestedScaleOffset + 4 * (block / QuantizedLayout.nestedBlockElements), as: Float.self)
        let mean = bytes.load(fromByteOffset: layout.meanOffset, as: Float.self)
        let scaled = QuantizationTables.dynamic[Int(q)] * scale
        return scaled + mean
    }

    // MARK: Quantize

    /// Quantizes `layout.elements` f32 values into `out` (`layout.byteCount` bytes).
    public func quantize(_ values: UnsafePointer<Float>, into out: UnsafeMutableRawPointer) {
        out.initializeMemory(as: UInt8.self, repeating: 0, count: layout.byteCount)
        let n = layout.elements
        switch layout.dtype {
        case .nf4, .nf4DoubleQuant:
            var absmaxes = [Float](repeating: 0, count: layout.blocks)
            for block in 0..<layout.blocks {
                let range = (block * 64)..<min(n, block * 64 + 64)
                let absmax = range.reduce(Float(0)) { max($0, abs(values[$1])) }
                absmaxes[block] = absmax
                // bitsandbytes scales by the f32 reciprocal, `A * (1 / absmax)`; in a block of zeros
                // that is NaN, and its argmin over the table gives code 0 (which decodes to −0).
                let reciprocal = 1 / absmax
                for i in range {
                    let code = absmax == 0 ? 0 : UInt8(Self.nearest(values[i] * reciprocal, in: QuantizationTables.nf4))
                    let byte = out.load(fromByteOffset: i / 2, as: UInt8.self)
                    out.storeBytes(of: byte | (i % 2 == 0 ? code << 4 : code), toByteOffset: i / 2, as: UInt8.self)
                }
            }
            if layout.dtype == .nf4 {
                for (b, a) in absmaxes.enumerated() { out.storeBytes(of: a, toByteOffset: layout.absmaxOffset + 4 * b, as: Float.self) }
            } else {
                storeDoubleQuantized(absmaxes, into: out)
            }
        case .q8_0:
            for block in 0..<layout.blocks {
                let x = values + block * 32, base = block * 34
                let amax = (0..<32).reduce(Float(0)) { max($0, abs(x[$1])) }
                let d = amax / 127, id: Float = d != 0 ? 1 / d : 0
                out.storeBytes(of: f16Bits(d), toByteOffset: base, as: UInt16.self)
                for j in 0..<32 {
                    let q = Int8(max(-127, min(127, (x[j] * id).rounded())))
                    out.storeBytes(of: q, toByteOffset: base + 2 + j, as: Int8.self)
                }
            }
        case .q4_0:
            for block in 0..<layout.blocks {
                let x = values + block * 32, base = block * 18
                // The signed value of largest magnitude maps to −8, as GGML's reference quantizer does.
                var amax: Float = 0, extreme: Float = 0
                for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]); extreme = x[j] }
                let d = extreme / -8, id: Float = d != 0 ? 1 / d : 0
                out.storeBytes(of: f16Bits(d), toByteOffset: base, as: UInt16.self)
                for j in 0..<16 {
                    let lo = min(15, UInt8(max(0, x[j] * id + 8.5).rounded(.towardZero)))
                    let hi = min(15, UInt8(max(0, x[j + 16] * id + 8.5).rounded(.towardZero)))
                    out.storeBytes(of: lo | hi << 4, toByteOffset: base + 2 + j, as: UInt8.self)
                }
            }
        default:
            preconditionFailure("\(layout.dtype) is not block-quantized")
        }
    }

    /// bitsandbytes' double quantization of the absmax values: subtract their mean, then code each
    /// block of 256 in 8 bits over the dynamic map, scaled by the block's largest magnitude, with
    /// bitsandbytes' CPU coder (`dynamicCode`); a block of zeros gets code 0, as there.
    func storeDoubleQuantized(_ absmaxes: [Float], into out: UnsafeMutableRawPointer) {
        let mean = Self.mean(absmaxes)
        out.storeBytes(of: mean, toByteOffset: layout.meanOffset, as: Float.self)
        let centred = absmaxes.map { $0 - mean }
        let nested = QuantizedLayout.nestedBlockElements
        for block in 0..<layout.nestedBlocks {
            let range = (block * nested)..<min(centred.count, block * nested + nested)
            let scale = range.reduce(Float(0)) { max($0, abs(centred[$1])) }
            out.storeBytes(of: scale, toByteOffset: layout.nestedScaleOffset + 4 * block, as: Float.self)
            let reciprocal = 1 / scale
            for i in range {
                let code = scale == 0 ? 0 : Self.dynamicCode(centred[i] * reciprocal)
                out.storeBytes(of: code, toByteOffset: layout.absmaxOffset + i, as: UInt8.self)
            }
        }
    }

    /// The mean of the absmax values as bitsandbytes takes it, `absmax.mean()` in PyTorch: the f32
    /// sum in the order of PyTorch's CPU kernel (`TorchSum`), divided by the count in f32.
    static func mean(_ values: [Float]) -> Float {
        TorchSum.sum(values) / Float(max(values.count, 1))
    }

    /// bitsandbytes' 8-bit code, on the CPU, of a value already scaled into [−1, 1] (by the f32
    /// reciprocal of its block's scale): clamped, rounded half up onto the grid of
    /// `QuantizationTables.dynamicGridPoints` points, and the code of that grid point. Within half a
    /// grid step (1.5e-5) of the midpoint of two codes this can be the farther one; bitsandbytes'
    /// bytes are the reference, so we round as it does.
    public static func dynamicCode(_ normalized: Float) -> UInt8 {
        let x = normalized.isNaN ? 0 : min(max(normalized, -1), 1)
        let point = UInt32((x + 1) * 0.5 * Float(QuantizationTables.dynamicGridPoints - 1) + 0.5)
        let starts = QuantizationTables.dynamicGridStarts
        var lo = 0, hi = starts.count  // the number of starts <= point
        while lo < hi {
            let mid = (lo + hi) / 2
            if starts[mid] <= point { lo = mid + 1 } else { hi = mid }
        }
        return UInt8(lo)
    }

    /// The index of the table value nearest to `v` (the lower one on an exact tie), `v` clamped to
    /// the table's range first.
    public static func nearest(_ v: Float, in table: [Float]) -> Int {
        let x = min(max(v, -1), 1)
        var lo = 0, hi = table.count - 1
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if table[mid] <= x { lo = mid } else { hi = mid }
        }
        return abs(x - table[hi]) < abs(x - table[lo]) ? hi : lo
    }
}
