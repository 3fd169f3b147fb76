import LowRank

/// The tensors an accumulated step's token-weighted sums live in, kept from step to step so that
/// a step allocates nothing: each micro-batch's gradients and loss are scaled by its predicted
/// tokens and added on the device (two ops, as `Ops.scale` and `Ops.add` would, so the sums are
/// those of the host's order), and its loss copied out of its plan's output, which the next run
/// overwrites. Nothing is read until the optimizer step.
final class MicroBatchSums {
    private let backend: any Backend
    /// The gradients' sums.
    private var sums: [Tensor] = []
    /// A micro-batch's weighted gradients before they are added.
    private var weighted: [Tensor] = []
    /// The weighted losses' sum, and a micro-batch's weighted loss before it is added.
    private var lossSum: Tensor?
    private var weightedLoss: Tensor?
    /// Micro-batch i's loss.
    private var losses: [Tensor] = []

    init(backend: any Backend) { self.backend = backend }

    /// Starts the sums with a step's first micro-batch: its gradients and loss weighted by
    /// `tokens`. Returns the gradient sums and the loss sum, which is not finite when a loss was not.
    func start(_ gradients: [Tensor], loss: Tensor, tokens: Int) throws -> (gradients: [Tensor], loss: Tensor) {
        if sums.count != gradients.count { sums = try gradients.map { try Tensor(empty: $0.shape, dtype: $0.dtype, on: backend) } }
        let sum = try lossTensors().sum
        try add(gradients, into: sums, through: nil, tokens: tokens)
        try add([loss], into: [sum], through: nil, tokens: tokens)
        return (sums, sum)
    }

    /// Adds a later micro-batch's gradients (to `gradients`, the sums so far) and its loss
    /// (to `lossSum`), weighted by `tokens`.
    func add(_ gradients: [Tensor], loss: Tensor, tokens: Int, to sums: [Tensor], lossSum: Tensor?) throws {
        if weighted.count != gradients.count { weighted = try gradients.map { try Tensor(empty: $0.shape, dtype: $0.dtype, on: backend) } }
        try add(gradients, into: sums, through: weighted, tokens: tokens)
        if let lossSum { try add([loss], into: [lossSum], through: [try lossTensors().weighted], tokens: tokens) }
    }

    /// `loss` copied into micro-batch `index`'s tensor, valid until the same micro-batch of the next step.
    func copy(loss: Tensor, microBatch index: Int) throws -> Tensor {
        while losses.count <= index { losses.append(try Tensor(empty: [1], dtype: .f32, on: backend)) }
        try backend.run(.scale(1), inputs: [loss], outputs: [losses[index]])
        return losses[index]
    }

    private func lossTensors() throws -> (sum: Tensor, weighted: Tensor) {
        if let lossSum, let weightedLoss { return (lossSum, weightedLoss) }
        let made = (try Tensor(empty: [1], dtype: .f32, on: backend), try Tensor(empty: [1], dtype: .f32, on: backend))
        (lossSum, weightedLoss) = made
        return made
    }

    /// `sums[i] + tokens · values[i]` into `sums[i]`, the product formed in `scratch[i]`; without
    /// scratch, `tokens · values[i]` (the first micro-batch).
    private func add(_ values: [Tensor], into sums: [Tensor], through scratch: [Tensor]?, tokens: Int) throws {
        for (i, (value, sum)) in zip(values, sums).enumerated() {
            guard let scratch else {
                try backend.run(.scale(Float(tokens)), inputs: [value], outputs: [sum])
                continue
            }
            try backend.run(.scale(Float(tokens)), inputs: [value], outputs: [scratch[i]])
            try backend.run(.add, inputs: [sum, scratch[i]], outputs: [sum])
        }
    }
}
