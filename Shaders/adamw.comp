#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// One AdamW step in place (AdamWOptions in Op.swift; CPUBackend+Optimizer.swift is the twin):
//   θ ← θ·(1 − lr·λ);  m ← m + (1 − β₁)(g − m);  v ← v·β₂ + (1 − β₂)·g·g;
//   θ ← θ + (−lr/(1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + ε)
// in f32, with every product `precise` so no driver fuses it and the CPU's rounding holds.
// Host defines: P_T, P_FROM_F32 (the parameter's storage), G_T. Workgroup size: specialization constant 0.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer ParamBuf { P_T param[]; };
layout(std430, binding = 1) readonly buffer GradBuf { G_T grad[]; };
layout(std430, binding = 2) buffer MBuf { float m_data[]; };
layout(std430, binding = 3) buffer VBuf { float v_data[]; };

layout(push_constant) uniform Params {
    uint count;
    float decay, one_minus_beta1, beta2, one_minus_beta2, bias2_root, epsilon, negative_step;
} p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        float g = to_f32(grad[i]);
        precise float m = m_data[i] + p.one_minus_beta1 * (g - m_data[i]);
        precise float v = v_data[i] * p.beta2 + p.one_minus_beta2 * g * g;
        precise float denominator = sqrt(v) / p.bias2_root + p.epsilon;
        precise float theta = to_f32(param[i]) * p.decay + p.negative_step * m / denominator;
        m_data[i] = m;
        v_data[i] = v;
        param[i] = P_FROM_F32(theta);
    }
}
