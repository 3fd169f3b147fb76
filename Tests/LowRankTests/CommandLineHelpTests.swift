import Foundation
import LowRank
import Testing

/// What `lowrank` tells a new user about itself: its version, shell completions, and the values
/// its options take.
@Suite("lowrank --version, completions and --help")
struct CommandLineHelpTests {
    func run(_ arguments: [String]) throws -> (status: Int32, output: String) { try LowrankBinary.run(arguments) }

    @Test func versionIsTheEngines() throws {
        let result = try run(["--version"])
        #expect(result.status == 0 && result.output == Engine.version + "\n", "\(result.output)")
    }

    /// Each shell's script names every subcommand and completes enumerated values; `--device`
    /// completes to the devices the engine finds, the CPU backend always among them.
    @Test(arguments: ["bash", "zsh", "fish"])
    func completionScripts(_ shell: String) throws {
        let result = try run(["--generate-completion-script", shell])
        #expect(result.status == 0)
        for word in ["train", "eval", "merge", "devices", "check", "chat-template", "dtype", "bf16", "quantize", "nf4_dq"] {
            #expect(result.output.contains(word), "\(shell) completion lacks \(word)")
        }
        let devices = try run(["---completion", "eval", "--", "--device", "3", "0", "lowrank", "eval", "--device", ""])
        #expect(devices.status == 0 && devices.output.split(separator: "\n").contains("cpu"), "\(devices.output)")
    }

    /// Every value of an option with a fixed set of them is in its command's `--help`.
    @Test func helpListsEveryValue() throws {
        let quantized = DType.allCases.filter(\.hasQuantizer).map(\.rawValue).joined(separator: ", ")
        let expected = [
            "eval": ["values: \(quantized)", "cpu, vulkan or vulkan:N"],
            "merge": ["values: f32, bf16, f16", "cpu, vulkan or vulkan:N"],
            "train": ["q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or all-linear", "cpu, vulkan or vulkan:N"],
            "devices": ["cpu, vulkan or vulkan:N"],
        ]
        for (command, phrases) in expected {
            // Unwrapped, so that a phrase split over two lines is found.
            let help = try run([command, "--help"]).output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            for phrase in phrases { #expect(help.contains(phrase), "lowrank \(command) --help lacks \(phrase): \(help)") }
        }
    }
}
