import ArgumentParser
import LowRank

@main
struct Lowrank: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lowrank",
        abstract: "Fine-tune models with low-rank adapters on any GPU through Vulkan, or on the CPU.",
        discussion: """
        Shell completions: lowrank --generate-completion-script bash|zsh|fish prints the script for that shell \
        (e.g. lowrank --generate-completion-script bash > /etc/bash_completion.d/lowrank); --device completes to the \
        devices found.
        """,
        version: Engine.version,
        subcommands: [Train.self, Eval.self, Generate.self, Merge.self, ExportGGUF.self, Tokenize.self, ChatTemplateCommand.self, Devices.self, Check.self])
}

/// `--seq-len`, which Train and Eval share: a window predicts from its first token on, so it needs two.
func validateSequenceLength(_ length: Int?) throws {
    if let length, length < 2 {
        throw ValidationError("--seq-len must be at least 2 (a window of n tokens predicts n − 1 of them), got \(length)")
    }
}

/// `--device` and `--validation`, shared by commands that run ops.
struct DeviceOptions: ParsableArguments {
    @Option(help: "cpu, vulkan or vulkan:N (default: LOWRANK_DEVICE, else the best device found).",
            completion: .custom { _, _, _ in Array(Set(["cpu", "vulkan"] + Engine.devices(validation: false).devices.map(\.identifier))).sorted() })
    var device: String?

    @Flag(help: "Enable the Khronos validation layer with synchronization validation (also LOWRANK_VALIDATION=1).")
    var validation = false

    var request: DeviceRequest {
        get throws { try device.map(DeviceRequest.init(parsing:)) ?? Engine.requestFromEnvironment() }
    }

    var validationEnabled: Bool { validation || Engine.validationFromEnvironment }
}
