/// PyTorch's f32 sum of a contiguous tensor on the CPU (`cascade_sum` in ATen's SumKernel.cpp),
/// in its order of additions, so a mean it takes can be reproduced bit for bit. Vectors of 8 lanes
/// (its AVX2 width; for fewer than 8 values, single ones) are read as rows of 4 (instruction-level
/// parallelism); each of the 4 × 8 accumulators is a cascade of 4 levels, each level taking the one
/// below every 2^levelPower rows, so rounding errors grow with the log of the length. Its
/// multi-threaded split of more than 32768 values depends on the thread count and is not modelled:
/// this is the one-thread order. `Shaders/quantize.comp` (PASS 1) is the device's twin.
public enum TorchSum {
    static let lanes = 8, rowsPerStep = 4, levels = 4

    public static func sum(_ x: [Float]) -> Float {
        let width = x.count >= lanes ? lanes : 1
        let vectors = x.count / width, steps = vectors / rowsPerStep
        // partial[k][lane]: the cascade over rows k, k + 4, k + 8, … of the vectors.
        var partial = [[Float]](repeating: [Float](repeating: 0, count: width), count: rowsPerStep)
        for k in 0..<rowsPerStep {
            for lane in 0..<width {
                partial[k][lane] = cascade(steps: steps) { x[($0 * rowsPerStep + k) * width + lane] }
            }
        }
        for v in (steps * rowsPerStep)..<vectors {
            for lane in 0..<width { partial[0][lane] += x[v * width + lane] }
        }
        for k in 1..<rowsPerStep {
            for lane in 0..<width { partial[0][lane] += partial[k][lane] }
        }
        var total: Float = 0
        for i in (vectors * width)..<x.count { total += x[i] }
        for lane in 0..<width { total += partial[0][lane] }
        return total
    }

    /// One accumulator's cascade over `steps` values: `multi_row_sum` for one row and lane.
    static func cascade(steps: Int, _ value: (Int) -> Float) -> Float {
        let power = levelPower(steps), step = 1 << power, mask = step - 1
        var acc = [Float](repeating: 0, count: levels)
        var i = 0
        while i + step <= steps {
            for _ in 0..<step {
                acc[0] += value(i)
                i += 1
            }
            for j in 1..<levels {
                acc[j] += acc[j - 1]
                acc[j - 1] = 0
                if i & (mask << (j * power)) != 0 { break }
            }
        }
        while i < steps {
            acc[0] += value(i)
            i += 1
        }
        for j in 1..<levels { acc[0] += acc[j] }
        return acc[0]
    }

    /// `max(4, CeilLog2(steps) / levels)`, with c10's CeilLog2 (1 for 2 or fewer).
    static func levelPower(_ steps: Int) -> Int {
        let ceilLog2 = steps <= 2 ? 1 : Int.bitWidth - (steps - 1).leadingZeroBitCount
        return max(4, ceilLog2 / levels)
    }
}
