import CBFloat16GEMM

/// The CPU backend's unit of elementwise work: 16 floats, one AVX-512 register, four SSE ones in
/// the baseline x86-64 build. Every loop below takes a run's last partial vector through the same
/// code with its missing lanes padded, so an element's result never depends on where a thread's
/// range or a row begins.
typealias FloatVector = SIMD16<Float>

extension SIMD16 where Scalar == Float {
    /// `count` (at most 16) floats from `p`; the other lanes are `fill`.
    @inline(__always)
    init(_ p: UnsafePointer<Float>, count: Int, fill: Float = 0) {
        if count == 16 {
            self = UnsafeRawPointer(p).loadUnaligned(as: Self.self)
        } else {
            // One copy into the padded vector: lane by lane, each lane went through memory on its own.
            self.init(repeating: fill)
            Swift.withUnsafeMutableBytes(of: &self) { $0.baseAddress!.copyMemory(from: p, byteCount: count * MemoryLayout<Float>.stride) }
        }
    }

    /// Writes the first `count` (at most 16) lanes to `p`.
    @inline(__always)
    func store(to p: UnsafeMutablePointer<Float>, count: Int) {
        if count == 16 {
            UnsafeMutableRawPointer(p).storeBytes(of: self, as: Self.self)
        } else {
            Swift.withUnsafeBytes(of: self) { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: count * MemoryLayout<Float>.stride) }
        }
    }
}

/// Calls `body(offset, lanes)` for each run of up to 16 elements of `range`, in order.
@inline(__always)
func forEachVector(_ range: Range<Int>, _ body: (Int, Int) -> Void) {
    var i = range.lowerBound
    while i < range.upperBound {
        body(i, Swift.min(16, range.upperBound - i))
        i += 16
    }
}

/// `out[i] = f(a[i])` for `i` in `range` (`out` may be `a`).
@inline(__always)
func mapVectors(_ range: Range<Int>, _ a: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, _ f: (FloatVector) -> FloatVector) {
    forEachVector(range) { i, n in f(FloatVector(a + i, count: n)).store(to: out + i, count: n) }
}

/// `out[i] = f(a[i], b[i])` for `i` in `range` (`out` may be either input).
@inline(__always)
func mapVectors(_ range: Range<Int>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                _ f: (FloatVector, FloatVector) -> FloatVector) {
    forEachVector(range) { i, n in f(FloatVector(a + i, count: n), FloatVector(b + i, count: n)).store(to: out + i, count: n) }
}

/// exp, sigmoid and the row reductions softmax and the losses are built from.
enum VectorMath {
    /// Whether the AVX-512 twins of the loops that spend their time in exp run here
    /// (`Sources/CBFloat16GEMM/vector_math.c`: the same operations in the same order, 16 lanes in one
    /// register where this build's SIMD16 takes four SSE ones, so the very same bits).
    static let hasAVX512 = lowrank_vector_math_supported() != 0

    private static let log2e: Float = 1.44269504088896341
    /// ln 2 in two parts: `n·ln2High` is exact for |n| < 2¹⁵ (ln2High has 9 significant bits).
    private static let ln2High: Float = 0.693359375
    private static let ln2Low: Float = -2.12194440e-4
    /// 1.5·2²³: adding it rounds a float below 2²² in magnitude to an integer, to nearest even,
    /// without SSE4.1's `roundps` (the baseline x86-64 build has none); its low bits are that integer.
    private static let roundingBias: Float = 12582912

    /// eˣ in each lane, within 1 ulp of the correctly rounded result over the whole f32 range
    /// (`VectorMathTests` checks every 65521st bit pattern and the edges of the range against float64 `exp`): Cephes' `expf`,
    /// `x = n·ln 2 + r` with |r| ≤ ½ ln 2, a degree-7 polynomial in r, then `2ⁿ` as two halves so
    /// a subnormal result is rounded once. Overflow gives +inf, x below −104 gives 0, NaN stays NaN.
    @inline(__always)
    static func exp(_ x: FloatVector) -> FloatVector {
        var clamped = x
        clamped.replace(with: 89, where: x .> 89)
        clamped.replace(with: -104, where: x .< -104)
        let biased = clamped * log2e + roundingBias
        let n = biased - roundingBias
        let r = clamped - n * ln2High - n * ln2Low
        var p = FloatVector(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * (r * r) + r + 1
        let k = unsafeBitCast(biased, to: SIMD16<Int32>.self) &- 0x4B40_0000
        let half = k &>> 1
        let low = unsafeBitCast((half &+ 127) &<< 23, to: FloatVector.self)
        let high = unsafeBitCast((k &- half &+ 127) &<< 23, to: FloatVector.self)
        var result = p * low * high
        result.replace(with: x, where: x .!= x)
        return result
    }

    /// The scalar eˣ with the very bits of the vector one (a softmax's rescaling factors).
    static func exp(_ x: Float) -> Float { exp(FloatVector(repeating: x))[0] }

    /// 1 / (1 + e⁻ˣ).
    @inline(__always)
    static func sigmoid(_ x: FloatVector) -> FloatVector { 1 / (1 + exp(-x)) }

    /// The largest of `count` floats, at least `floor` (−inf for none).
    static func maximum(_ p: UnsafePointer<Float>, count: Int, atLeast floor: Float = -.infinity) -> Float {
        var largest = FloatVector(repeating: floor)
        // A select, not `pointwiseMax`, which the baseline build runs lane by lane.
        forEachVector(0..<count) { i, n in
            let v = FloatVector(p + i, count: n, fill: floor)
            largest.replace(with: v, where: v .> largest)
        }
        return largest.max()
    }

    /// Σ e^(p[i] − shift) over `count` floats, summed in f64 (16 running sums, added in a fixed
    /// order); with `out`, each exponential is also written there (`out` may be `p`). `avx512`: the
    /// AVX-512 loop (false: the Swift one, for tests).
    static func sumOfExponentials(_ p: UnsafePointer<Float>, count: Int, minus shift: Float, into out: UnsafeMutablePointer<Float>? = nil,
                                  avx512: Bool = hasAVX512) -> Double {
        var sums = SIMD16<Double>(repeating: 0)
        if avx512 {
            withUnsafeMutableBytes(of: &sums) { lowrank_sum_exp(count, p, shift, out, $0.baseAddress!.assumingMemoryBound(to: Double.self)) }
            return sums.sum()
        }
        forEachVector(0..<count) { i, n in
            // Padding of −inf adds e^−inf = 0 (with shift −inf, every element's term is NaN already).
            let e = exp(FloatVector(p + i, count: n, fill: -.infinity) - shift)
            sums += SIMD16<Double>(e)
            if let out { e.store(to: out + i, count: n) }
        }
        return sums.sum()
    }

    /// Σ a[i]·b[i] in f32 over 16 running sums.
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var sums = FloatVector(repeating: 0)
        forEachVector(0..<count) { i, n in sums += FloatVector(a + i, count: n) * FloatVector(b + i, count: n) }
        return sums.sum()
    }

    /// `p[i] *= factor` over `count` floats.
    static func scale(_ p: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
        mapVectors(0..<count, p, into: p) { $0 * factor }
    }
}
