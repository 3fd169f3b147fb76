import Foundation
import LowRank
import Testing

/// Where each op is checked: reference tests that run on every backend (named `File.function`,
/// found in this folder, each naming `BackendKind` so that it reaches more than the CPU) and the
/// graph's finite-difference cases for its gradient, or the reason it has none. The switch is
/// exhaustive, so a new `Op.Kind` does not compile until it is placed here: ggml's
/// `static_assert(GGML_OP_COUNT == …)` with test-backend-ops behind it.
struct OpCoverage {
    enum Gradient {
        case cases([GradientCase])
        /// Why the op has no finite-difference case of its own.
        case exempt(String)
    }

    var reference: [String]
    var gradient: Gradient

    static let isABackwardOp = Gradient.exempt("a backward op: checked as part of its forward op's gradient cases")

    static func of(_ kind: Op.Kind) -> OpCoverage {
        switch kind {
        case .matmul: OpCoverage(reference: ["MatmulTests.layouts", "MatmulTests.accumulatesIntoOutput"], gradient: .cases([.linear, .matmulTransposedA]))
        case .add: OpCoverage(reference: ["ElementwiseTests.addMulScale"], gradient: .cases([.broadcastAdd]))
        case .mul: OpCoverage(reference: ["ElementwiseTests.addMulScale"], gradient: .cases([.broadcastMul]))
        case .scale: OpCoverage(reference: ["ElementwiseTests.addMulScale"], gradient: .cases([.scale]))
        case .scaleRows: OpCoverage(reference: ["ElementwiseTests.scaleRows"], gradient: .cases([.scaleRows]))
        case .rowSumOfSquares: OpCoverage(reference: ["ElementwiseTests.rowReductions"], gradient: .cases([.rowSumOfSquares]))
        case .rowL2Norm:
            OpCoverage(reference: ["ElementwiseTests.rowReductions"],
                       gradient: .exempt("used only for DoRA's norm, which PEFT detaches: no gradient flows through it"))
        case .cast:
            OpCoverage(reference: ["ElementwiseTests.castsRoundToNearestEven", "QuantizationTests.roundTripWithinBounds"],
                       gradient: .exempt("its rule is a cast back; a finite difference across a 16-bit rounding measures the rounding"))
        case .loraForward: OpCoverage(reference: ["LoRATests.dropoutMatchesAcrossBackends"], gradient: .cases([.loraWithDropout]))
        case .loraBackward: OpCoverage(reference: ["LoRATests.dropoutMatchesAcrossBackends"], gradient: isABackwardOp)
        case .doraNorm:
            OpCoverage(reference: ["DoRATests.zeroWeightRowStaysFinite", "DoRATests.newAdapterIsTheIdentity"],
                       gradient: .exempt("PEFT detaches DoRA's weight norm"))
        case .doraForward: OpCoverage(reference: ["DoRATests.backendsAgree"], gradient: .cases([.doraInputAndMagnitude]))
        case .doraBackward: OpCoverage(reference: ["DoRATests.backendsAgree"], gradient: isABackwardOp)
        case .doraCompose:
            OpCoverage(reference: ["DoRATests.composeAlone"],
                       gradient: .exempt("graphs reach DoRA through doraForward, which fuses the compose and has the gradient case"))
        case .activation: OpCoverage(reference: ["GraphTests.declinedOpsFallBackToTheCPU"], gradient: .cases([.silu, .gelu, .geluTanh]))
        case .activationBackward: OpCoverage(reference: ["GraphTests.declinedOpsFallBackToTheCPU"], gradient: isABackwardOp)
        case .gatedActivation: OpCoverage(reference: ["TransformerOpsTests.gatedActivationIsTheUnfusedOps"], gradient: .cases([.gatedGeluTanh]))
        case .gatedActivationBackward: OpCoverage(reference: ["TransformerOpsTests.gatedActivationIsTheUnfusedOps"], gradient: isABackwardOp)
        case .meanSquaredError: OpCoverage(reference: ["GraphTrainingTests.mlpLoRATrainsOnBothBackends"], gradient: .cases([.meanSquaredError]))
        case .meanSquaredErrorBackward: OpCoverage(reference: ["GraphTrainingTests.mlpLoRATrainsOnBothBackends"], gradient: isABackwardOp)
        case .clipCoefficient:
            OpCoverage(reference: ["AdamWOptimizerTests.clipsTheGlobalNorm"], gradient: .exempt("part of the optimizer step, after the gradients"))
        case .transpose: OpCoverage(reference: ["TransformerOpsTests.transposeReordersAxes"], gradient: .cases([.transpose]))
        case .embedding: OpCoverage(reference: ["TransformerOpsTests.embeddingLooksUpRows"], gradient: .cases([.embedding]))
        case .embeddingBackward: OpCoverage(reference: ["TransformerOpsTests.embeddingBackwardSumsInTokenOrder"], gradient: isABackwardOp)
        case .rmsNorm:
            OpCoverage(reference: ["TransformerOpsTests.rmsNormMatchesReference", "TransformerOpsTests.rmsNormOfAResidualSumIsTheUnfusedOps"],
                       gradient: .cases([.rmsNorm, .rmsNormOfSum, .rmsNormBesideItsInput]))
        case .rmsNormBackward:
            OpCoverage(reference: ["TransformerOpsTests.rmsNormBackwardWithoutWeightGradient", "TransformerOpsTests.rmsNormOfAResidualSumIsTheUnfusedOps"],
                       gradient: isABackwardOp)
        case .rope: OpCoverage(reference: ["TransformerOpsTests.ropeMatchesReference"], gradient: .cases([.rope, .ropePair]))
        case .attention: OpCoverage(reference: ["TransformerOpsTests.attentionMatchesReference"], gradient: .cases([.groupedAttention]))
        case .attentionBackward: OpCoverage(reference: ["TransformerOpsTests.attentionMatchesReference"], gradient: isABackwardOp)
        case .cachedAttention:
            OpCoverage(reference: ["CachedAttentionTests.matchesAttentionOverTheWholeSequence"],
                       gradient: .exempt("inference only (a KV cache): a graph refuses a gradient through it"))
        case .crossEntropy: OpCoverage(reference: ["TransformerOpsTests.crossEntropyMatchesReference"], gradient: .cases([.crossEntropy]))
        case .crossEntropyBackward: OpCoverage(reference: ["TransformerOpsTests.crossEntropyMatchesReference"], gradient: isABackwardOp)
        case .linearCrossEntropy:
            OpCoverage(reference: ["LinearCrossEntropyTests.matchesTheUnfusedPath"], gradient: .cases([.linearCrossEntropy]))
        case .linearCrossEntropyBackward: OpCoverage(reference: ["LinearCrossEntropyTests.matchesTheUnfusedPath"], gradient: isABackwardOp)
        case .adamW:
            OpCoverage(reference: ["OptimizerTests.matchesReference", "OptimizerTests.matchesPyTorch"],
                       gradient: .exempt("the optimizer step: it consumes gradients and has none"))
        case .multiTensorAdamW:
            OpCoverage(reference: ["MultiTensorAdamWTests.matchesThePerTensorOps", "AdamWOptimizerTests.clipsTheGlobalNorm"],
                       gradient: .exempt("the optimizer step: it consumes gradients and has none"))
        }
    }
}

