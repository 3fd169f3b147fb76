/// Typed views of the positional inputs and outputs of the ops that take four or more: the shape
/// rule (`Op.outputs(for:)`), both backends and the gradient rule read them by name, never by
/// position. `Value` is a `TensorDescriptor` in the shape rule, a `Tensor` in a backend and a graph
/// value in the gradient rule.
///
/// A view is made from a list whose length the shape rule has checked: the options say which
/// optional operands are there, so no view infers an operand from the list's length.

/// `loraForward`: x [T, d_in], W [d_out, d_in], A [r, d_in], B [d_out, r] [, bias [d_out]].
public struct LoRAForwardOperands<Value> {
    public var x, w, a, b: Value
    public var bias: Value?

    public init(x: Value, w: Value, a: Value, b: Value, bias: Value? = nil) {
        (self.x, self.w, self.a, self.b, self.bias) = (x, w, a, b, bias)
    }

    public init(_ values: [Value], _ o: LoRAOptions) {
        self.init(x: values[0], w: values[1], a: values[2], b: values[3], bias: o.hasBias ? values[4] : nil)
    }

    public var values: [Value] { [x, w, a, b] + (bias.map { [$0] } ?? []) }

    /// The same operands, each transformed (an absent bias stays absent).
    public func map<T>(_ transform: (Value) throws -> T) rethrows -> LoRAForwardOperands<T> {
        LoRAForwardOperands<T>(x: try transform(x), w: try transform(w), a: try transform(a), b: try transform(b), bias: try bias.map(transform))
    }
}

/// `loraBackward`: G [T, d_out], x, W, A, B, u [T, r] (u from forward).
public struct LoRABackwardOperands<Value> {
    public var gradient, x, w, a, b, u: Value

    public init(gradient: Value, x: Value, w: Value, a: Value, b: Value, u: Value) {
        (self.gradient, self.x, self.w, self.a, self.b, self.u) = (gradient, x, w, a, b, u)
    }

    public init(_ values: [Value]) {
        self.init(gradient: values[0], x: values[1], w: values[2], a: values[3], b: values[4], u: values[5])
    }

    public var values: [Value] { [gradient, x, w, a, b, u] }
}

/// `doraNorm`: W [d_out, d_in], A [r, d_in], B [d_out, r], m [d_out], ‖W‖²_row [d_out] f32.
public struct DoRANormOperands<Value> {
    public var w, a, b, magnitude, weightSquaredNorm: Value

    public init(w: Value, a: Value, b: Value, magnitude: Value, weightSquaredNorm: Value) {
        (self.w, self.a, self.b, self.magnitude, self.weightSquaredNorm) = (w, a, b, magnitude, weightSquaredNorm)
    }

    public init(_ values: [Value]) {
        self.init(w: values[0], a: values[1], b: values[2], magnitude: values[3], weightSquaredNorm: values[4])
    }

    public var values: [Value] { [w, a, b, magnitude, weightSquaredNorm] }
}

/// `doraForward`: x, W, A, B, m, ‖W‖²_row [, bias].
public struct DoRAForwardOperands<Value> {
    public var x, w, a, b, magnitude, weightSquaredNorm: Value
    public var bias: Value?

    public init(x: Value, w: Value, a: Value, b: Value, magnitude: Value, weightSquaredNorm: Value, bias: Value? = nil) {
        (self.x, self.w, self.a, self.b) = (x, w, a, b)
        (self.magnitude, self.weightSquaredNorm, self.bias) = (magnitude, weightSquaredNorm, bias)
    }

    public init(_ values: [Value], _ o: DoRAOptions) {
        self.init(x: values[0], w: values[1], a: values[2], b: values[3], magnitude: values[4], weightSquaredNorm: values[5],
                  bias: o.lora.hasBias ? values[6] : nil)
    }

    public var values: [Value] { [x, w, a, b, magnitude, weightSquaredNorm] + (bias.map { [$0] } ?? []) }

    /// What the norm reads.
    public var norm: DoRANormOperands<Value> {
        DoRANormOperands(w: w, a: a, b: b, magnitude: magnitude, weightSquaredNorm: weightSquaredNorm)
    }

