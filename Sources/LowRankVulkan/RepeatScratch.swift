import LowRankCore

/// The encoder scratch of ops run again and again on the same shapes (`VulkanBackend.run(repeating:_:)`:
/// a plan's runs, an optimizer's steps). An op's scratch is dead once the op is encoded, so each op
/// takes, for each request, a kept tensor of that shape and dtype that no earlier request of the same
/// op took, made when there is none: the scratch kept is the most any one op asks for of each shape
/// (the LoRA backward's `[T, r]` partial sums are one tensor for every projection of that rank), and
/// from the second repeat on nothing is allocated and the same buffers are bound. The stream's barriers
/// order the ops (and repeats in flight together) that share a tensor. Kept until its owner releases it.
final class RepeatScratch {
    private var tensors: [Tensor] = []
    private var taken = Set<Int>()

    /// The tensors kept.
    var kept: [Tensor] { tensors }

    /// Starts an op: every kept tensor is free to it.
    func opBegins() { taken.removeAll(keepingCapacity: true) }

    /// A tensor of `shape` and `dtype` that the op has not taken yet: a kept one, or one `make` makes.
    func tensor(_ shape: Shape, _ dtype: DType, make: () throws -> Tensor) rethrows -> Tensor {
        if let i = tensors.indices.first(where: { !taken.contains($0) && tensors[$0].shape == shape && tensors[$0].dtype == dtype }) {
            taken.insert(i)
            return tensors[i]
        }
        taken.insert(tensors.count)
        tensors.append(try make())
        return tensors[tensors.count - 1]
    }
}
