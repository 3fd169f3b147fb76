#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The globals a template sees: jinja2's `range`, `dict` and `namespace`, and transformers'
/// `raise_exception` and `strftime_now`.
enum JinjaGlobals {
    static func value(named name: String) -> JinjaValue? {
        switch name {
        case "range": return .function(JinjaFunction("range", range))
        case "dict":
            return .function(JinjaFunction("dict") { arguments in
                guard arguments.positional.isEmpty else { throw JinjaFailure.unsupported("dict() with positional arguments is not supported") }
                return .dict(JinjaDictionary(arguments.keywords))
            })
        case "namespace":
            return .function(JinjaFunction("namespace") { arguments in
                var attributes = JinjaDictionary()
                for argument in arguments.positional {
                    guard case .dict(let d) = argument else { throw JinjaFailure.message("namespace() takes a dict or keyword arguments") }
                    for (key, value) in d.pairs { attributes[key] = value }
                }
                for (key, value) in arguments.keywords { attributes[key] = value }
                // transformers' TemplateNamespace refuses underscore-prefixed names.
                if let name = attributes.keys.first(where: { $0.hasPrefix("_") }) {
                    throw JinjaFailure.message("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(name)'. Please rename the attribute.")
                }
                return .namespace(JinjaNamespace(attributes))
            })
        case "raise_exception":
            return .function(JinjaFunction("raise_exception") { arguments in
                throw JinjaFailure.raised(arguments.value(0, "message")?.printed ?? "")
            })
        case "strftime_now":
            return .function(JinjaFunction("strftime_now") { arguments in
                guard case .string(let format) = arguments.value(0, "format") else {
                    throw JinjaFailure.message("strftime_now() takes a format string")
                }
                return .string(try strftimeNow(format))
            })
        default: return nil
        }
    }

    private static func range(_ arguments: JinjaArguments) throws -> JinjaValue {
        let bounds = try arguments.positional.map { value -> Int in
            guard let i = value.integer else { throw JinjaFailure.message("'\(value.typeName)' object cannot be interpreted as an integer") }
            return i
        }
        let (start, stop, step): (Int, Int, Int)
        switch bounds.count {
        case 1: (start, stop, step) = (0, bounds[0], 1)
        case 2: (start, stop, step) = (bounds[0], bounds[1], 1)
        case 3: (start, stop, step) = (bounds[0], bounds[1], bounds[2])
        default: throw JinjaFailure.message("range expected 1 to 3 arguments, got \(bounds.count)")
        }
        guard step != 0 else { throw JinjaFailure.message("range() arg 3 must not be zero") }
        let span = step > 0 ? Double(stop) - Double(start) : Double(start) - Double(stop)
        let count = span <= 0 ? 0 : Int(((span - 1) / Double(abs(step))).rounded(.down)) + 1
        guard count <= JinjaLimits.rangeLength else {
            throw JinjaFailure.message("range() of \(count) elements exceeds the limit of \(JinjaLimits.rangeLength)")
        }
        return .list((0..<count).map { .int(start + $0 * step) })
    }

    /// `datetime.now().strftime(format)` in local time.
    private static func strftimeNow(_ format: String) throws -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 512)
        let length = strftime(&buffer, buffer.count, format, &parts)
        guard length > 0 || format.isEmpty else { throw JinjaFailure.message("strftime_now: the date does not fit 512 bytes") }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
