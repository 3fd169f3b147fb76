import Foundation
import LowRank
import Testing

/// `lowrank eval --quantize`: a QLoRA adapter evaluated on the quantized weights it was trained on.
@Suite("lowrank eval --quantize")
struct EvalQuantizationTests {
    /// Three steps and four, on all six rows at once, in file order, at a constant learning rate:
    /// the four-step run's last training loss is the loss of the three-step run's adapter on the
    /// whole data, which `eval --quantize` reproduces bit for bit (both are one forward pass over
    /// the same batch on the same quantized weights). Without `--quantize` eval sees other weights.
    @Test(arguments: ["nf4", "nf4_dq", "q8_0", "q4_0"])
    func evalOfAQuantizedModelIsItsTrainingLoss(_ quantize: String) throws {
        let cli = CommandLineArgumentTests()
        try withTemporaryFolder { folder in
            let train = { (steps: Int) throws -> Float in
                let run = try cli.lowrank(["train", "--model", cli.model, "--data", cli.data, "--adapter-out", "\(folder)/\(steps)",
                                           "--quantize", quantize, "--steps", "\(steps)", "--batch-size", "6", "--no-shuffle",
                                           "--lr", "0.01", "--schedule", "constant", "--targets", "all-linear", "--dora"])
                let summary = try #require(run.output.split(separator: "\n").last { $0.hasPrefix("loss ") && $0.contains(" over \(steps) steps") },
                                           "\(run.output)")
                return try #require(Float(summary.split(separator: " ")[3]))
            }
            _ = try train(3)
            let fourthStep = try train(4)
            let evaluate = { (arguments: [String]) throws -> Float in
                let result = try cli.lowrank(["eval", "--model", cli.model, "--adapter", folder + "/3", "--data", cli.data,
                                              "--batch-size", "6", "--json"] + arguments)
                let line = result.output.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? result.output
                return try #require(try JSON.parse(Array(line.utf8))["loss"]?.number.map(Float.init), "\(result.output)")
            }
            let quantized = try evaluate(["--quantize", quantize]), full = try evaluate([])
            print("\(quantize): training loss at step 4 \(fourthStep), eval --quantize \(quantized), eval in f32 \(full)")
            #expect(quantized == fourthStep)
            #expect(full != fourthStep, "the quantized weights change the loss")
        }
    }
}
