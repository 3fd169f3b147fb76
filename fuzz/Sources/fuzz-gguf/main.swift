import FuzzSupport
import LowRank
import LowRankModels

// A GGUF file as the model source reads it: header, metadata and tensor infos; every tensor the
// reader accepts is read and converted; the llama.* keys as a configuration; the tokenizer metadata.
fuzz { bytes in
    let file = try GGUFFile(bytes: Array(bytes), path: "fuzz.gguf")
    for t in file.tensors where t.type.dtype != nil {
        let values = try file.floats(t.name)
        require(values.count == t.elementCount, "\(t.name): \(values.count) values for dims \(t.dims)")
    }
    _ = try? GGUFCheckpoint.textFormat(of: file)
    let config = try GGUFCheckpoint.config(of: file)
    require(config.expectedTensors.allSatisfy { $0.shape.checkedCount != nil }, "a tensor of \(config) has no size")
}
