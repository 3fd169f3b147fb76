import Foundation
import LowRank
import Testing

extension CommandLineArgumentTests {
    /// `--quantize`, `--schedule` and lowrank-bench's `--suite` are enums: `--help` lists their
    /// values (those of `DType` and `LearningRateSchedule.Kind`), and anything else is a usage error
    /// naming the option.
    @Test func choicesAreListedAndChecked() throws {
        // The help text wrapped at its width, joined again.
        let unwrapped = { (text: String) in text.split(whereSeparator: \.isWhitespace).joined(separator: " ") }
        let (status, text) = try lowrank(["train", "--help"])
        let help = unwrapped(text)
        #expect(status == 0)
        let quantized = DType.allCases.filter(\.isQuantized).map(\.rawValue).joined(separator: ", ")
        let schedules = LearningRateSchedule.Kind.allCases.map(\.rawValue).joined(separator: ", ")
        #expect(help.contains("--quantize <quantize>") && help.contains("(values: \(quantized))"), "\(help)")
        #expect(help.contains("(values: \(schedules))"), "\(help)")
        try expectRefused("--schedule", ["train", "--model", model, "--data", data, "--schedule", "step"])
        try expectRefused("--quantize", ["train", "--model", model, "--data", data, "--quantize", "f16"])

        let bench = Process()
        bench.executableURL = URL(fileURLWithPath: (Self.tool as NSString).deletingLastPathComponent + "/lowrank-bench")
        bench.arguments = ["--help"]
        let pipe = Pipe()
        bench.standardOutput = pipe
        try bench.run()
        let benchHelp = unwrapped(String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        bench.waitUntilExit()
        #expect(benchHelp.contains("(values: matmul, lora, dora, quant, optimizer, attention, train, lmhead, train-model, all; default: lora)"), "\(benchHelp)")
    }
}