    /// The same operands, each transformed (an absent bias stays absent).
    public func map<T>(_ transform: (Value) throws -> T) rethrows -> DoRAForwardOperands<T> {
        DoRAForwardOperands<T>(x: try transform(x), w: try transform(w), a: try transform(a), b: try transform(b),
                               magnitude: try transform(magnitude), weightSquaredNorm: try transform(weightSquaredNorm),
                               bias: try bias.map(transform))
    }
}

/// `doraForward`'s outputs: y [T, d_out], u [T, r] f32, n [d_out] f32, g [d_out] f32
/// [, inner [T, d_out] f32 when m is trainable].
public struct DoRAForwardResults<Value> {
    public var y, u, norm, g: Value
    public var inner: Value?

    public init(y: Value, u: Value, norm: Value, g: Value, inner: Value? = nil) {
        (self.y, self.u, self.norm, self.g, self.inner) = (y, u, norm, g, inner)
    }

    public init(_ values: [Value], _ o: DoRAOptions) {
        self.init(y: values[0], u: values[1], norm: values[2], g: values[3], inner: o.trainableMagnitude ? values[4] : nil)
    }

    public var values: [Value] { [y, u, norm, g] + (inner.map { [$0] } ?? []) }
}

/// `doraBackward`: G, x, W, A, B, u, n, g [, inner] (u, n, g and inner from forward).
public struct DoRABackwardOperands<Value> {
    public var gradient, x, w, a, b, u, norm, g: Value
    public var inner: Value?

    public init(gradient: Value, x: Value, w: Value, a: Value, b: Value, u: Value, norm: Value, g: Value, inner: Value? = nil) {
        (self.gradient, self.x, self.w, self.a, self.b) = (gradient, x, w, a, b)
        (self.u, self.norm, self.g, self.inner) = (u, norm, g, inner)
    }

    public init(_ values: [Value], _ o: DoRAOptions) {
        self.init(gradient: values[0], x: values[1], w: values[2], a: values[3], b: values[4], u: values[5], norm: values[6], g: values[7],
                  inner: o.trainableMagnitude ? values[8] : nil)
    }

    public var values: [Value] { [gradient, x, w, a, b, u, norm, g] + (inner.map { [$0] } ?? []) }
}

/// `doraBackward`'s outputs: dx, dA f32, dB f32 [, dm [d_out] f32 when m is trainable].
public struct DoRABackwardResults<Value> {
    public var dx, dA, dB: Value
    public var dm: Value?

    public init(_ values: [Value], _ o: DoRAOptions) {
        (dx, dA, dB) = (values[0], values[1], values[2])
        dm = o.trainableMagnitude ? values[3] : nil
    }

    public var values: [Value] { [dx, dA, dB] + (dm.map { [$0] } ?? []) }
}

/// `rmsNormBackward`: G, x, weight [d], rstd [rows] f32 (from forward) [, R: a gradient of x from
/// elsewhere, added onto dx].
public struct RMSNormBackwardOperands<Value> {
    public var gradient, x, weight, rstd: Value
    public var residualGradient: Value?

    public init(gradient: Value, x: Value, weight: Value, rstd: Value, residualGradient: Value? = nil) {
        (self.gradient, self.x, self.weight, self.rstd, self.residualGradient) = (gradient, x, weight, rstd, residualGradient)
    }

    public init(_ values: [Value]) {
        self.init(gradient: values[0], x: values[1], weight: values[2], rstd: values[3], residualGradient: values.count > 4 ? values[4] : nil)
    }

    public var values: [Value] { [gradient, x, weight, rstd] + [residualGradient].compactMap { $0 } }
}

/// `attentionBackward`: G, q, k, v, out, logsumexp (out and logsumexp from forward).
public struct AttentionBackwardOperands<Value> {
    public var gradient, q, k, v, out, logsumexp: Value
    /// The sequence starts of a `packed` attention.
    public var starts: Value?

