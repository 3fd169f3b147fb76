import Glibc
import LowRank

/// A Hugging Face model folder: `config.json` and the weights, in one `model.safetensors` or in
/// shards listed by `model.safetensors.index.json`. Opening it checks every tensor the config
/// implies (present, shaped as the config says, a float dtype), naming the file and tensor of
/// the first that is not, before anything is copied to a device.
public struct HuggingFaceCheckpoint: Sendable {
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
        let indexPath = folder + "/" + Self.indexName
        if FileIO.exists(indexPath) {
            let map = try JSON.read(indexPath, what: "the shard index")["weight_map"]?.object ?? [:]
            let shards = map.values.compactMap(\.string)
            guard !map.isEmpty, shards.count == map.count else {
                throw LowRankError(.fileFormat, "weight_map is missing or maps a tensor to something other than a file name", context: [("file", indexPath)])
            }
            names = Set(shards).sorted()
        } else if FileIO.exists(folder + "/model.safetensors") {
            names = ["model.safetensors"]
        } else {
            throw LowRankError(.io, "no model.safetensors and no \(Self.indexName) (only safetensors weights are read)", context: [("folder", folder)])
        }
        var files: [(String, SafetensorsFile)] = [], location: [String: Int] = [:]
        for name in names {
            guard !name.contains("/") else { throw LowRankError(.fileFormat, "shard \(name) is outside the folder", context: [("file", indexPath)]) }
            let file = try SafetensorsFile(path: folder + "/" + name)
            for tensor in file.names { location[tensor] = files.count }
            files.append((name, file))
        }
        self.files = files
        self.location = location
        try checkTensors()
    }

    public func file(containing name: String) throws -> SafetensorsFile {
        guard let i = location[name] else {
            throw LowRankError(.fileFormat, "the checkpoint has no tensor \(name)", context: [("folder", folder), ("tensor", name)])
        }
        return files[i].file
    }

    /// Tensor `name` widened to f32 (as `dtype` when given, e.g. quantized) on `backend`.
    public func tensor(_ name: String, as dtype: DType = .f32, on backend: any Backend) throws -> Tensor {
        let file = try file(containing: name)
        let entry = try file.entry(name)
        return try Tensor(try file.floats(name), shape: entry.shape, dtype: dtype, on: backend)
    }
}
