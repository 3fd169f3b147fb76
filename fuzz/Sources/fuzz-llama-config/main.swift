import FuzzSupport
import LowRank
import LowRankModels

// config.json as LlamaConfig reads it; an accepted config must give the tensors it implies.
fuzz { bytes in
    let config = try LlamaConfig(json: try JSON.parse(raw: bytes), path: "config.json")
    require(config.expectedTensors.allSatisfy { $0.shape.checkedCount != nil }, "a tensor of \(config) has no size")
}
