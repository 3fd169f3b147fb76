/// Quantizes and dequantizes on the host, bit for bit as bitsandbytes (NF4) and GGML do (Q8_0 and
/// Q4_0 both ways; Q4_1, Q5_0, Q5_1 and the K-quants, which arrive quantized, are only decoded):
/// the CPU backend's kernels and the reference the device kernels (`Shaders/quant.glsl`,
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
        default:
            precondition(layout.dtype.ggmlBlockType != nil, "\(layout.dtype) is not block-quantized")
            dequantizeGGML(bytes, range, into: out)
        }
    }

    /// GGML: elements `range`, decoded a block at a time (straight into `out` where the range holds
    /// the whole block).
    private func dequantizeGGML(_ bytes: UnsafeRawPointer, _ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let n = layout.blockElements, size = layout.ggmlBlockBytes
        withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { scratch in
            var i = range.lowerBound
            while i < range.upperBound {
                let block = i / n, span = i..<min(range.upperBound, block * n + n)
                let target = out + (i - range.lowerBound)
                if span.count == n {
                    decodeBlock(bytes + block * size, into: target)
                } else {
                    decodeBlock(bytes + block * size, into: scratch.baseAddress!)
                    target.update(from: scratch.baseAddress! + (i - block * n), count: span.count)
                }
                i = span.upperBound
            }
        }
    }

    /// One GGML block's values, as ggml's `dequantize_row_*` and the `gguf` package compute them:
    /// every product of a code and its scales is exact in f32, so only the minimum's addition
    /// (the _1 types, the K-quants' `− dmin·m`) rounds.
    private func decodeBlock(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let f16 = { (at: Int) in floatFromF16(UInt16(littleEndian: block.loadUnaligned(fromByteOffset: at, as: UInt16.self))) }
        let byte = { (at: Int) in Int(block.load(fromByteOffset: at, as: UInt8.self)) }
        switch layout.dtype {
        case .q8_0:
            let d = f16(0)
            for j in 0..<32 { y[j] = Float(block.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
        case .q4_0, .q5_0:
            // Element j in the low nibble of byte j, j + 16 in the high one; Q5_0's fifth bits in qh.
            let d = f16(0), five = layout.dtype == .q5_0
            let qh = five ? UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt32.self)) : 0
            let (qs, offset) = five ? (6, 16) : (2, 8)
            for j in 0..<16 {
                let b = byte(qs + j)
                y[j] = Float((b & 15 | Int(qh >> j & 1) << 4) - offset) * d
                y[j + 16] = Float((b >> 4 | Int(qh >> (j + 16) & 1) << 4) - offset) * d
            }
        case .q4_1, .q5_1:
            let d = f16(0), m = f16(2), five = layout.dtype == .q5_1
            let qh = five ? UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) : 0
            let qs = five ? 8 : 4
            for j in 0..<16 {
                let b = byte(qs + j)
                y[j] = Float(b & 15 | Int(qh >> j & 1) << 4) * d + m
                y[j + 16] = Float(b >> 4 | Int(qh >> (j + 16) & 1) << 4) * d + m
            }
        case .q4_K, .q5_K:
            // Eight sub-blocks of 32; sub-blocks 2c and 2c + 1 share 32 bytes of nibbles (low, high).
            let d = f16(0), dmin = f16(2), five = layout.dtype == .q5_K
            let qs = five ? 48 : 16
            for s in 0..<8 {
                let (sc, m) = Self.scaleMin(block + 4, s)
                let dl = d * Float(sc), ml = dmin * Float(m)
                let nibbles = qs + 32 * (s / 2), shift = 4 * (s % 2)
                for l in 0..<32 {
                    let q = byte(nibbles + l) >> shift & 15 | (five ? (byte(16 + l) >> s & 1) << 4 : 0)
                    y[32 * s + l] = dl * Float(q) - ml
                }
            }
        case .q6_K:
            // Two halves of 128, as ggml's loop runs: byte l of a half's 32 bytes of qh holds the high
            // two bits of elements l, l + 32, l + 64 and l + 96, whose low four are the nibbles of
            // ql bytes l and l + 32; one int8 scale per 16 elements (d·scale is exact).
            let d = f16(208)
            for h in 0..<2 {
                let (ql, qh, half) = (64 * h, 128 + 32 * h, y + 128 * h)
                let scale = { (i: Int) in d * Float(block.load(fromByteOffset: 192 + 8 * h + i, as: Int8.self)) }
                for l in 0..<32 {
                    let (a, b, high) = (byte(ql + l), byte(ql + l + 32), byte(qh + l))
                    half[l] = scale(l / 16) * Float((a & 15 | (high & 3) << 4) - 32)
                    half[l + 32] = scale(l / 16 + 2) * Float((b & 15 | (high >> 2 & 3) << 4) - 32)
                    half[l + 64] = scale(l / 16 + 4) * Float((a >> 4 | (high >> 4 & 3) << 4) - 32)
                    half[l + 96] = scale(l / 16 + 6) * Float((b >> 4 | (high >> 6) << 4) - 32)
                }
            }
        default:
            preconditionFailure("\(layout.dtype) is not a GGML type")
        }
    }

    /// Q4_K and Q5_K: sub-block `j`'s 6-bit scale and min from the 12 packed bytes at `scales`
    /// (ggml's `get_scale_min_k4`): the first four pairs in the low six bits of bytes 0–7, the last
    /// four in the nibbles of bytes 8–11 with their top two bits in bytes 0–7's high bits.
    static func scaleMin(_ scales: UnsafeRawPointer, _ j: Int) -> (scale: Int, min: Int) {
        let q = { (at: Int) in Int(scales.load(fromByteOffset: at, as: UInt8.self)) }
        if j < 4 { return (q(j) & 63, q(j + 4) & 63) }
        return (q(j + 4) & 15 | (q(j - 4) >> 6) << 4, q(j + 4) >> 4 | (q(j) >> 6) << 4)
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
            preconditionFailure("the engine does not quantize into \(layout.dtype)")
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
