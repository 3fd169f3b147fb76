import ArgumentParser
import LowRank

/// `--quantize`: the block-quantized dtypes a model's projections load as. Their names are
/// `DType`'s; `CommandLineArgumentTests` checks that `--help` lists every `DType` the engine quantizes into.
enum Quantization: String, CaseIterable, ExpressibleByArgument {
    case nf4
    case nf4DoubleQuant = "nf4_dq"
    case q8_0, q4_0

    var dtype: DType {
        switch self {
        case .nf4: .nf4
        case .nf4DoubleQuant: .nf4DoubleQuant
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        }
    }
}

extension LearningRateSchedule.Kind: ExpressibleByArgument {}
