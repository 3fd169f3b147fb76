import COpenBLAS
import LowRankCore

extension LoRAAdapter {
    /// LoftQ (PEFT's `init_lora_weights="loftq"` with `LoftQConfig(loftq_bits=4, loftq_iter:
    /// iterations)`): alternately quantizes to NF4 (bitsandbytes' blocks of 64, no double
    /// quantization) what the adapter leaves of W, and fits the adapter to what that quantization
    /// leaves by a rank-r SVD (float64 here): `B = U_r·√S_r`, `A = √S_r·V_rᵀ` (not divided by the
    /// scale: PEFT does not). Returns the adapter and the values whose NF4 quantization is the base
    /// it pairs with (`original` itself after one iteration, so the base is then the plain NF4 model).
    public static func loftq(original: [Float], outFeatures dOut: Int, config: LoRAConfig, iterations: Int,
                             on backend: any Backend) throws -> (adapter: LoRAAdapter, quantizedFrom: [Float]) {
        let (dIn, r) = (dOut > 0 ? original.count / dOut : 0, config.rank)
        guard dOut > 0, dIn > 0, dOut * dIn == original.count else {
            throw LowRankError(.shapeMismatch, "LoftQ needs a [d_out, d_in] weight, got \(original.count) values for d_out \(dOut)")
        }
        guard r >= 1, r <= min(dOut, dIn) else {
            throw LowRankError(.invalidArgument, "LoftQ's rank must be in 1...min(d_out, d_in) = \(min(dOut, dIn)), got \(r)")
        }
        guard iterations >= 1 else { throw LowRankError(.invalidArgument, "LoftQ needs at least one iteration, got \(iterations)") }
        let w = original.map(Double.init)
        var quantizedFrom = original
        var factors: (a: [Float], b: [Float]) = ([], [])
        let nf4 = Quantizer(QuantizedLayout(.nf4, elements: original.count))
        var packed = [UInt8](repeating: 0, count: nf4.layout.byteCount), dequantized = [Float](repeating: 0, count: original.count)
        for iteration in 1...iterations {
            packed.withUnsafeMutableBytes { nf4.quantize(quantizedFrom, into: $0.baseAddress!) }
            packed.withUnsafeBytes { bytes in dequantized.withUnsafeMutableBufferPointer { nf4.dequantize(bytes.baseAddress!, 0..<original.count, into: $0.baseAddress!) } }
            let svd = try SingularValueDecomposition(zip(w, dequantized).map { $0 - Double($1) }, rows: dOut, columns: dIn)
            let root: [Double] = svd.s.prefix(r).map { $0.squareRoot() }
            let a: [Float] = (0..<r * dIn).map { Float(root[$0 / dIn] * svd.vt[$0]) }
            let b: [Float] = (0..<dOut * r).map { Float(svd.u[($0 / r) * svd.k + $0 % r] * root[$0 % r]) }
            factors = (a, b)
            guard iteration < iterations else { break }
            var next = w
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(dOut), Int32(dIn), Int32(r), -1,
                        factors.b.map(Double.init), Int32(r), factors.a.map(Double.init), Int32(dIn), 1, &next, Int32(dIn))
            quantizedFrom = next.map(Float.init)
        }
        let adapter = try LoRAAdapter(config: config, a: try Tensor(factors.a, shape: [r, dIn], on: backend),
                                      b: try Tensor(factors.b, shape: [dOut, r], on: backend))
        return (adapter, quantizedFrom)
    }
}
