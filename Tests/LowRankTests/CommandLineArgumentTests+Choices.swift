import Foundation
import LowRank
import LowRankModels
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
        let quantized = DType.allCases.filter(\.hasQuantizer).map(\.rawValue).joined(separator: ", ")
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

    /// `--init` lists PEFT's names, takes pissa_niter_N for any N, refuses other names, and the
    /// weight-splitting ones save the adapter converted for the original model (rank 2r).
    @Test func initialisationsAreListedAndRun() throws {
        let (_, text) = try lowrank(["train", "--help"])
        #expect(text.split(whereSeparator: \.isWhitespace).joined(separator: " ").contains("(values: kaiming, gaussian, pissa, pissa_niter_N, olora, corda, loftq, eva; default: kaiming)"))
        try expectRefused("--init", ["train", "--model", model, "--data", data, "--init", "pissa_niter_x"])
        for initialization in ["olora", "pissa_niter_2"] {
            try withTemporaryFolder { folder in
                let (status, output) = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "2", "--r", "4",
                                                    "--init", initialization, "--adapter-out", folder])
                #expect(status == 0, "\(output)")
                let saved = try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName)
                #expect(saved.rank == 8, "\(initialization)")
            }
        }
        // LoftQ fits NF4's quantization error: refused on an f32 model, saved as a plain rank-r adapter on an NF4 one.
        let refused = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "1", "--init", "loftq"])
        #expect(refused.status != 0 && refused.output.contains("--quantize nf4"), "\(refused.output)")
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "2", "--r", "4",
                                                "--init", "loftq", "--quantize", "nf4", "--adapter-out", folder])
            #expect(status == 0, "\(output)")
            #expect(try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName).rank == 4)
            #expect(!FileIO.exists(folder + "/" + ModelAdapter.loftqBaseName), "one iteration's base is the model's NF4")
        }
        // More iterations save their NF4 base (of the targeted weights) beside the adapter, which eval and merge read back.
        let misplaced = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "1", "--loftq-iter", "2"])
        #expect(misplaced.status != 0 && misplaced.output.contains("--loftq-iter applies to --init loftq"), "\(misplaced.output)")
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "2", "--r", "4",
                                                "--init", "loftq", "--loftq-iter", "3", "--quantize", "nf4", "--adapter-out", folder])
            #expect(status == 0, "\(output)")
            #expect(try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName).loftqIterations == 3)
            #expect(FileIO.exists(folder + "/" + ModelAdapter.loftqBaseName))
            let eval = try lowrank(["eval", "--model", model, "--data", data, "--device", "cpu", "--adapter", folder, "--quantize", "nf4"])
            #expect(eval.status == 0, "\(eval.output)")
            let merge = try lowrank(["merge", "--model", model, "--adapter", folder, "--out", folder + "/merged", "--device", "cpu"])
            #expect(merge.status == 0, "\(merge.output)")
            let base = try SafetensorsFile(path: folder + "/" + ModelAdapter.loftqBaseName)
            #expect(base.names.sorted() == ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight",
                                            "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"])
        }
    }

    /// `--init eva` on the data in --batch-size batches writes PEFT's redistributed ranks and alphas
    /// (those of Tests/Fixtures/peft-eva, made on the same rows); `--eva-*` refused with bad values or another init.
    @Test func evaWritesPEFTsRankPattern() throws {
        let targets = ["--r", "8", "--alpha", "16", "--targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj", "--batch-size", "2"]
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "1", "--init", "eva", "--adapter-out", folder] + targets)
            #expect(status == 0, "\(output)")
            let saved = try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName)
            let peft = try AdapterSettings(contentsOf: EVAFixtures.path("eva/" + ModelAdapter.configName))
            #expect(saved.rankPattern == peft.rankPattern && saved.alphaPattern == peft.alphaPattern)
        }
        try expectRefused("rho", ["train", "--model", model, "--data", data, "--init", "eva", "--eva-rho", "0.5"])
        try expectRefused("--eva", ["train", "--model", model, "--data", data, "--eva-tau", "0.5"])
    }

    /// `--init corda --corda-method kpm` trains and saves the adapter converted for the original
    /// model (rank 2r) that evaluates, with it, to the trained model's loss; `--corda-method` without it is refused.
    @Test func cordaTrainsAndSavesForTheOriginalModel() throws {
        try withTemporaryFolder { folder in
            let (status, output) = try lowrank(["train", "--model", model, "--data", data, "--device", "cpu", "--steps", "2", "--r", "4",
                                                "--init", "corda", "--corda-method", "kpm", "--adapter-out", folder])
            #expect(status == 0, "\(output)")
            #expect(try AdapterSettings(contentsOf: folder + "/" + ModelAdapter.configName).rank == 8)
        }
        try expectRefused("--corda-method", ["train", "--model", model, "--data", data, "--corda-method", "kpm"])
        try expectRefused("--corda-method", ["train", "--model", model, "--data", data, "--init", "corda", "--corda-method", "xpm"])
    }
}
