import ArgumentParser
import LowRank

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a matmul (x·Wᵀ + b) on every backend and check it against a float64 reference.")

    @Option(help: "Rows of x.") var m = 128
    @Option(help: "Columns of x (d_in).") var k = 256
    @Option(help: "Rows of W (d_out).") var n = 192
    @Flag(help: "Enable Vulkan validation (also LOWRANK_VALIDATION=1).") var validation = false

    func run() throws {
        let validate = validation || Engine.validationFromEnvironment
        let (devices, problem) = Engine.devices(validation: validate)
        if let problem { print("vulkan: skipped (\(problem))") }
        let x = pseudoRandom(m * k, seed: 1), w = pseudoRandom(n * k, seed: 2), b = pseudoRandom(n, seed: 3)
        var reference = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = Double(b[j])
                for p in 0..<k { s += Double(x[i * k + p]) * Double(w[j * k + p]) }
                reference[i * n + j] = s
            }
        }
        let maxRef = reference.map(abs).max() ?? 1
        var failed = false
        for d in devices {
            let backend = try Engine.backend(try DeviceRequest(parsing: d.identifier), validation: validate)
            let y = try Ops.matmul(try Tensor(x, shape: [m, k], on: backend), try Tensor(w, shape: [n, k], on: backend),
                                   transposeB: true, bias: try Tensor(b, shape: [n], on: backend))
            let got = try y.floats()
            let error = zip(got, reference).map { abs(Double($0) - $1) }.max()! / maxRef
            let ok = error <= 1e-5
            failed = failed || !ok
            print("\(d.identifier): \(d.name): matmul \(m)x\(k) · (\(n)x\(k))ᵀ + b: max|err|/max|ref| = \(error) \(ok ? "ok" : "FAILED (bound 1e-5)")")
            let messages = try backend.drainValidationMessages()
            if !messages.isEmpty {
                failed = true
                print("  validation messages:\n    " + messages.joined(separator: "\n    "))
            }
        }
        if failed { throw ExitCode.failure }
    }

    private func pseudoRandom(_ count: Int, seed: UInt32) -> [Float] {
        (0..<count).map { i in Float(DropoutMask.hash(seed &* 0x9E37_79B9 &+ UInt32(i)) >> 8) / Float(1 << 24) * 2 - 1 }
    }
}
