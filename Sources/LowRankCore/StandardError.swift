import Glibc

/// Writes one line to stderr (Foundation-free, and safe from any thread).
public func printToStandardError(_ line: String) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    text.withCString { _ = write(2, $0, strlen($0)) }
}
