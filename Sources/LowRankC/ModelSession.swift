import CLowRank
import LowRank
import LowRankModels
import Synchronization

/// A model behind a handle: its adapter, how it trains, and the plans it has built. One lock
/// serialises the calls on it (ctypes releases the GIL, so Python threads can call at once).
final class ModelSession: Sendable {
    let engineHandle: UInt64
    let engine: EngineEntry
    /// The model file's tokenizer and chat template, read with its weights: nil for a model
    /// without one, an error when they are there but unreadable (the weights still train on ids).
    let text: Result<TokenizerSession?, LowRankError>
    private let state: Mutex<State>

    struct State {
        let model: LlamaModel
        var adapter: ModelAdapter?
        var settings = TrainingSettings()
        var totalSteps: Int?
        /// Made at the first step after the adapter or the settings change.
        var training: AdapterTraining?
        var evaluator: LossEvaluator?
        /// Its KV cache and plans are kept from one generation to the next.
        var generator: TextGenerator?

        /// The adapter, or the error a step or tensor access before one gets.
        func requireAdapter() throws -> ModelAdapter {
            guard let adapter else {
                throw ABIError(LOWRANK_STATE, "the model has no adapter: attach one with lowrank_model_add_adapter or lowrank_model_load_adapter first")
            }
            return adapter
        }

        /// The training under way, begun with the current settings if there is none.
        mutating func currentTraining() throws -> AdapterTraining {
            if let training { return training }
            let begun = try newTraining(of: try requireAdapter())
            training = begun
            return begun
        }

        /// A training of `adapter` from step 0 under the current settings.
        func newTraining(of adapter: ModelAdapter) throws -> AdapterTraining {
            try AdapterTraining(model: model, adapter: adapter, settings: settings, totalSteps: totalSteps)
        }

        mutating func attach(_ adapter: ModelAdapter) {
            self.adapter = adapter
            training = nil
            evaluator = nil
            generator = nil
        }
    }

    init(engineHandle: UInt64, engine: EngineEntry, model: sending LlamaModel, text: Result<TokenizerSession?, LowRankError> = .success(nil)) {
        self.engineHandle = engineHandle
        self.engine = engine
        self.text = text
        state = Mutex(State(model: model))
    }

    /// Runs `body` under the model's lock; on a validated engine, a validation message raised
    /// meanwhile fails the call.
    func withState<R>(_ body: (inout State) throws -> sending R) throws -> sending R {
        try state.withLock { (state: inout State) throws -> sending R in
            let result = try body(&state)
            try engine.checkValidation()
            return result
        }
    }
}

extension EngineEntry {
    func checkValidation() throws {
        guard validation else { return }
        let messages = try backend.drainValidationMessages()
        guard messages.isEmpty else {
            throw ABIError(LOWRANK_DEVICE_ERROR, "the Vulkan validation layer reported:\n" + messages.joined(separator: "\n"))
        }
    }
}
