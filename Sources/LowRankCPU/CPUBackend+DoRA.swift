import LowRankCore

extension CPUBackend {
    /// DoRA's output term, the twin of `Shaders/dora.glsl`: `(g − 1)·base + g·(s·lora)`, with g − 1
    /// formed before it multiplies base (no cancellation when g ≈ 1).
    @inline(__always)
    func doraCompose(_ base: Float, _ scaledLora: Float, _ g: Float) -> Float {
        (g - 1) * base + g * scaledLora
    }

    /// Rows handled per step of the factored norm: its one transient beyond W·Aᵀ and A·Aᵀ is
    /// `B_rows·(A·Aᵀ)` for this many rows.
    static let doraNormChunkRows = 256

    /// W, A, B, m, ‖W‖²_row -> n, g: `n² = ‖W‖² + 2s·rowsum(B⊙(W·Aᵀ)) + s²·rowsum((B·(A·Aᵀ))⊙B)`.
    func doraNorm(scale s: Float, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (w, a, b, m, wsq) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4])
        let dOut = w.shape[0], dIn = w.shape[1], r = a.shape[0]
        let n = pointer(outputs[0]).assumingMemoryBound(to: Float.self)
        let g = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        withScratch(dOut * r) { wa in
            withScratch(r * r) { aat in
                withFloats(a) { pa in
                    withFloats(w) { pw in sgemm(pw, transpose: false, pa, transpose: true, wa, m: dOut, n: r, k: dIn, alpha: 1, beta: 0) }
                    sgemm(pa, transpose: false, pa, transpose: true, aat, m: r, n: r, k: dIn, alpha: 1, beta: 0)
                }
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
                                        for c in 0..<r { cross += pb[j * r + c] * (2 * wa[j * r + c] + s * baat[i * r + c]) }
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
    }

    /// x, W, A, B, m, ‖W‖²_row [, bias] -> y, u, n, g [, inner]
    func doraForward(_ o: DoRAOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (x, w, a, b) = (inputs[0], inputs[1], inputs[2], inputs[3])
        let t = x.shape[0], dIn = x.shape[1], dOut = w.shape[0], r = a.shape[0]
        let s = o.lora.scale
        try doraNorm(scale: s, [w, a, b, inputs[4], inputs[5]], [outputs[2], outputs[3]])
        let g = pointer(outputs[3]).assumingMemoryBound(to: Float.self)
        let u = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        let inner = o.trainableMagnitude ? pointer(outputs[4]).assumingMemoryBound(to: Float.self) : nil
        let mask = DropoutMask(probability: o.lora.dropout, seed: o.lora.seed)
        withFloats(x) { px in
            withFloats(w) { pw in
                withFloats(a) { pa in
                    withFloats(b) { pb in
                        producing(outputs[0]) { y in
                            // The LoRA term goes into `inner` when m is trainable (then completed in place), else into
                            // scratch; without dropout the base product is the frozen layer's output, so it goes into y.
                            withScratch(inner == nil ? t * dOut : 0) { loraScratch in
                                withScratch(mask.isIdentity ? 0 : t * dOut) { droppedScratch in
                                    let lora = inner ?? loraScratch
                                    let base = mask.isIdentity ? y : droppedScratch
                                    droppedInput(px, rows: t, columns: dIn, mask) { xh in
                                        sgemm(xh, transpose: false, pa, transpose: true, u, m: t, n: r, k: dIn, alpha: 1, beta: 0)
                                        sgemm(xh, transpose: false, pw, transpose: true, base, m: t, n: dOut, k: dIn, alpha: 1, beta: 0)
                                    }
                                    sgemm(u, transpose: false, pb, transpose: true, lora, m: t, n: dOut, k: r, alpha: s, beta: 0)
                                    if !mask.isIdentity {
                                        sgemm(px, transpose: false, pw, transpose: true, y, m: t, n: dOut, k: dIn, alpha: 1, beta: 0)
                                    }
                                    parallelFor(t * dOut) { range in
                                        for i in range {
                                            let (b, l) = (base[i], lora[i])
                                            inner?[i] = b + l
                                            y[i] += doraCompose(b, l, g[i % dOut])
                                        }
                                    }
                                    if o.lora.hasBias { withFloats(inputs[6]) { bias in addRows(y, rows: t, bias, columns: dOut) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// G, x, W, A, B, u, n, g [, inner] -> dx, dA, dB [, dm]
    func doraBackward(_ o: DoRAOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (gradient, x, w, a, b, uIn) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5])
        let t = x.shape[0], dIn = x.shape[1], dOut = w.shape[0], r = a.shape[0]
        let s = o.lora.scale
        let n = pointer(inputs[6]).assumingMemoryBound(to: Float.self)
        let g = pointer(inputs[7]).assumingMemoryBound(to: Float.self)
        let dA = pointer(outputs[1]).assumingMemoryBound(to: Float.self)
        let dB = pointer(outputs[2]).assumingMemoryBound(to: Float.self)
        let mask = DropoutMask(probability: o.lora.dropout, seed: o.lora.seed)
        withFloats(gradient) { pg in
            if o.trainableMagnitude {
                // dm_j = Σ_t G[t,j]·inner[t,j] / max(n_j, ε), summed over t in order.
                let inner = pointer(inputs[8]).assumingMemoryBound(to: Float.self)
                let dm = pointer(outputs[3]).assumingMemoryBound(to: Float.self)
                parallelFor(dOut, minimumPerThread: 64) { columns in
                    for j in columns { dm[j] = 0 }
                    for row in 0..<t {
                        for j in columns { dm[j] += pg[row * dOut + j] * inner[row * dOut + j] }
                    }
                    for j in columns { dm[j] /= max(n[j], DoRAOptions.normEpsilon) }
                }
            }
            withScratch(t * dOut) { gg in
                // The LoRA branch and, without dropout, the whole of dx see G⊙g.
                parallelFor(t * dOut) { range in for i in range { gg[i] = pg[i] * g[i % dOut] } }
                withFloats(uIn) { u in sgemm(gg, transpose: true, u, transpose: false, dB, m: dOut, n: r, k: t, alpha: s, beta: 0) }
                withScratch(t * r) { du in
                    withFloats(b) { pb in sgemm(gg, transpose: false, pb, transpose: false, du, m: t, n: r, k: dOut, alpha: s, beta: 0) }
                    withFloats(x) { px in
                        droppedInput(px, rows: t, columns: dIn, mask) { xh in
                            sgemm(du, transpose: true, xh, transpose: false, dA, m: r, n: dIn, k: t, alpha: 1, beta: 0)
                        }
                    }
                    withFloats(w) { pw in
                        withFloats(a) { pa in
                            producing(outputs[0]) { dx in
                                if mask.isIdentity {
                                    sgemm(gg, transpose: false, pw, transpose: false, dx, m: t, n: dIn, k: dOut, alpha: 1, beta: 0)
                                    sgemm(du, transpose: false, pa, transpose: false, dx, m: t, n: dIn, k: r, alpha: 1, beta: 1)
                                    return
                                }
                                // dx = G·W + mask ⊙ (((g−1)⊙G)·W + du·A)
                                sgemm(pg, transpose: false, pw, transpose: false, dx, m: t, n: dIn, k: dOut, alpha: 1, beta: 0)
                                parallelFor(t * dOut) { range in for i in range { gg[i] = pg[i] * (g[i % dOut] - 1) } }
                                withScratch(t * dIn) { branch in
                                    sgemm(gg, transpose: false, pw, transpose: false, branch, m: t, n: dIn, k: dOut, alpha: 1, beta: 0)
                                    sgemm(du, transpose: false, pa, transpose: false, branch, m: t, n: dIn, k: r, alpha: 1, beta: 1)
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
}
