#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// Causal softmax attention with grouped KV heads over sequences of `sequence` rows packed along T
// (AttentionOptions in Op.swift; CPUBackend+Attention.swift is the twin). One workgroup of 64 per
// (row, head); each invocation holds up to 4 of the head's columns (head dim at most 256), and
// every dot product over a head is a fixed-shape tree (reduce.glsl), so results do not depend on
// scheduling.
// PASS_FORWARD: an online softmax over the row's keys in order: out and logsumexp.
// PASS_QUERY_GRADIENT: dq for (row, query head): Δ = G·out, then over keys P = exp(s − lse), dS = P·(G·v − Δ).
// PASS_KEY_VALUE_GRADIENT: dk and dv for (key row, KV head): over the group's query heads and the rows that see
//   the key, in order. (AttentionKernel.Pass)
// Host defines: PASS, Q_T, K_T, V_T, G_T and O_T (backward), C_T, C_FROM_F32.
#define REDUCE_SIZE 64u
layout(local_size_x = 64) in;
#include "reduce.glsl"

layout(std430, binding = 0) readonly buffer QBuf { Q_T q_data[]; };
layout(std430, binding = 1) readonly buffer KBuf { K_T k_data[]; };
layout(std430, binding = 2) readonly buffer VBuf { V_T v_data[]; };
#if PASS == PASS_FORWARD
layout(std430, binding = 3) writeonly buffer OutBuf { C_T out_data[]; };
layout(std430, binding = 4) writeonly buffer LseBuf { float lse_data[]; };
#else
layout(std430, binding = 3) readonly buffer GBuf { G_T g_data[]; };
layout(std430, binding = 4) readonly buffer OBuf { O_T o_data[]; };
layout(std430, binding = 5) readonly buffer LseBuf { float lse_data[]; };
#if PASS == PASS_QUERY_GRADIENT
layout(std430, binding = 6) writeonly buffer DqBuf { C_T dq_data[]; };
#else
layout(std430, binding = 6) writeonly buffer DkBuf { C_T dk_data[]; };
layout(std430, binding = 7) writeonly buffer DvBuf { C_T dv_data[]; };
#endif
#endif

layout(push_constant) uniform Params { uint rows, q_heads, kv_heads, head_dim, sequence; float scale; } p;

uint group_size() { return p.q_heads / p.kv_heads; }
uint q_base(uint row, uint h) { return (row * p.q_heads + h) * p.head_dim; }
uint kv_base(uint row, uint kh) { return (row * p.kv_heads + kh) * p.head_dim; }

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint item = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
#if PASS == PASS_KEY_VALUE_GRADIENT
    if (item >= p.rows * p.kv_heads) return;  // uniform across the workgroup
    uint j = item / p.kv_heads, kh = item % p.kv_heads;
    uint kb = kv_base(j, kh);
    float dk[4] = float[4](0.0, 0.0, 0.0, 0.0), dv[4] = float[4](0.0, 0.0, 0.0, 0.0);
    uint last = (j / p.sequence + 1u) * p.sequence;
    for (uint h = kh * group_size(); h < (kh + 1u) * group_size(); h++) {
        for (uint row = j; row < last; row++) {
            uint qb = q_base(row, h);
            vec4 part = vec4(0.0);
            for (uint n = 0u; n < 4u; n++) {
                uint c = lid + 64u * n;
                if (c < p.head_dim) {
                    float g = to_f32(g_data[qb + c]);
                    part += vec4(to_f32(q_data[qb + c]) * to_f32(k_data[kb + c]), g * to_f32(v_data[kb + c]), g * to_f32(o_data[qb + c]), 0.0);
                }
            }
            vec4 sums = workgroup_sum(part);
            float prob = exp(sums.x * p.scale - lse_data[row * p.q_heads + h]);
            float ds = prob * (sums.y - sums.z) * p.scale;
            for (uint n = 0u; n < 4u; n++) {
                uint c = lid + 64u * n;
                if (c < p.head_dim) {
                    dv[n] += prob * to_f32(g_data[qb + c]);
                    dk[n] += ds * to_f32(q_data[qb + c]);
                }
            }
        }
    }
    for (uint n = 0u; n < 4u; n++) {
        uint c = lid + 64u * n;
        if (c < p.head_dim) {
            dk_data[kb + c] = C_FROM_F32(dk[n]);
            dv_data[kb + c] = C_FROM_F32(dv[n]);
        }
    }
#else
    if (item >= p.rows * p.q_heads) return;  // uniform across the workgroup
    uint row = item / p.q_heads, h = item % p.q_heads, kh = h / group_size();
    uint qb = q_base(row, h);
    uint first = row / p.sequence * p.sequence;
    float acc[4] = float[4](0.0, 0.0, 0.0, 0.0);
#if PASS == PASS_FORWARD
    float largest = uintBitsToFloat(0xFF800000u), total = 0.0;  // −∞
    for (uint j = first; j <= row; j++) {
        uint kb = kv_base(j, kh);
        float part = 0.0;
        for (uint n = 0u; n < 4u; n++) {
            uint c = lid + 64u * n;
            if (c < p.head_dim) part += to_f32(q_data[qb + c]) * to_f32(k_data[kb + c]);
        }
        float s = workgroup_sum(vec4(part, 0.0, 0.0, 0.0)).x * p.scale;
        float next = max(largest, s);
        float correction = exp(largest - next), weight = exp(s - next);
        total = total * correction + weight;
        for (uint n = 0u; n < 4u; n++) {
            uint c = lid + 64u * n;
            if (c < p.head_dim) acc[n] = acc[n] * correction + weight * to_f32(v_data[kb + c]);
        }
        largest = next;
    }
    for (uint n = 0u; n < 4u; n++) {
        uint c = lid + 64u * n;
        if (c < p.head_dim) out_data[qb + c] = C_FROM_F32(acc[n] / total);
    }
    if (lid == 0u) lse_data[item] = largest + log(total);
#else
    float part = 0.0;
    for (uint n = 0u; n < 4u; n++) {
        uint c = lid + 64u * n;
        if (c < p.head_dim) part += to_f32(g_data[qb + c]) * to_f32(o_data[qb + c]);
    }
    float delta = workgroup_sum(vec4(part, 0.0, 0.0, 0.0)).x;
    float lse = lse_data[item];
    for (uint j = first; j <= row; j++) {
        uint kb = kv_base(j, kh);
        vec4 dots = vec4(0.0);
        for (uint n = 0u; n < 4u; n++) {
            uint c = lid + 64u * n;
            if (c < p.head_dim) {
                dots += vec4(to_f32(q_data[qb + c]) * to_f32(k_data[kb + c]), to_f32(g_data[qb + c]) * to_f32(v_data[kb + c]), 0.0, 0.0);
            }
        }
        vec4 sums = workgroup_sum(dots);
        float prob = exp(sums.x * p.scale - lse);
        float ds = prob * (sums.y - delta) * p.scale;
        for (uint n = 0u; n < 4u; n++) {
            uint c = lid + 64u * n;
            if (c < p.head_dim) acc[n] += ds * to_f32(k_data[kb + c]);
        }
    }
    for (uint n = 0u; n < 4u; n++) {
        uint c = lid + 64u * n;
        if (c < p.head_dim) dq_data[qb + c] = C_FROM_F32(acc[n]);
    }
#endif
#endif
}
