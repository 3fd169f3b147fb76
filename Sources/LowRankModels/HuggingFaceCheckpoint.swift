import Glibc
import LowRank

/// A Hugging Face model folder: `config.json` and the weights, in one `model.safetensors` or in
/// shards listed by `model.safetensors.index.json`. Opening it checks every tensor the config
/// implies (present, shaped as the config says, a float dtype), naming the file and tensor of
/// the first that is not, before anything is copied to a device.
public struct HuggingFaceCheckpoint: ModelSource {
    public let folder: String
    public let config: LlamaConfig
    /// Each weight file's name (inside `folder`) and contents.
    public let files: [(name: String, file: SafetensorsFile)]
    /// The file each tensor is in.
    let location: [String: Int]

    public static let indexName = "model.safetensors.index.json"

    public init(folder: String) throws {
        self.folder = folder
        let configPath = folder + "/config.json"
        guard FileIO.exists(configPath) else {
            throw LowRankError(.io, "no config.json: this is not a Hugging Face model folder", context: [("file", configPath)])
        }
        config = try LlamaConfig(contentsOf: configPath)

        let names: [String]
        var shardOf: [String: String] = [:]
        let indexPath = folder + "/" + Self.indexName
        if FileIO.exists(indexPath) {
            let map = try JSON.read(indexPath, what: "the shard index")["weight_map"]?.object ?? [:]
            shardOf = map.compactMapValues(\.string)
            guard !map.isEmpty, shardOf.count == map.count else {
                throw LowRankError(.fileFormat, "weight_map is missing or maps a tensor to something other than a file name", context: [("file", indexPath)])
            }
            names = Set(shardOf.values).sorted()
        } else if FileIO.exists(folder + "/model.safetensors") {
            names = ["model.safetensors"]
        } else {
            throw LowRankError(.io, "no model.safetensors and no \(Self.indexName) (only safetensors weights are read)", context: [("folder", folder)])
        }
        var files: [(String, SafetensorsFile)] = [], location: [String: Int] = [:]
        for name in names {
            guard !name.isEmpty, name != ".", name != "..", !name.contains("/") else {
                throw LowRankError(.fileFormat, "shard \"\(name)\" is not a file name inside the folder", context: [("file", indexPath)])
            }
            let file = try SafetensorsFile(path: folder + "/" + name)
            for tensor in file.names {
                // A tensor in two shards would load from whichever came last: refuse it instead.
                if let other = location[tensor] {
                    throw LowRankError(.fileFormat, "tensor \(tensor) is in both \(files[other].0) and \(name)",
                                       context: [("folder", folder), ("tensor", tensor)])
                }
                location[tensor] = files.count
            }
            files.append((name, file))
        }
        for (tensor, shard) in shardOf where location[tensor].map({ files[$0].0 }) != shard {
            throw LowRankError(.fileFormat, "the index puts tensor \(tensor) in \(shard), which does not hold it",
                               context: [("file", indexPath), ("tensor", tensor)])
        }
        self.files = files
        self.location = location
        try checkTensors()
    }

    /// The dtype each matrix loads as: `override` when given, else the checkpoint's own (from its headers).
    public func matrixDType(_ override: DType?) -> @Sendable (String) throws -> DType {
        { name in try override ?? file(containing: name).entry(name).dtype }
    }

    public func file(containing name: String) throws -> SafetensorsFile {
        guard let i = location[name] else {
            throw LowRankError(.fileFormat, "the checkpoint has no tensor \(name)", context: [("folder", folder), ("tensor", name)])
        }
        return files[i].file
    }

    /// Tensor `name` widened to f32 (as `dtype` when given, e.g. quantized) on `backend`.
    public func tensor(_ name: String, as dtype: DType = .f32, on backend: any Backend) throws -> Tensor {
        try file(containing: name).tensor(name, as: dtype, on: backend)
    }

    public var name: String { folder }

    /// The folder's `tokenizer.json` and chat template (see `TextFormat(modelDirectory:)`).
    public func textFormat(trainOnPrompt: Bool) throws -> TextFormat? {
        try TextFormat(modelDirectory: folder, trainOnPrompt: trainOnPrompt)
    }
}
