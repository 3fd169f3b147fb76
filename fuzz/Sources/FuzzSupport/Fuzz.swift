import Glibc

@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                                 _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// Set once, before the driver starts, and only read after.
nonisolated(unsafe) private var target: (UnsafeRawBufferPointer) -> Void = { _ in }

/// libFuzzer's entry point. SwiftPM links an executable with `main` renamed to its module's own,
/// so libFuzzer's `main` never runs: `fuzz` starts the driver itself (LLVMFuzzerRunDriver).
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    target(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// Runs libFuzzer with the process's arguments on `body`, which gets each input. A thrown error is
/// the expected answer to a bad input; a trap, a sanitizer report or a hang is a finding.
public func fuzz(_ body: @escaping (UnsafeRawBufferPointer) throws -> Void) -> Never {
    target = { bytes in _ = try? body(bytes) }
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
}

/// A property every input must keep, checked even in release builds.
public func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
