import ArgumentParser
import Foundation
import LowRank

extension MatmulPrecision: ExpressibleByArgument {}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check matmuls (x·Wᵀ + b, G·W, Gᵀ·x, C + Gᵀ·x in f32, f16 and bf16), or every golden case of a folder, against float64 references.",
        discussion: """
            Runs on every device (or the one --device names) and prints, per check, the kernel path that computed its \
            matmuls (cpu; on Vulkan `coopmat` or `scalar`, with the tile), the error and ok or FAILED; exits 1 on any failure.
            Matmul error: max |got − ref| / (Σ_k |a_ik·b_kj| + |bias_j| + |C_ij|), bound (K + 2)·2⁻²⁴ (f32 accumulation of exact
            products), plus 2⁻¹⁰ where f32 operands are rounded to f16 (coopmat with --precision high).
            Golden error: max |got − ref| / max |ref| per tensor, bound \(GoldenCase.bound); NF4 unpacking and quantization exact.
            """)

    @Option(help: "Rows of x and G.") var m = 128
    @Option(help: "Columns of x (d_in).") var k = 256
    @Option(help: "Rows of W (d_out).") var n = 192
    @Option(help: "Run every golden case (*.safetensors, the shared/golden layout) in this folder instead of the matmuls.")
    var golden: String?
    @Option(help: """
        highest (exact f32), high or medium (on Vulkan, f32 operands on cooperative matrices, and under medium the scalar kernel's \
        f32 tiles in bf16; on the CPU, medium rounds the \
        activations a bf16 frozen weight multiplies to bf16). Default: LOWRANK_MATMUL_PRECISION, else the backend's, but \
        highest on the CPU for --golden, whose bound is that of exact products.
        """)
    var precision: MatmulPrecision?
    @OptionGroup var options: DeviceOptions

    func run() throws {
        let validate = options.validationEnabled
        let (devices, problem) = Engine.devices(validation: validate)
        if let problem { print("vulkan: skipped (\(problem))") }
        let chosen = try options.device.map { try Engine.resolve(try DeviceRequest(parsing: $0), validation: validate) }
        let cases = try golden.map { try GoldenCase.cases(in: $0) }
        var failed = false
        for d in devices where chosen == nil || d.identifier == chosen {
            let backend = try Engine.backend(try DeviceRequest(parsing: d.identifier), validation: validate)
            let vulkan = backend as? VulkanBackend
            if let setting = precision ?? (vulkan == nil && cases != nil ? .highest : nil) { Engine.setMatmulPrecision(setting, on: backend) }
            print("\(d.identifier): \(d.name)" + (vulkan.map { v in
                ", cooperative matrices: " + ((try? v.coopmat.get()).map { "\($0)" } ?? "none (\(v.coopmat.failureDescription))")
                    + ", f32 matmul precision \(v.matmulPrecision.rawValue)"
            } ?? ", matmul precision \(Engine.matmulPrecision(of: backend)?.rawValue ?? "none")"))
            let ok = try cases.map { try checkGolden($0, on: backend) } ?? checkMatmuls(on: backend)
            failed = failed || !ok
            let messages = try backend.drainValidationMessages()
            if !messages.isEmpty {
                failed = true
                print("  validation messages:\n    " + messages.joined(separator: "\n    "))
            }
        }
        if failed { throw ExitCode.failure }
    }

    /// The three matmul forms the engine uses, each in every float dtype (operands and bias; f32 out).
    private func checkMatmuls(on backend: any Backend) throws -> Bool {
        // The third again accumulating, as weight-shaped gradients are summed over micro-batches.
        let forms: [(name: String, a: Shape, b: Shape, transposeA: Bool, transposeB: Bool, bias: Bool, accumulate: Bool)] = [
            ("x·Wᵀ + b", [m, k], [n, k], false, true, true, false),
            ("G·W", [m, n], [n, k], false, false, false, false),
            ("Gᵀ·x", [m, n], [m, k], true, false, false, false),
            ("C + Gᵀ·x", [m, n], [m, k], true, false, false, true),
        ]
        var ok = true
        for form in forms {
            for dtype in [DType.f32, .f16, .bf16] {
                let a = try Tensor(pseudoRandom(form.a.count, seed: 1), shape: form.a, dtype: dtype, on: backend)
                let b = try Tensor(pseudoRandom(form.b.count, seed: 2), shape: form.b, dtype: dtype, on: backend)
                let bias = form.bias ? try Tensor(pseudoRandom(form.b[0], seed: 3), shape: [form.b[0]], dtype: dtype, on: backend) : nil
                let start = form.accumulate ? try Tensor(pseudoRandom(form.a[1] * form.b[1], seed: 4), shape: [form.a[1], form.b[1]], on: backend) : nil
                let startValues = try start?.floats().map(Double.init)
                _ = drainPaths(backend)
                let c: Tensor
                if let start {
                    try Ops.matmul(a, b, transposeA: form.transposeA, transposeB: form.transposeB, accumulatingInto: start)
                    c = start
                } else {
                    c = try Ops.matmul(a, b, transposeA: form.transposeA, transposeB: form.transposeB, bias: bias, outputDType: .f32)
                }
                let got = try c.floats()
                let paths = drainPaths(backend)
                // The reference multiplies the stored (rounded) operands in float64.
                let (av, bv, biasv) = (try a.floats().map(Double.init), try b.floats().map(Double.init), try bias?.floats().map(Double.init))
                let (rows, columns, inner) = (c.shape[0], c.shape[1], form.transposeA ? form.a[0] : form.a[1])
                var worst = 0.0
                for i in 0..<rows {
                    for j in 0..<columns {
                        let added = (biasv?[j] ?? 0) + (startValues?[i * columns + j] ?? 0)
                        var sum = added, magnitude = abs(biasv?[j] ?? 0) + abs(startValues?[i * columns + j] ?? 0)
                        for p in 0..<inner {
                            let x = form.transposeA ? av[p * form.a[1] + i] : av[i * inner + p]
                            let y = form.transposeB ? bv[j * inner + p] : bv[p * columns + j]
                            sum += x * y
                            magnitude += abs(x * y)
                        }
                        let got = Double(got[i * columns + j])
                        worst = max(worst, got.isFinite ? abs(got - sum) / max(magnitude, .leastNormalMagnitude) : .infinity)
                    }
                }
                let roundsOperands = dtype == .f32 && paths.hasPrefix("coopmat")
                let bound = Double(inner + 2) * 0x1p-24 + (roundsOperands ? 0x1p-10 : 0)
                let pass = worst <= bound
                ok = ok && pass
                print("  \(form.name) \(dtype) [\(rows)×\(inner)·\(inner)×\(columns)]: \(paths): "
                    + "error \(format(worst)) (bound \(format(bound))) \(pass ? "ok" : "FAILED")")
            }
        }
        return ok
    }

    private func checkGolden(_ cases: [GoldenCase], on backend: any Backend) throws -> Bool {
        var ok = true
        for golden in cases {
            _ = drainPaths(backend)
            let outcome = try golden.run(on: backend)
            let paths = drainPaths(backend)
            ok = ok && outcome.passed
            print("  \(golden.name) (\(outcome.kind)): \(paths): error \(format(outcome.worstError)) "
                + "(bound \(format(GoldenCase.bound)))\(outcome.mismatches.map { ", " + $0 }.joined()) \(outcome.passed ? "ok" : "FAILED")")
            if !outcome.passed {
                print("    " + outcome.errors.map { "\($0.tensor) \(format($0.error))" }.joined(separator: ", "))
            }
        }
        return ok
    }

    /// The kernel paths of the matmuls run since the last call, with counts: `coopmat 64×64×16 in 8×8×8 ×2`.
    private func drainPaths(_ backend: any Backend) -> String {
        (backend as? VulkanBackend)?.drainMatmulPathSummary() ?? "cpu"
    }

    private func format(_ value: Double) -> String {
        String(format: "%.2e", value)
    }

    private func pseudoRandom(_ count: Int, seed: UInt32) -> [Float] {
        (0..<count).map { i in Float(DropoutMask.hash(seed &* 0x9E37_79B9 &+ UInt32(i)) >> 8) / Float(1 << 24) * 2 - 1 }
    }
}

extension Result where Failure: CustomStringConvertible {
    var failureDescription: String {
        if case .failure(let failure) = self { return failure.description }
        return ""
    }
}
