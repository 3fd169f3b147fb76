@_exported import LowRankCore
