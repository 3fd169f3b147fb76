import LowRank
import Testing

/// The backends every op test runs on. Vulkan runs with the Khronos validation layer and its
/// synchronization validation; a test on a machine without a Vulkan device is cancelled with the
/// reason, never passed.
enum BackendKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case cpu, vulkan
    var testDescription: String { rawValue }

    /// The shared backend, or with `exact` on the CPU `exactCPU` (Vulkan's shared backend computes
    /// at `highest`, its default, unless `LOWRANK_MATMUL_PRECISION` says otherwise).
    func open(exact: Bool = false) throws -> any Backend {
        switch self {
        case .cpu:
            return exact ? exactCPU : try Engine.backend(.cpu)
        case .vulkan:
            do {
                return try Engine.backend(.vulkan(index: nil), validation: true)
            } catch {
                try Test.cancel("no Vulkan device with validation here: \(error)")
            }
        }
    }
}

/// A CPU backend whose products are exact f32 (`MatmulPrecision.highest`), for the tests of
/// exact properties: the shared one computes a bf16 weight's products in bfloat16 (`medium`, its default).
let exactCPU = CPUBackend(matmulPrecision: .highest)

/// Runs `body` on `kind`'s backend and then fails on any validation message it caused. `exact`
/// pins exact f32 products (`MatmulPrecision.highest`: on the CPU `exactCPU`).
func onBackend(_ kind: BackendKind, exact: Bool = false, _ body: (any Backend) throws -> Void) throws {
    let backend = try kind.open(exact: exact)
    try body(backend)
    try backend.synchronize()
    let messages = try backend.drainValidationMessages()
    #expect(messages.isEmpty, "validation messages:\n\(messages.joined(separator: "\n"))")
}

/// max|got − ref| / max|ref|: the error measure of every numeric test here (the golden cases' own).
func relativeError(_ got: [Float], _ reference: [Double]) -> Double { GoldenCase.relativeError(got, reference) }

/// Deterministic pseudo-random values in [-1, 1), rounded to `dtype` so references see what the device sees.
func randomValues(_ count: Int, seed: UInt64, dtype: DType = .f32, scale: Float = 1) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        let v = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        return rounded(v, to: dtype)
    }
}

func rounded(_ v: Float, to dtype: DType) -> Float {
    switch dtype {
    case .f16: Float(Float16(v))
    case .bf16: floatFromBF16(bf16Bits(v))
    default: v
    }
}

/// float64 reference of `C = alpha·op(A)·op(B) + bias`.
func referenceMatmul(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool,
                     alpha: Double = 1, bias: [Float]? = nil) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = transposeA ? a[p * m + i] : a[i * k + p]
                let bv = transposeB ? b[j * k + p] : b[p * n + j]
                s += Double(av) * Double(bv)
            }
            c[i * n + j] = alpha * s + (bias.map { Double($0[j]) } ?? 0)
        }
    }
    return c
}

extension Array {
    /// Consecutive slices of `size` elements (the last one shorter).
    func chunks(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}

/// Central differences of `loss` in each element of `values`: `(L(v₊) − L(v₋)) / (v₊ − v₋)` with
/// `v± = v ± h` rounded to `dtype`, divided by the step the rounded values really took. The
/// finite-difference check of every gradient test.
func centralDifferences(of values: [Float], step h: Float, dtype: DType = .f32, loss: ([Float]) throws -> Double) rethrows -> [Double] {
    try values.indices.map { i in
        var plus = values, minus = values
        plus[i] = rounded(values[i] + h, to: dtype)
        minus[i] = rounded(values[i] - h, to: dtype)
        return (try loss(plus) - loss(minus)) / (Double(plus[i]) - Double(minus[i]))
    }
}
