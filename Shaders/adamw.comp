#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "step_scalars.glsl"

// AdamW over a table of tensors (AdamWKernel in VulkanBackend+Optimizer.swift; CPUBackend+Optimizer.swift
// is the twin). An entry is a range of one tensor: its element offsets within the bound param, grad,
// m and v ranges, its length, and its tensor's index. What changes from step to step is in the step
// scalars (step_scalars.glsl): √(1 − β₂ᵗ), and per tensor its step's decay and −lr/(1 − β₁ᵗ) (its own
// learning rate), so the table and push constants stay the same every step. PASS:
// - PASS_SUM_OF_SQUARES: one workgroup per entry (a whole gradient) writes partial[entry.tensor] = Σ g²
//   in row_reduce.comp's order (a strided fma per invocation, then a fixed tree), so the sum is
//   the bits of row_sum_of_squares on that gradient.
// - PASS_CLIP_COEFFICIENT: one invocation adds the `entries` partials in order and writes
//   clip_grad_norm_'s min(1, max_norm / (√Σ + 1e-6)), as the chain of adds and clip_coefficient do.
// - PASS_UPDATE: one AdamW step in place, `chunk` elements of an entry per workgroup (an entry's
//   first workgroup is `first_group`), with g times the clip coefficient when CLIP:
//     θ ← θ·(1 − lr·λ);  m ← m + (1 − β₁)(g − m);  v ← v·β₂ + (1 − β₂)·g·g;
//     θ ← θ + (−lr/(1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + ε)
//   in f32, with every product `precise` so no driver fuses it and the CPU's rounding holds. With
//   GUARD, a non-finite loss[0] sets health[0] to 0 and changes nothing, and neither does a 0 flag
//   (each workgroup decides from the loss first, so the one that writes the flag changes no decision).
// Host defines: PASS, P_T, P_FROM_F32 (the parameters' storage; PASS_UPDATE), G_T (not PASS_CLIP_COEFFICIENT),
// CLIP and GUARD (PASS_UPDATE). Workgroup size: specialization constant 0 (256 for PASS_SUM_OF_SQUARES, 1 for
// PASS_CLIP_COEFFICIENT).
layout(local_size_x_id = 0) in;

struct Entry {
    uint param, grad, m, v, count, first_group, tensor;
};

layout(push_constant) uniform Params {
    uint entries, chunk;
    float one_minus_beta1, beta2, one_minus_beta2, epsilon, max_norm;
} p;

#if PASS == PASS_SUM_OF_SQUARES
layout(std430, binding = 0) readonly buffer GradBuf { G_T grad[]; };
layout(std430, binding = 1) readonly buffer TableBuf { Entry table[]; };
layout(std430, binding = 2) buffer PartialBuf { float partial[]; };

shared float tree[256];

void main() {
    Entry e = table[gl_WorkGroupID.x];
    uint lid = gl_LocalInvocationID.x;
    float s = 0.0;
    for (uint i = lid; i < e.count; i += 256u) {
        float v = to_f32(grad[e.grad + i]);
        s = fma(v, v, s);
    }
    tree[lid] = s;
    barrier();
    for (uint width = 128u; width > 0u; width >>= 1) {
        if (lid < width) tree[lid] += tree[lid + width];
        barrier();
    }
    if (lid == 0u) partial[e.tensor] = tree[0];
}

#elif PASS == PASS_CLIP_COEFFICIENT
layout(std430, binding = 0) readonly buffer PartialBuf { float partial[]; };
layout(std430, binding = 1) writeonly buffer CoefficientBuf { float coefficient[]; };

void main() {
    float total = partial[0];
    for (uint i = 1u; i < p.entries; i++) total += partial[i];
    coefficient[0] = min(1.0, p.max_norm / (sqrt(total) + 1e-6));
}

#elif PASS == PASS_UPDATE
layout(std430, binding = 0) buffer ParamBuf { P_T param[]; };
layout(std430, binding = 1) readonly buffer GradBuf { G_T grad[]; };
layout(std430, binding = 2) buffer MBuf { float m_data[]; };
layout(std430, binding = 3) buffer VBuf { float v_data[]; };
layout(std430, binding = 4) readonly buffer TableBuf { Entry table[]; };
#if CLIP
layout(std430, binding = 5) readonly buffer CoefficientBuf { float coefficient[]; };
#endif
#if GUARD
layout(std430, binding = 5 + CLIP) readonly buffer LossBuf { float loss[]; };
layout(std430, binding = 6 + CLIP) buffer HealthBuf { float health[]; };
#endif

void main() {
#if GUARD
    if (isinf(loss[0]) || isnan(loss[0])) {
        if (gl_GlobalInvocationID.x == 0u) health[0] = 0.0;
        return;
    }
    if (health[0] == 0.0) return;
#endif
    // The last entry that starts at or before this workgroup (uniform across it).
    uint lo = 0u, hi = p.entries - 1u;
    while (lo < hi) {
        uint mid = (lo + hi + 1u) / 2u;
        if (table[mid].first_group <= gl_WorkGroupID.x) lo = mid; else hi = mid - 1u;
    }
    Entry e = table[lo];
    vec2 rates = step_scalars.adamw_rates[e.tensor];
    uint start = (gl_WorkGroupID.x - e.first_group) * p.chunk;
    uint end = min(e.count, start + p.chunk);
    for (uint i = start + gl_LocalInvocationID.x; i < end; i += gl_WorkGroupSize.x) {
#if CLIP
        precise float g = to_f32(grad[e.grad + i]) * coefficient[0];
#else
        float g = to_f32(grad[e.grad + i]);
#endif
        float m_old = m_data[e.m + i];
        precise float m = m_old + p.one_minus_beta1 * (g - m_old);
        precise float v = v_data[e.v + i] * p.beta2 + p.one_minus_beta2 * g * g;
        precise float denominator = sqrt(v) / step_scalars.bias2_root + p.epsilon;
        precise float theta = to_f32(param[e.param + i]) * rates.x + rates.y * m / denominator;
        m_data[e.m + i] = m;
        v_data[e.v + i] = v;
        param[e.param + i] = P_FROM_F32(theta);
    }
}

#else
#error "PASS names no case of AdamWKernel.Pass"
#endif
