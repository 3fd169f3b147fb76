import LowRank
import Testing

/// Tensors larger than one storage-buffer binding (`maxStorageBufferRange`, 128 MiB on lavapipe)
/// are bound as windows. Most of these tests lower the limit on a backend of their own so that
/// every split (rows, columns, the inner dimension, with dropout and the fused second product)
/// runs on small shapes; one crosses the device's real limit.
@Suite("tensors larger than one binding")
struct LargeTensorTests {
    /// Runs `body` on a Vulkan backend whose bindings cover at most `bytes`, with validation on.
    func withBindingLimit(_ bytes: Int, _ body: (any Backend) throws -> Void) throws {
        try onBackend(.vulkan) { backend in
            let limited = try (backend as! VulkanBackend).sibling(bindingLimit: bytes)
            try body(limited)
            try limited.synchronize()
        }
    }

    /// (M, N, K, transposeA, transposeB, limit): splits along M (and C's rows), along N (with the
    /// bias), and along K (accumulating into C).
    static let splits = [(700, 400, 200, false, true, 512 << 10), (50, 1000, 100, false, true, 256 << 10),
                         (60, 70, 1000, true, false, 128 << 10)]

    @Test func matmulSplitsIntoWindows() throws {
        try withBindingLimit(1 << 30) { _ in }  // cancels here when there is no Vulkan device
        for (i, (m, n, k, transposeA, transposeB, limit)) in Self.splits.enumerated() {
            try withBindingLimit(limit) { backend in
                let a = randomValues(m * k, seed: UInt64(40 + i)), b = randomValues(k * n, seed: UInt64(50 + i))
                let bias = randomValues(n, seed: UInt64(60 + i)), c0 = randomValues(m * n, seed: UInt64(70 + i))
                let ta = try Tensor(a, shape: transposeA ? [k, m] : [m, k], on: backend)
                let tb = try Tensor(b, shape: transposeB ? [n, k] : [k, n], on: backend)
                let c = try Ops.matmul(ta, tb, transposeA: transposeA, transposeB: transposeB,
                                       bias: try Tensor(bias, shape: [n], on: backend), alpha: 0.5)
                let reference = referenceMatmul(a, b, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                                alpha: 0.5, bias: bias)
                #expect(relativeError(try c.floats(), reference) <= 1e-5, "\(m)x\(n)x\(k) under \(limit) bytes")

                let accumulator = try Tensor(c0, shape: [m, n], on: backend)
                try Ops.matmul(ta, tb, transposeA: transposeA, transposeB: transposeB, alpha: -1, accumulatingInto: accumulator)
                let product = referenceMatmul(a, b, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, alpha: -1)
                #expect(relativeError(try accumulator.floats(), zip(product, c0).map { $0 + Double($1) }) <= 1e-5)
            }
        }
    }

    /// LoRA forward and backward with dropout, every operand of T rows split, against the CPU
    /// backend: the dropout mask must not depend on the split.
    @Test func loraSplitsIntoWindows() throws {
        let (t, dIn, dOut, r) = (600, 100, 120, 8)
        let values = [randomValues(t * dIn, seed: 1), randomValues(dOut * dIn, seed: 2), randomValues(r * dIn, seed: 3),
                      randomValues(dOut * r, seed: 4), randomValues(t * dOut, seed: 5)]
        let shapes: [Shape] = [[t, dIn], [dOut, dIn], [r, dIn], [dOut, r], [t, dOut]]
        let options = LoRAOptions(scale: 2, dropout: 0.2, seed: 77)
        func run(_ backend: any Backend) throws -> [[Float]] {
            let ts = try zip(values, shapes).map { try Tensor($0, shape: $1, on: backend) }
            let (y, u) = try Ops.loraForward(x: ts[0], weight: ts[1], a: ts[2], b: ts[3], options: options)
            let (dx, dA, dB) = try Ops.loraBackward(gradOutput: ts[4], x: ts[0], weight: ts[1], a: ts[2], b: ts[3], u: u, options: options)
            return try [y, u, dx, dA, dB].map { try $0.floats() }
        }
        let reference = try run(try BackendKind.cpu.open())
        try withBindingLimit(128 << 10) { backend in
            for (name, (got, expected)) in zip(["y", "u", "dx", "dA", "dB"], zip(try run(backend), reference)) {
                #expect(relativeError(got, expected.map(Double.init)) <= 1e-5, "\(name)")
            }
        }
    }

