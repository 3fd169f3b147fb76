import LowRank
import LowRankBench

extension BenchContext {
    /// The three products of a linear layer's training step at the layer's shape (forward
    /// `x·Wᵀ`, `dx = G·W`, `dW = Gᵀ·x`), and the bias in the matmul's epilogue against a separate add.
    /// Where the device has cooperative matrices, each product again on the scalar kernel (variant
    /// `…, scalar path`): the two paths side by side, each record naming its kernel path and tile.
    func matmulSuite() throws -> [BenchRecord] {
        let (t, dIn, dOut) = (shape.t, shape.dIn, shape.dOut)
        let (x, w, bias, _, _, g) = try layer()
        let e = Double(dtype.byteSize)
        let flops = 2.0 * Double(t * dIn * dOut)
        let forwardBytes = e * Double(t * dIn + dOut * dIn + t * dOut)
        let products: [BenchCase] = [
            ("x·Wᵀ", "forward", flops, forwardBytes, { [try Ops.matmul(x, w, transposeB: true)] }),
            ("G·W", "dx", flops, e * Double(t * dOut + dOut * dIn + t * dIn), { [try Ops.matmul(g, w)] }),
            ("Gᵀ·x", "dW", flops, e * Double(t * dOut + t * dIn) + 4 * Double(dOut * dIn),
             { [try Ops.matmul(g, x, transposeA: true, outputDType: .f32)] }),
        ]
        var scalarPaths: [BenchCase] = []
        if let vulkan = backend as? VulkanBackend, (try? vulkan.coopmat.get()) != nil {
            scalarPaths = products.map { c in
                (c.op, c.variant + ", scalar path", c.flops, c.bytes, {
                    vulkan.cooperativeMatricesEnabled = false
                    defer { vulkan.cooperativeMatricesEnabled = true }
                    return try c.body()
                })
            }
        }
        return try measure("matmul", products + scalarPaths + [
            ("x·Wᵀ + b", "fused bias", flops, forwardBytes + e * Double(dOut), { [try Ops.matmul(x, w, transposeB: true, bias: bias)] }),
            ("x·Wᵀ + b", "matmul, then add", flops, forwardBytes + e * Double(dOut + 2 * t * dOut),
             { [try Ops.add(try Ops.matmul(x, w, transposeB: true), bias)] }),
        ])
    }
}
