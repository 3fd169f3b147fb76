import LowRankCore

extension CPUBackend {
    /// DoRA's output term, the twin of `Shaders/dora.glsl`: `(g − 1)·base + g·(s·lora)`, with g − 1
    /// formed before it multiplies base (no cancellation when g ≈ 1).
    @inline(__always)
    func doraTerm(_ base: Float, _ scaledLora: Float, _ g: Float) -> Float {
        (g - 1) * base + g * scaledLora
    }

    /// Rows handled per step of the factored norm: its one transient beyond W·Aᵀ and A·Aᵀ is
    /// `B_rows·(A·Aᵀ)` for this many rows.
    static let doraNormChunkRows = 256

    /// W, A, B, m, ‖W‖²_row -> n, g: `n² = ‖W‖² + 2s·rowsum(B⊙(W·Aᵀ)) + s²·rowsum((B·(A·Aᵀ))⊙B)`.
    func doraNorm(scale s: Float, _ operands: DoRANormOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (w, a) = (operands.w, operands.a)
        let dOut = w.shape[0], r = a.shape[0]
        withScratch(r * dOut) { aw in
            withFloats(a) { pa in weightProduct(pa, m: r, w, transposeW: true, aw, beta: 0, activations: .f32) }
            factoredNorm(scale: s, aw: aw, operands, outputs)
        }
    }

