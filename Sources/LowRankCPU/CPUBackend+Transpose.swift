import LowRankCore

extension CPUBackend {
    /// Each output element read from its place in the input (`Shaders/transpose.comp` is the twin).
    func transpose(_ axes: [Int], _ x: Tensor, _ out: Tensor) throws {
        let layout = TransposeLayout(inputShape: x.shape, axes: axes)
        withFloats(x) { a in
            producing(out) { c in
                parallelFor(out.shape.count) { r in
                    for i in r { c[i] = a[layout.source(i)] }
                }
            }
        }
    }
}
