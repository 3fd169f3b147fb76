import CLowRank
import LowRank
import LowRankModels

@c public func lowrank_model_gradient_count(_ model: UInt64, _ count: UnsafeMutablePointer<Int64>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(count, "count")
        out.pointee = Int64(try HandleTable.model(model).withState { try $0.currentTraining().gradientCount })
    }
}

@c public func lowrank_model_gradients(_ model: UInt64, _ values: UnsafeMutablePointer<Float>?, _ count: Int64,
                                       _ tokens: UnsafeMutablePointer<Double>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(values, "values"), tokensOut = try ABI.required(tokens, "tokens")
        let (gradients, weight) = try HandleTable.model(model).withState { state in
            let training = try state.currentTraining()
            try ABI.checkGradientCount(count, training)
            return try training.pendingGradients()
        }
        _ = UnsafeMutableBufferPointer(start: out, count: gradients.count).initialize(from: gradients)
        tokensOut.pointee = Double(weight)
    }
}

@c public func lowrank_model_set_gradients(_ model: UInt64, _ values: UnsafePointer<Float>?, _ count: Int64, _ tokens: Double) -> Int32 {
    ABI.call {
        let input = try ABI.required(values, "values")
        guard tokens.isFinite, tokens >= 0, tokens <= Double(Int64(1) << 53), tokens.rounded() == tokens else {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "tokens must be a whole number of predicted tokens, not negative, got \(tokens)")
        }
        try HandleTable.model(model).withState { state in
            let training = try state.currentTraining()
            try ABI.checkGradientCount(count, training)
            try training.setPendingGradients(Array(UnsafeBufferPointer(start: input, count: Int(count))), tokens: Int(tokens))
        }
    }
}

extension ABI {
    /// The caller's count against the fused gradient vector's length, before any memory is touched.
    static func checkGradientCount(_ count: Int64, _ training: AdapterTraining) throws {
        guard count == Int64(training.gradientCount) else {
            throw ABIError(LOWRANK_SHAPE_MISMATCH, "the adapter's gradient vector has \(training.gradientCount) values, count is \(count)")
        }
    }
}