    /// DoRA forward and backward, with dropout and a trainable magnitude, G and inner read in
    /// windows of rows (dB and dm gathered across windows), and with a frozen magnitude, against
    /// the CPU backend.
    @Test(arguments: [true, false])
    func doraSplitsIntoWindows(trainableMagnitude: Bool) throws {
        let (t, dIn, dOut, r) = (600, 100, 120, 8)
        let values = [randomValues(t * dIn, seed: 11), randomValues(dOut * dIn, seed: 12), randomValues(r * dIn, seed: 13),
                      randomValues(dOut * r, seed: 14), randomValues(dOut, seed: 15).map { 1 + $0 }, randomValues(t * dOut, seed: 16)]
        let shapes: [Shape] = [[t, dIn], [dOut, dIn], [r, dIn], [dOut, r], [dOut], [t, dOut]]
        let options = DoRAOptions(lora: LoRAOptions(scale: 2, dropout: 0.2, seed: 78), trainableMagnitude: trainableMagnitude)
        func run(_ backend: any Backend) throws -> [[Float]] {
            let ts = try zip(values, shapes).map { try Tensor($0, shape: $1, on: backend) }
            let forward = try Ops.doraForward(x: ts[0], weight: ts[1], bias: nil, a: ts[2], b: ts[3], magnitude: ts[4],
                                              weightNormSquared: try Ops.rowSumOfSquares(ts[1]), options: options)
            let (dx, dA, dB, dm) = try Ops.doraBackward(gradOutput: ts[5], x: ts[0], weight: ts[1], a: ts[2], b: ts[3],
                                                        forward: forward, options: options)
            return try ([forward.y, dx, dA, dB] + (dm.map { [$0] } ?? [])).map { try $0.floats() }
        }
        let reference = try run(try BackendKind.cpu.open())
        try withBindingLimit(128 << 10) { backend in
            let results = try run(backend)
            #expect(results.count == reference.count)
            for (name, (got, expected)) in zip(["y", "dx", "dA", "dB", "dm"], zip(results, reference)) {
                #expect(relativeError(got, expected.map(Double.init)) <= 1e-5, "\(name)")
            }
        }
    }

    /// Ops over whole rows split into windows of rows: scale_rows (in place too), dora_compose and a
    /// product with one row broadcast over all.
    @Test func rowWiseOpsSplitIntoWindows() throws {
        let (rows, columns) = (700, 300)
        let a = randomValues(rows * columns, seed: 80), lora = randomValues(rows * columns, seed: 81)
        let factors = randomValues(rows, seed: 82), g = randomValues(columns, seed: 83).map { 1 + $0 / 4 }
        func run(_ backend: any Backend) throws -> [[Float]] {
            let ta = try Tensor(a, shape: [rows, columns], on: backend), tf = try Tensor(factors, shape: [rows], on: backend)
            let composed = try Ops.doraCompose(base: ta, lora: try Tensor(lora, shape: [rows, columns], on: backend),
                                               g: try Tensor(g, shape: [columns], on: backend), scale: 1.5)
            let scaled = try Ops.scaleRows(ta, by: tf)
            let broadcast = try Ops.mul(ta, try Tensor(g, shape: [columns], on: backend))
            try Ops.scaleRows(inPlace: ta, by: tf)
            return try [composed, scaled, broadcast, ta].map { try $0.floats() }
        }
        let reference = try run(try BackendKind.cpu.open())
        try withBindingLimit(256 << 10) { backend in
            for (name, (got, expected)) in zip(["dora_compose", "scale_rows", "broadcast mul", "scale_rows in place"], zip(try run(backend), reference)) {
                #expect(relativeError(got, expected.map(Double.init)) <= 1e-6, "\(name)")
            }
        }
    }

    /// Past the device's own limit: elementwise ops and row reductions over a tensor of more
    /// than `maxStorageBufferRange` bytes.
    @Test func elementwiseBeyondTheDeviceLimit() throws {
        try onBackend(.vulkan) { backend in
            let range = (backend as! VulkanBackend).info.limits.maxStorageBufferRange
            let columns = 1024, rows = range / (columns * 4) + 300
            let count = rows * columns
            let a = [Float](unsafeUninitializedCapacity: count) { p, n in
                for i in 0..<count { p[i] = Float(i % 4093) }
                n = count
            }
            let ta = try Tensor(a, shape: [rows, columns], on: backend)
            #expect(ta.byteCount > range)
            let doubled = try Ops.add(ta, ta).floats()
            var wrong = 0
            for i in 0..<count where doubled[i] != 2 * a[i] { wrong += 1 }
            #expect(wrong == 0)
            let sums = try Ops.rowSumOfSquares(ta).floats()
            for row in [0, rows / 2, rows - 1] {
                let reference = (0..<columns).reduce(0.0) { $0 + Double(a[row * columns + $1]) * Double(a[row * columns + $1]) }
                #expect(abs(Double(sums[row]) - reference) <= 1e-5 * reference, "row \(row)")
            }
        }
    }

    /// A tensor no memory can hold is an error on every backend, never a trap: an embedding
    /// process (a Python interpreter through the C ABI) must survive a shape far too large.
    @Test(arguments: BackendKind.allCases)
    func impossibleAllocationsAreErrors(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            #expect { try backend.makeStorage(byteCount: 1 << 60) } throws: { ($0 as? LowRankError)?.kind == .outOfMemory }
        }
    }
}
