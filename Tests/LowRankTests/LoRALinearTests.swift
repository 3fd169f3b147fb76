import LowRank
import Testing

@Suite("LoRA layer with several adapters")
struct LoRALinearTests {
    static let (t, dIn, dOut) = (11, 40, 23)

    /// A layer with two adapters (different ranks, scales and dropout) and non-zero B.
    func layer(on backend: any Backend) throws -> LoRALinear {
        let layer = try LoRALinear(weight: try Tensor(randomValues(Self.dOut * Self.dIn, seed: 1), shape: [Self.dOut, Self.dIn], on: backend),
                                   bias: try Tensor(randomValues(Self.dOut, seed: 2), shape: [Self.dOut], on: backend))
        for (i, config) in [LoRAConfig(rank: 4, alpha: 8), LoRAConfig(rank: 7, alpha: 3, rsLoRA: true, dropout: 0.2)].enumerated() {
            let adapter = try LoRAAdapter(inFeatures: Self.dIn, outFeatures: Self.dOut, config: config, seed: UInt32(10 + i), on: backend)
            adapter.b = try Tensor(randomValues(Self.dOut * config.rank, seed: UInt64(20 + i)), shape: [Self.dOut, config.rank], on: backend)
            try layer.add(i == 0 ? "first" : "second", adapter)
        }
        return layer
    }

    /// y, dx and each adapter's (dA, dB) with the adapters in `enabled` switched on.
    func step(_ layer: LoRALinear, enabled: Set<String>, on backend: any Backend) throws -> (y: [Double], dx: [Double], grads: [String: [Float]]) {
        for entry in layer.entries where !entry.merged { try layer.setEnabled(entry.name, enabled.contains(entry.name)) }
        let x = try Tensor(randomValues(Self.t * Self.dIn, seed: 3), shape: [Self.t, Self.dIn], on: backend)
        let g = try Tensor(randomValues(Self.t * Self.dOut, seed: 4), shape: [Self.t, Self.dOut], on: backend)
        let (y, saved) = try layer.forward(x, seed: 99)
        let (dx, gradients) = try layer.backward(g, saved)
        #expect(Set(gradients.keys) == enabled)
        var grads: [String: [Float]] = [:]
        for (name, gr) in gradients { grads[name] = try gr.a.floats() + gr.b.floats() }
        return (try y.floats().map(Double.init), try dx.floats().map(Double.init), grads)
    }

    /// Adapters add up: each one's contribution to y and dx is the same alone or beside the other
    /// (its dropout mask is its own), and its gradients do not depend on the other.
    @Test(arguments: BackendKind.allCases)
    func adaptersSumAndToggle(_ kind: BackendKind) throws {
        try onBackend(kind) { backend in
            let layer = try layer(on: backend)
            let none = try step(layer, enabled: [], on: backend)
            let first = try step(layer, enabled: ["first"], on: backend)
            let second = try step(layer, enabled: ["second"], on: backend)
            let both = try step(layer, enabled: ["first", "second"], on: backend)
            #expect(first.y != none.y && second.y != none.y)
            for output in [\(y: [Double], dx: [Double], grads: [String: [Float]]).y, \.dx] {
                let sum = (0..<none[keyPath: output].count).map {
                    first[keyPath: output][$0] + second[keyPath: output][$0] - none[keyPath: output][$0]
                }
                #expect(relativeError(both[keyPath: output].map(Float.init), sum) <= 1e-5)
            }
            for name in ["first", "second"] {
                let alone = name == "first" ? first.grads[name]! : second.grads[name]!
                #expect(relativeError(both.grads[name]!, alone.map(Double.init)) <= 1e-6, "\(name)")
            }

            // A merged adapter (without dropout, so training and inference agree) is part of W: the
            // layer gives the same y with it merged.
            try layer.merge("first")
            #expect(throws: LowRankError.self) { try layer.setEnabled("first", false) }
            let merged = try step(layer, enabled: ["second"], on: backend)
            #expect(relativeError(merged.y.map(Float.init), both.y.map { $0 }) <= 1e-5)
            try layer.unmerge("first")
            #expect(throws: LowRankError.self) { try layer.add("second", layer.entries[0].adapter) }
            #expect(throws: LowRankError.self) { try layer.setEnabled("third", true) }
        }
    }
}
