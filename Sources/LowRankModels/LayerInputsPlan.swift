import COpenBLAS
import LowRank

/// The linear layers' inputs for one batch shape, as the forward hooks of EVA and CorDA see them: the decoder
/// without an adapter, each distinct input (the GraphTensor several projections read) one output.
final class LayerInputsPlan {
    let plan: ExecutionPlan
    let ids: GraphTensor
    /// The modules that read each output, in model order.
    let readers: [[String]]

    init(model: LlamaModel, modules: Set<String>, rows: Int, sequence: Int) throws {
        let g = Graph(backend: model.backend)
        let t = rows * sequence
        ids = try g.input("input_ids", [t], dtype: .i32)
        let positions = try g.parameter("positions", try Tensor(ids: (0..<t).map { Int32($0 % sequence) }, on: model.backend))
        var inputs: [(tensor: GraphTensor, readers: [String])] = []
        _ = try g.causalLMDecoder(model: model, adapter: nil, ids: ids, positions: positions, sequence: sequence, training: false) { path, x in
            guard modules.contains(path) else { return }
            if let i = inputs.firstIndex(where: { $0.tensor == x }) { inputs[i].readers.append(path) } else { inputs.append((x, [path])) }
        }
        readers = inputs.map(\.readers)
        plan = try g.compile(outputs: inputs.map(\.tensor))
    }

    func run(_ batch: TokenBatch, on backend: any Backend) throws -> [[Float]] {
        try plan.run([ids: try Tensor(ids: batch.inputIDs, on: backend)]).map { try $0.floats() }
    }
}

extension LayerInputsPlan {
    /// CorDA's covariance of each of `modules`' inputs (PEFT's `calib_cov_distribution` with a
    /// `run_model` that forwards the rows one at a time): per row, the inputs X `[T, d]` divided by
    /// |max X| (its largest value's magnitude, as PEFT takes it), and XᵀX averaged over the rows.
    static func covariances(of modules: [String], model: LlamaModel, data: TokenDataset) throws -> [String: [Double]] {
        var plans: [Int: LayerInputsPlan] = [:]
        // One running sum per distinct input, shared by the projections that read it (q/k/v, gate/up).
        var sums: [String: (readers: [String], sum: [Double])] = [:]
        for row in data.rows {
            let plan = try plans[row.count] ?? LayerInputsPlan(model: model, modules: Set(modules), rows: 1, sequence: row.count)
            plans[row.count] = plan
            for (readers, x) in zip(plan.readers, try plan.run(TokenBatch([row]), on: model.backend)) {
                let d = x.count / row.count
                let largest = abs(x.max() ?? 0)
                guard largest > 0, largest.isFinite else {
                    throw LowRankError(.numerical, "CorDA divides each row's inputs by their largest value, which for \(readers[0]) is \(largest)")
                }
                let scaled = x.map { Double($0 / largest) }
                var entry = sums.removeValue(forKey: readers[0]) ?? (readers, [Double](repeating: 0, count: d * d))
                OpenBLASThreads.allCores {
                    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(d), Int32(row.count), 1, scaled, Int32(d), scaled, Int32(d), 1, &entry.sum, Int32(d))
                }
                sums[readers[0]] = entry
            }
        }
        var covariances: [String: [Double]] = [:]
        for (readers, sum) in sums.values {
            let mean = sum.map { $0 / Double(data.rows.count) }
            for path in readers { covariances[path] = mean }
        }
        return covariances
    }
}

extension TokenDataset {
    /// `data`, which the data-driven initialisation `method` cannot start without.
    static func required(_ data: TokenDataset?, by method: String) throws -> TokenDataset {
        guard let data else {
            throw LowRankError(.invalidArgument, "\(method) initialises the adapter from the training data, and none was given "
                               + "(lowrank train --init \(method.lowercased()) reads its --data; lowrank_model_add_adapter_with_data and Python's add_adapter(init_ids=...) take token rows)")
        }
        return data
    }
}
