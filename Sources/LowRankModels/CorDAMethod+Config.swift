import LowRank

extension CorDAMethod {
    /// PEFT's `corda_config` object: its `corda_method` (default "ipm"); the cache and covariance
    /// files it would read or write with torch.save are refused, as is f16 covariance.
    public init(json: JSON, path: String) throws {
        let fields = try ConfigFields(json, path: path, what: "corda_config")
        for field in ["cache_file", "covariance_file"] where fields[field] != nil && fields[field] != .null {
            throw fields.fail(field, "is not supported (the covariances are computed from the data each time)")
        }
        if try fields.bool("use_float16_for_covariance", default: false) { throw fields.fail("use_float16_for_covariance", "is not supported (got true)") }
        _ = try (fields.bool("verbose", default: false), fields.bool("prune_temporary_fields", default: true))
        let name = try fields.string("corda_method", default: CorDAMethod.ipm.rawValue)
        guard let method = CorDAMethod(rawValue: name) else { throw fields.fail("corda_method", "must be \"ipm\" or \"kpm\", got \"\(name)\"") }
        self = method
    }
}
