import LowRankCore

/// The encoder scratch of ops run again and again on the same shapes (`VulkanBackend.run(repeating:_:)`:
/// a plan's runs, an optimizer's steps): the n-th scratch tensor a repeat asks for is the n-th of the
/// repeat before when its shape and dtype are the same, so that after the first a repeat allocates no
/// scratch and binds the same buffers. Kept until its owner releases it; repeats in flight together
/// share it, ordered by the stream's barriers.
final class RepeatScratch {
    private var tensors: [Tensor] = []
    private var next = 0

    /// The tensors kept, in request order.
    var kept: [Tensor] { tensors }

    /// Starts a repeat: requests are served from the first tensor again.
    func rewind() { next = 0 }

    /// The next scratch tensor, of `shape` and `dtype`: the repeat before's, or one `make` makes.
    func tensor(_ shape: Shape, _ dtype: DType, make: () throws -> Tensor) rethrows -> Tensor {
        defer { next += 1 }
        if next < tensors.count, tensors[next].shape == shape, tensors[next].dtype == dtype { return tensors[next] }
        let made = try make()
        if next < tensors.count { tensors[next] = made } else { tensors.append(made) }
        return made
    }
}