struct OpCoverageTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()

    /// The text of test `function` in `file`, from its `@Test` attribute to the next test.
    static func testSource(_ reference: String) throws -> String? {
        let parts = reference.split(separator: ".")
        let source = try String(contentsOf: folder.appendingPathComponent("\(parts[0]).swift"), encoding: .utf8)
        guard let declaration = source.range(of: "func \(parts[1])(") else { return nil }
        let start = source[..<declaration.lowerBound].range(of: "@Test", options: .backwards)?.lowerBound ?? declaration.lowerBound
        let end = source[declaration.upperBound...].range(of: "@Test")?.lowerBound ?? source.endIndex
        return String(source[start..<end])
    }

    @Test(arguments: Op.Kind.allCases)
    func everyOpHasAReferenceTestOnEveryBackend(_ kind: Op.Kind) throws {
        let coverage = OpCoverage.of(kind)
        #expect(!coverage.reference.isEmpty)
        for reference in coverage.reference {
            let source = try Self.testSource(reference)
            #expect(source != nil, "\(kind): no test \(reference)")
            // BackendKind, or a helper that runs its body over BackendKind.allCases.
            let reachesEveryBackend = ["BackendKind", "expectAgreeingLossCurves"].contains { source?.contains($0) == true }
            #expect(source?.contains("@Test") == true && reachesEveryBackend,
                    "\(kind): \(reference) is not a test that runs on every backend")
        }
        if case .cases(let cases) = coverage.gradient { #expect(!cases.isEmpty, "\(kind): name its gradient cases or exempt it") }
    }
}
