import Dispatch
import Glibc
import LowRank
import Synchronization
import Testing

/// The CPU backend's f32 products run OpenBLAS single-threaded and split C's longer side over the
/// backend's own threads (`CPUBackend.sgemm`): every layout, with alpha and accumulation, on thread
/// counts that split rows, columns and uneven parts, stays within f32 summation error of float64.
@Suite("CPU sgemm split over threads")
struct CPUSgemmSplitTests {
    @Test func splitProductsMatchFloat64() throws {
        // (M, N, K): rows split (M ≥ N), columns split, and one too small to split.
        let shapes = [(301, 130, 203), (70, 517, 151), (5, 7, 9)]
        for threads in [1, 3] {
            let backend = CPUBackend(threads: threads, matmulPrecision: .highest)
            for (i, (m, n, k)) in shapes.enumerated() {
                for (transposeA, transposeB) in [(false, false), (false, true), (true, false), (true, true)] {
                    let a = randomValues(m * k, seed: UInt64(i * 7 + 1)), b = randomValues(k * n, seed: UInt64(i * 7 + 2))
                    let c0 = randomValues(m * n, seed: UInt64(i * 7 + 3))
                    let c = try Tensor(c0, shape: [m, n], on: backend)
                    try Ops.matmul(try Tensor(a, shape: transposeA ? [k, m] : [m, k], on: backend),
                                   try Tensor(b, shape: transposeB ? [n, k] : [k, n], on: backend),
                                   transposeA: transposeA, transposeB: transposeB, alpha: 0.75, accumulatingInto: c)
                    let got = try c.floats()
                    var worst = 0.0
                    for row in 0..<m {
                        for column in 0..<n {
                            var (sum, magnitude) = (0.0, 0.0)
                            for p in 0..<k {
                                let product = Double(transposeA ? a[p * m + row] : a[row * k + p]) * Double(transposeB ? b[column * k + p] : b[p * n + column])
                                sum += product
                                magnitude += abs(product)
                            }
                            let prior = Double(c0[row * n + column])
                            let bound = Double(k + 2) * 0x1p-24 * (0.75 * magnitude + abs(prior))
                            worst = max(worst, abs(Double(got[row * n + column]) - (prior + 0.75 * sum)) / bound)
                        }
                    }
                    #expect(worst <= 1, "\(m)x\(n)x\(k) transposeA=\(transposeA) transposeB=\(transposeB) on \(threads) threads: \(worst) of the bound")
                }
            }
        }
    }
}

/// Adapter initialisation widens OpenBLAS to every core for its call (`OpenBLASThreads.allCores`).
/// Two calls on two threads, the first leaving while the second is still inside: the second still
/// runs widened, and OpenBLAS is back at one thread once both have left.
@Suite("OpenBLAS widened for overlapping calls")
struct OpenBLASThreadsTests {
    @Test func overlappingCallsRestoreOneThread() {
        _ = CPUBackend(threads: 2)
        #expect(OpenBLASThreads.current == 1)
        let (firstIn, secondIn, firstOut, done) = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0), DispatchSemaphore(value: 0), DispatchGroup())
        let seen = Mutex<(first: Int, second: Int)>((0, 0))
        DispatchQueue.global().async(group: done) {
            OpenBLASThreads.allCores {
                seen.withLock { $0.first = OpenBLASThreads.current }
                firstIn.signal()
                secondIn.wait()
            }
            firstOut.signal()
        }
        DispatchQueue.global().async(group: done) {
            firstIn.wait()
            OpenBLASThreads.allCores {
                secondIn.signal()
                firstOut.wait()
                seen.withLock { $0.second = OpenBLASThreads.current }
            }
        }
        done.wait()
        let (first, second) = seen.withLock { $0 }
        // OpenBLAS caps the count at the threads it was built for: both calls see the same widened count.
        #expect(first == second)
        #expect(sysconf(Int32(_SC_NPROCESSORS_ONLN)) == 1 || second > 1)
        #expect(OpenBLASThreads.current == 1)
    }
}
