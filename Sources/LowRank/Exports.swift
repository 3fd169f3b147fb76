@_exported import LowRankCore
@_exported import LowRankCPU
@_exported import LowRankVulkan
