import FuzzSupport
import LowRank
import LowRankModels

// Token ids in NumPy's .npy format.
fuzz { bytes in _ = try TokenDataset.parseNumPy(bytes, path: "fuzz.npy") }