    public init(gradient: Value, q: Value, k: Value, v: Value, out: Value, logsumexp: Value, starts: Value? = nil) {
        (self.gradient, self.q, self.k, self.v, self.out, self.logsumexp, self.starts) = (gradient, q, k, v, out, logsumexp, starts)
    }

    public init(_ values: [Value]) {
        self.init(gradient: values[0], q: values[1], k: values[2], v: values[3], out: values[4], logsumexp: values[5],
                  starts: values.count > 6 ? values[6] : nil)
    }

    public var values: [Value] { [gradient, q, k, v, out, logsumexp] + (starts.map { [$0] } ?? []) }
}

/// `cachedAttention`: q [T, H_q, D], the new rows k and v [T, H_kv, D], the key and value caches
/// [C, H_kv, D], past [1] i32 (how many cache rows come before the new ones).
public struct CachedAttentionOperands<Value> {
    public var q, k, v, keyCache, valueCache, past: Value

    public init(q: Value, k: Value, v: Value, keyCache: Value, valueCache: Value, past: Value) {
        (self.q, self.k, self.v, self.keyCache, self.valueCache, self.past) = (q, k, v, keyCache, valueCache, past)
    }

    public init(_ values: [Value]) {
        self.init(q: values[0], k: values[1], v: values[2], keyCache: values[3], valueCache: values[4], past: values[5])
    }

    public var values: [Value] { [q, k, v, keyCache, valueCache, past] }
}

/// `crossEntropyBackward`: logits [T, V], labels [T] i32, logsumexp [T] f32 (from forward), dLoss [1] f32.
public struct CrossEntropyBackwardOperands<Value> {
    public var logits, labels, logsumexp, lossGradient: Value

    public init(logits: Value, labels: Value, logsumexp: Value, lossGradient: Value) {
        (self.logits, self.labels, self.logsumexp, self.lossGradient) = (logits, labels, logsumexp, lossGradient)
    }

    public init(_ values: [Value]) {
        self.init(logits: values[0], labels: values[1], logsumexp: values[2], lossGradient: values[3])
    }

    public var values: [Value] { [logits, labels, logsumexp, lossGradient] }
}

/// `linearCrossEntropyBackward`: hidden [T, d], weight [V, d], labels [T] i32, logsumexp [T] f32
/// (from forward), dLoss [1] f32.
public struct LinearCrossEntropyBackwardOperands<Value> {
    public var hidden, weight, labels, logsumexp, lossGradient: Value

    public init(hidden: Value, weight: Value, labels: Value, logsumexp: Value, lossGradient: Value) {
        (self.hidden, self.weight, self.labels, self.logsumexp, self.lossGradient) = (hidden, weight, labels, logsumexp, lossGradient)
    }

    public init(_ values: [Value]) {
        self.init(hidden: values[0], weight: values[1], labels: values[2], logsumexp: values[3], lossGradient: values[4])
    }

    public var values: [Value] { [hidden, weight, labels, logsumexp, lossGradient] }
}

/// `adamW`: param, grad, m, v; the outputs are param, m and v, updated in place.
public struct AdamWOperands<Value> {
    public var parameter, gradient, m, v: Value

    public init(_ values: [Value]) {
        (parameter, gradient, m, v) = (values[0], values[1], values[2], values[3])
    }
}

/// `multiTensorAdamW`: n params, n grads, n first moments, n second moments (and, guarded, the loss
/// and the health flag, which `init` leaves out); the outputs are the params, m and v (and the
/// flag), updated in place.
public struct MultiTensorAdamWOperands<Value> {
    public var parameters, gradients, m, v: [Value]

    public init(_ values: [Value]) {
        let n = values.count / 4
        (parameters, gradients, m, v) = (Array(values[0..<n]), Array(values[n..<(2 * n)]), Array(values[(2 * n)..<(3 * n)]), Array(values[(3 * n)..<(4 * n)]))
    }

    public var count: Int { parameters.count }

    /// Tensor `i`'s four operands, as the single-tensor op takes them.
    public func tensor(_ i: Int) -> AdamWOperands<Value> {
        AdamWOperands([parameters[i], gradients[i], m[i], v[i]])
    }
}

extension DoRAForwardResults: Sendable where Value: Sendable {}
