import LowRankCore

extension CPUBackend {
    /// `dropout(x)` as f32, or nil when dropout is off (callers then read x itself).
    func droppedInput(_ x: UnsafePointer<Float>, rows: Int, columns: Int, _ mask: DropoutMask,
                              _ body: (UnsafePointer<Float>) -> Void) {
        if mask.isIdentity { return body(x) }
        withScratch(rows * columns) { xh in
            parallelFor(rows * columns) { r in
                for i in r { xh[i] = x[i] * mask.factor(row: i / columns, column: i % columns) }
            }
            body(xh)
        }
    }

    /// x, W, A, B [, bias] -> y, u
    func loraForward(_ o: LoRAOptions, _ operands: LoRAForwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (x, w, a, b) = (operands.x, operands.w, operands.a, operands.b)
        let (y, uOut) = (outputs[0], outputs[1])
        let t = x.shape[0], dIn = x.shape[1], dOut = w.shape[0], r = a.shape[0]
        let mask = DropoutMask(probability: o.dropout, seed: o.seed)
        let u = pointer(uOut).assumingMemoryBound(to: Float.self)
        withFloats(x) { px in
            withFloats(a) { pa in
                droppedInput(px, rows: t, columns: dIn, mask) { xh in
                    rankProduct(xh, transpose: false, pa, transpose: true, u, m: t, n: r, k: dIn, alpha: 1, beta: 0)
                }
            }
            withFloats(b) { pb in
                producing(y, preserving: o.accumulate) { py in
                    if !o.accumulate {
                        var beta: Float = 0
                        if let bias = operands.bias {
                            withFloats(bias) { bias in fillRows(py, rows: t, with: bias, columns: dOut) }
                            beta = 1
                        }
                        weightProduct(px, m: t, w, transposeW: true, py, beta: beta)
                    }
                    rankProduct(u, transpose: false, pb, transpose: true, py, m: t, n: dOut, k: r, alpha: o.scale, beta: 1)
                }
            }
        }
    }

    /// G, x, W, A, B, u -> dx, dA, dB
    func loraBackward(_ o: LoRAOptions, _ operands: LoRABackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (g, x, w, a, b, uIn) = (operands.gradient, operands.x, operands.w, operands.a, operands.b, operands.u)
        let (dxOut, dAOut, dBOut) = (outputs[0], outputs[1], outputs[2])
        let t = x.shape[0], dIn = x.shape[1], dOut = w.shape[0], r = a.shape[0]
        let mask = DropoutMask(probability: o.dropout, seed: o.seed)
        let dA = pointer(dAOut).assumingMemoryBound(to: Float.self)
        let dB = pointer(dBOut).assumingMemoryBound(to: Float.self)
        withFloats(g) { pg in
            withFloats(uIn) { u in
                rankProduct(pg, transpose: true, u, transpose: false, dB, m: dOut, n: r, k: t, alpha: o.scale, beta: 0)
            }
            withScratch(t * r) { du in
                withFloats(b) { pb in
                    rankProduct(pg, transpose: false, pb, transpose: false, du, m: t, n: r, k: dOut, alpha: o.scale, beta: 0)
                }
                withFloats(x) { px in
                    droppedInput(px, rows: t, columns: dIn, mask) { xh in
                        rankProduct(du, transpose: true, xh, transpose: false, dA, m: r, n: dIn, k: t, alpha: 1, beta: 0)
                    }
                }
                guard o.inputGradient else { return }
                withFloats(a) { pa in
                    producing(dxOut, preserving: o.accumulate) { dx in
                        if !o.accumulate { weightProduct(pg, m: t, w, transposeW: false, dx, beta: 0) }
                        if mask.isIdentity {
                            rankProduct(du, transpose: false, pa, transpose: false, dx, m: t, n: dIn, k: r, alpha: 1, beta: 1)
                        } else {
                            withScratch(t * dIn) { branch in
                                rankProduct(du, transpose: false, pa, transpose: false, branch, m: t, n: dIn, k: r, alpha: 1, beta: 0)
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