    /// The norm from a given `A·Wᵀ` `[r, d_out]` (the orientation OpenBLAS runs fastest, and the one
    /// DoRA forward gets for free as extra rows of its base product).
    private func factoredNorm(scale s: Float, aw: UnsafePointer<Float>, _ operands: DoRANormOperands<Tensor>, _ outputs: [Tensor]) {
        let (w, a, b, m, wsq) = (operands.w, operands.a, operands.b, operands.magnitude, operands.weightSquaredNorm)
        let dOut = w.shape[0], dIn = w.shape[1], r = a.shape[0]
        let n = pointer(outputs[0]).assumingMemoryBound(to: Float.self)
        let g = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        withScratch(r * r) { aat in
            withFloats(a) { pa in sgemm(pa, transpose: false, pa, transpose: true, aat, m: r, n: r, k: dIn, alpha: 1, beta: 0) }
            withFloats(b) { pb in
                withFloats(m) { pm in
                    withFloats(wsq) { pwsq in
                        let chunk = Self.doraNormChunkRows
                        withScratch(min(chunk, dOut) * r) { baat in
                            for first in stride(from: 0, to: dOut, by: chunk) {
                                let rows = min(chunk, dOut - first)
                                sgemm(pb + first * r, transpose: false, aat, transpose: false, baat, m: rows, n: r, k: r, alpha: 1, beta: 0)
                                for i in 0..<rows {
                                    let j = first + i
                                    var cross: Float = 0
                                    for c in 0..<r { cross += pb[j * r + c] * (2 * aw[c * dOut + j] + s * baat[i * r + c]) }
                                    n[j] = max(pwsq[j] + s * cross, 0).squareRoot()
                                    g[j] = pm[j] / max(n[j], DoRAOptions.normEpsilon)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// base, lora, g -> y = base + (g−1)⊙base + g⊙(s·lora)
    func doraCompose(scale s: Float, _ inputs: [Tensor], _ out: Tensor) throws {
        let dOut = out.shape.columns
        withFloats(inputs[0]) { base in
            withFloats(inputs[1]) { lora in
                withFloats(inputs[2]) { g in
                    producing(out) { y in
                        parallelFor(out.shape.count) { range in
                            for i in range { y[i] = base[i] + doraTerm(base[i], s * lora[i], g[i % dOut]) }
                        }
                    }
                }
            }
        }
    }

    /// x, W, A, B, m, ‖W‖²_row [, bias] -> y, u, n, g [, inner]. One GEMM of W with `dropout(x)` and A
    /// stacked gives both the base product and the norm's `A·Wᵀ`: r more rows on T cost almost
    /// nothing, where a separate skinny product costs most of the norm's time.
    func doraForward(_ o: DoRAOptions, _ operands: DoRAForwardOperands<Tensor>, _ outputs: DoRAForwardResults<Tensor>) throws {
        let (x, w, a, b) = (operands.x, operands.w, operands.a, operands.b)
        let t = x.shape[0], dIn = x.shape[1], dOut = w.shape[0], r = a.shape[0]
        let s = o.lora.scale
        let g = pointer(outputs.g).assumingMemoryBound(to: Float.self)
        let u = pointer(outputs.u).assumingMemoryBound(to: Float.self)
        let inner = outputs.inner.map { pointer($0).assumingMemoryBound(to: Float.self) }
        let mask = DropoutMask(probability: o.lora.dropout, seed: o.lora.seed)
        withFloats(x) { px in
            withFloats(a) { pa in
                withScratch((t + r) * dIn) { stacked in
                    parallelFor(t * dIn) { range in
                        if mask.isIdentity {
                            (stacked + range.lowerBound).update(from: px + range.lowerBound, count: range.count)
                        } else {
                            for i in range { stacked[i] = px[i] * mask.factor(row: i / dIn, column: i % dIn) }
                        }
                    }
                    (stacked + t * dIn).update(from: pa, count: r * dIn)
                    withScratch((t + r) * dOut) { base in
                        if roundsActivations(for: w, .weight) {
                            // x rounds to bfloat16, A (the norm's rows) must not: two products.
                            weightProduct(stacked, m: t, w, transposeW: true, base, beta: 0)
                            weightProduct(pa, m: r, w, transposeW: true, base + t * dOut, beta: 0, activations: .f32)
                        } else {
                            weightProduct(stacked, m: t + r, w, transposeW: true, base, beta: 0)
                        }
                        factoredNorm(scale: s, aw: base + t * dOut, operands.norm, [outputs.norm, outputs.g])
                        rankProduct(stacked, transpose: false, pa, transpose: true, u, m: t, n: r, k: dIn, alpha: 1, beta: 0)
                        // The LoRA term goes into `inner` when m is trainable (then completed in place), else into scratch.
                        withScratch(inner == nil ? t * dOut : 0) { loraScratch in
                            let lora = inner ?? loraScratch
                            withFloats(b) { pb in rankProduct(u, transpose: false, pb, transpose: true, lora, m: t, n: dOut, k: r, alpha: s, beta: 0) }
                            withOptionalFloats(operands.bias) { bias in
                                producing(outputs.y) { y in
                                    // Without dropout the base product is the frozen layer's output too.
                                    if !mask.isIdentity {
                                        weightProduct(px, m: t, w, transposeW: true, y, beta: 0)
                                    }
                                    parallelFor(t * dOut) { range in
                                        for i in range {
                                            let (p, l, j) = (base[i], lora[i], i % dOut)
                                            inner?[i] = p + l
                                            let frozen = (mask.isIdentity ? p : y[i]) + (bias?[j] ?? 0)
                                            y[i] = frozen + doraTerm(p, l, g[j])
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// G, x, W, A, B, u, n, g [, inner] -> dx, dA, dB [, dm]
    func doraBackward(_ o: DoRAOptions, _ operands: DoRABackwardOperands<Tensor>, _ outputs: DoRABackwardResults<Tensor>) throws {
        let (gradient, x, w, a, b, uIn) = (operands.gradient, operands.x, operands.w, operands.a, operands.b, operands.u)
        let t = x.shape[0], dIn = x.shape[1], dOut = w.shape[0], r = a.shape[0]
        let s = o.lora.scale
        let n = pointer(operands.norm).assumingMemoryBound(to: Float.self)
        let g = pointer(operands.g).assumingMemoryBound(to: Float.self)
        let dA = pointer(outputs.dA).assumingMemoryBound(to: Float.self)
        let dB = pointer(outputs.dB).assumingMemoryBound(to: Float.self)
        let mask = DropoutMask(probability: o.lora.dropout, seed: o.lora.seed)
        withFloats(gradient) { pg in
            withScratch(t * dOut) { gg in
                // One pass over G gives the LoRA branch's G⊙g (all of dx's, without dropout) and
                // dm_j = Σ_t G[t,j]·inner[t,j] / max(n_j, ε), each column summed over t in order.
                let inner = operands.inner.map { pointer($0).assumingMemoryBound(to: Float.self) }
                let dm = outputs.dm.map { pointer($0).assumingMemoryBound(to: Float.self) }
                parallelFor(dOut, minimumPerThread: 64) { columns in
                    guard let inner, let dm else {
                        for row in 0..<t { for j in columns { gg[row * dOut + j] = pg[row * dOut + j] * g[j] } }
                        return
                    }
                    for j in columns { dm[j] = 0 }
                    for row in 0..<t {
                        let offset = row * dOut
                        for j in columns {
                            let v = pg[offset + j]
                            gg[offset + j] = v * g[j]
                            dm[j] += v * inner[offset + j]
                        }
                    }
                    for j in columns { dm[j] /= max(n[j], DoRAOptions.normEpsilon) }
                }
                withFloats(uIn) { u in rankProduct(gg, transpose: true, u, transpose: false, dB, m: dOut, n: r, k: t, alpha: s, beta: 0) }
                withScratch(t * r) { du in
                    withFloats(b) { pb in rankProduct(gg, transpose: false, pb, transpose: false, du, m: t, n: r, k: dOut, alpha: s, beta: 0) }
                    withFloats(x) { px in
                        droppedInput(px, rows: t, columns: dIn, mask) { xh in
                            rankProduct(du, transpose: true, xh, transpose: false, dA, m: r, n: dIn, k: t, alpha: 1, beta: 0)
                        }
                    }
                    guard o.lora.inputGradient else { return }
                    withFloats(a) { pa in
                        producing(outputs.dx) { dx in
                            if mask.isIdentity {
                                weightProduct(gg, m: t, w, transposeW: false, dx, beta: 0)
                                rankProduct(du, transpose: false, pa, transpose: false, dx, m: t, n: dIn, k: r, alpha: 1, beta: 1)
                                return
                            }
                            // dx = G·W + mask ⊙ (((g−1)⊙G)·W + du·A)
                            weightProduct(pg, m: t, w, transposeW: false, dx, beta: 0)
                            parallelFor(t * dOut) { range in for i in range { gg[i] = pg[i] * (g[i % dOut] - 1) } }
                            withScratch(t * dIn) { branch in
                                weightProduct(gg, m: t, w, transposeW: false, branch, beta: 0)
                                rankProduct(du, transpose: false, pa, transpose: false, branch, m: t, n: dIn, k: r, alpha: 1, beta: 1)
                                parallelFor(t * dIn) { range in
                                    for i in range { dx[i] += branch[i] * mask.factor(row: i / dIn, column: i % dIn) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
