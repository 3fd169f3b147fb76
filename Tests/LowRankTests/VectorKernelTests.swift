import Foundation
import LowRankCore
@testable import LowRankCPU
import Testing

/// The AVX-512 loops (`Sources/CBFloat16GEMM/vector_math.c`) against the Swift loops they stand in
/// for, bit for bit: every 65521st bit pattern, the edges of exp's range, at lengths whose last
/// vector is partial and at offsets inside a vector. A NaN is any NaN where two NaNs meet (which
/// operand's payload a product keeps is the compiler's choice of operand order, not the math's).
@Suite("CPU AVX-512 vector loops")
struct VectorKernelTests {
    static let values: [Float] = {
        var values: [Float] = [0, -0.0, .infinity, -.infinity, .nan, -.nan, Float(bitPattern: 0x7FC1_2345), .leastNonzeroMagnitude,
                               .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 88.72283, 89, 89.5, -87.33655, -103.97208, -104, -104.5]
        for bits in stride(from: UInt64(0), through: UInt64(UInt32.max), by: 65521) { values.append(Float(bitPattern: UInt32(bits))) }
        values += stride(from: Float(-20), through: 20, by: 0.01)
        return values
    }()

    static func same(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern || $0.isNaN && $1.isNaN }
    }

    static func requireAVX512() throws {
        if !VectorMath.hasAVX512 { try Test.cancel("this CPU has no AVX-512F: the Swift loops run") }
    }

    @Test func siluGatedForwardAndBackward() throws {
        try Self.requireAVX512()
        let gate = Self.values, count = gate.count
        let up = (0..<count).map { Float(sin(Double($0) * 0.7)) * 3 }, g = (0..<count).map { Float(cos(Double($0) * 1.3)) }
        for range in [0..<count, 5..<(count - 3), 7..<23] {
            func forward(_ avx512: Bool) -> [Float] {
                var out = [Float](repeating: 0, count: count)
                out.withUnsafeMutableBufferPointer { CPUBackend.siluGated(range, gate, up, into: $0.baseAddress!, avx512: avx512) }
                return out
            }
            #expect(Self.same(forward(true), forward(false)), "forward over \(range)")
            func backward(_ avx512: Bool) -> [[Float]] {
                var (dGate, dUp) = ([Float](repeating: 0, count: count), [Float](repeating: 0, count: count))
                dGate.withUnsafeMutableBufferPointer { dg in
                    dUp.withUnsafeMutableBufferPointer { du in
                        CPUBackend.siluGatedBackward(range, gate: gate, up: up, g, dGate: dg.baseAddress!, dUp: du.baseAddress!, avx512: avx512)
                    }
                }
                return [dGate, dUp]
            }
            let (fast, swift) = (backward(true), backward(false))
            #expect(Self.same(fast[0], swift[0]) && Self.same(fast[1], swift[1]), "backward over \(range)")
        }
        // The unfused SiLU and its derivative, which the Swift loop's one sigmoid replaced: the same bits.
        var fused = [Float](repeating: 0, count: 2 * count)
        let ones = [Float](repeating: 1, count: count)
        fused.withUnsafeMutableBufferPointer {
            CPUBackend.siluGatedBackward(0..<count, gate: gate, up: ones, ones, dGate: $0.baseAddress!, dUp: $0.baseAddress! + count, avx512: false)
        }
        let (function, derivative) = (CPUBackend.function(.silu), CPUBackend.derivative(.silu))
        let lanes = { (f: (FloatVector) -> FloatVector) in gate.map { f(FloatVector(repeating: $0))[0] } }
        #expect(Self.same(Array(fused[..<count]), lanes(derivative)) && Self.same(Array(fused[count...]), lanes(function)))
    }

    /// `sumOfExponentials` (its sum and each exponential) and the cross-entropy's softmax gradient.
    @Test func exponentialsAndTheirSums() throws {
        try Self.requireAVX512()
        let logits = Self.values
        for count in [logits.count, logits.count - 5, 17, 16, 1] {
            for shift: Float in [0, 3.5, 90] {
                func run(_ avx512: Bool) -> (sum: Double, exponentials: [Float], gradient: [Float]) {
                    var exponentials = [Float](repeating: 0, count: count), gradient = exponentials
                    let sum = exponentials.withUnsafeMutableBufferPointer {
                        VectorMath.sumOfExponentials(logits, count: count, minus: shift, into: $0.baseAddress!, avx512: avx512)
                    }
                    gradient.withUnsafeMutableBufferPointer {
                        CPUBackend.softmaxGradient(logits, count: count, logsumexp: shift, .column(count / 2), factor: 0.25, into: $0.baseAddress!, avx512: avx512)
                    }
                    return (sum, exponentials, gradient)
                }
                let (fast, swift) = (run(true), run(false))
                #expect(fast.sum.bitPattern == swift.sum.bitPattern, "Σ exp of \(count) minus \(shift)")
                #expect(Self.same(fast.exponentials, swift.exponentials), "exponentials of \(count) minus \(shift)")
                #expect(Self.same(fast.gradient, swift.gradient), "softmax gradient of \(count) minus \(shift)")
            }
        }
    }
}
