import Foundation
import LowRankCore
@testable import LowRankCPU
import Testing

/// The CPU backend's vector exp against Foundation's float64 `exp` rounded to f32, and the row
/// reductions built on it against float64 sums.
@Suite("CPU vector math")
struct VectorMathTests {
    /// Distance in representable floats (0 for two NaNs; +0 and −0 are one apart).
    static func ulps(_ a: Float, _ b: Float) -> Int {
        if a.isNaN || b.isNaN { return a.isNaN && b.isNaN ? 0 : .max }
        func ordered(_ f: Float) -> Int {
            let i = Int(Int32(bitPattern: f.bitPattern))
            return i < 0 ? Int(Int32.min) - i : i
        }
        return abs(ordered(a) - ordered(b))
    }

    static func checkExp(_ values: [Float]) -> (worst: Int, at: Float) {
        var worst = 0, at: Float = 0
        for start in stride(from: 0, to: values.count, by: 16) {
            let n = min(16, values.count - start)
            let x = values[start..<(start + n)].withUnsafeBufferPointer { FloatVector($0.baseAddress!, count: n) }
            let e = VectorMath.exp(x)
            for lane in 0..<n {
                let error = ulps(e[lane], Float(Foundation.exp(Double(x[lane]))))
                if error > worst { (worst, at) = (error, x[lane]) }
            }
        }
        return (worst, at)
    }

    /// Every 65521st bit pattern (positive and negative, normal, subnormal, inf and NaN), each
    /// boundary of the range, and dense sweeps where the result turns subnormal or overflows: at most 1 ulp.
    @Test func expWithinOneUlpOverTheWholeRange() {
        var values: [Float] = []
        for bits in stride(from: UInt64(0), through: UInt64(UInt32.max), by: 65521) { values.append(Float(bitPattern: UInt32(bits))) }
        values += [0, -0.0, .infinity, -.infinity, .nan, -.nan, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
                   .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 1e-10, -1e-10,
                   88.72283, 88.722839, 88.72284, 89, 89.5, -87.33654, -87.33655, -103.27893, -103.9720, -103.97208, -104, -104.5]
        for (from, to) in [(-104.0, -86.0), (86.0, 89.0), (-1.0, 1.0)] as [(Float, Float)] {
            values += stride(from: from, through: to, by: (to - from) / 20000).map { $0 }
        }
        let (worst, at) = Self.checkExp(values)
        #expect(worst <= 1, "worst \(worst) ulp at \(at)")
        let specials = VectorMath.exp(FloatVector(.infinity, -.infinity, .nan, 0, -0.0, 89, -104, 1, 0, 0, 0, 0, 0, 0, 0, 0))
        #expect(specials[0] == .infinity && specials[1] == 0 && specials[2].isNaN && specials[3] == 1 && specials[4] == 1)
        #expect(specials[5] == .infinity && specials[6] == 0 && specials[7] == Float(M_E))
    }

    /// Tails and padding: a row's maximum, Σ exp and dot product at lengths around multiples of 16,
    /// against float64, and each element's exponential the same wherever it sits in a run.
    @Test func rowReductions() {
        for count in [0, 1, 15, 16, 17, 31, 33, 100, 1000] {
            let values = (0..<count).map { Float(sin(Double($0) * 1.7)) * 30 }
            let other = (0..<count).map { Float(cos(Double($0) * 0.3)) }
            values.withUnsafeBufferPointer { p in
                other.withUnsafeBufferPointer { q in
                    let largest = VectorMath.maximum(p.baseAddress!, count: count)
                    #expect(largest == (values.max() ?? -.infinity), "max of \(count)")
                    var exponentials = [Float](repeating: .nan, count: count)
                    let sum = exponentials.withUnsafeMutableBufferPointer {
                        VectorMath.sumOfExponentials(p.baseAddress!, count: count, minus: largest, into: $0.baseAddress!)
                    }
                    let reference = values.reduce(0.0) { $0 + Foundation.exp(Double($1) - Double(largest)) }
                    #expect(abs(sum - reference) <= 1e-6 * reference, "sum of \(count)")
                    #expect(exponentials == values.map { VectorMath.exp($0 - largest) }, "exponentials of \(count)")
                    let dot = VectorMath.dot(p.baseAddress!, q.baseAddress!, count: count)
                    let dotReference = zip(values, other).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                    let magnitude = zip(values, other).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
                    #expect(abs(Double(dot) - dotReference) <= 1e-6 * magnitude, "dot of \(count)")
                }
            }
        }
    }

    /// The 16-lane bf16 rounding against the scalar one, bit for bit: NaNs (with payloads, signed),
    /// infinities, subnormals, ties to even either way, values that round up into infinity.
    @Test func bfloat16RoundingInVectors() {
        var values: [Float] = [.nan, -.nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC1_2345), .infinity, -.infinity,
                               .leastNonzeroMagnitude, -.leastNonzeroMagnitude, Float(bitPattern: 0x0000_8000), Float(bitPattern: 0x0001_8000),
                               1 + 0x1p-8, 1 + 3 * 0x1p-8, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 0, -0.0]
        for bits in stride(from: UInt64(0), through: UInt64(UInt32.max), by: 999_983) { values.append(Float(bitPattern: UInt32(bits))) }
        values += Array(repeating: 0, count: (16 - values.count % 16) % 16)
        for start in stride(from: 0, to: values.count, by: 16) {
            let lanes = bf16Bits(FloatVector(values[start..<(start + 16)]))
            for lane in 0..<16 {
                #expect(lanes[lane] == bf16Bits(values[start + lane]), "\(values[start + lane].bitPattern)")
            }
        }
    }
}
