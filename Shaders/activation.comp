#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// y = f(x) (BACKWARD = 0) or dx = G ⊙ f′(x) (BACKWARD = 1) for f = SiLU, GELU (erf) or GELU (tanh),
// ACT = ACT_SILU, ACT_GELU or ACT_GELU_TANH (Activation in Op.swift; CPUBackend+Activation.swift is the twin).
// GATED: a gated MLP's activation with x the gate, y = f(x) ⊙ up, and backward dx = (G ⊙ up) ⊙ f′(x)
// beside d up = G ⊙ f(x), in the rounding order of the activation and product as two ops.
// Host defines: ACT, BACKWARD, GATED, X_T, G_T (backward), U_T (gated), C_T, C_FROM_F32, and DU_T,
// DU_FROM_F32 (gated backward). Workgroup size: specialization constant 0.
// An output may be bound to the memory of an input (a plan writes it in place, Op.overwritableInputs):
// each invocation reads all of element i before it writes element i of any output.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer XBuf { X_T x_data[]; };
#if BACKWARD
layout(std430, binding = 1) readonly buffer GBuf { G_T g_data[]; };
layout(std430, binding = 2) writeonly buffer CBuf { C_T c_data[]; };
#if GATED
layout(std430, binding = 3) readonly buffer UpBuf { U_T up_data[]; };
layout(std430, binding = 4) writeonly buffer DUpBuf { DU_T du_data[]; };
#endif
#else
layout(std430, binding = 1) writeonly buffer CBuf { C_T c_data[]; };
#if GATED
layout(std430, binding = 2) readonly buffer UpBuf { U_T up_data[]; };
#endif
#endif

layout(push_constant) uniform Params { uint count; } p;

// exp overflows to +inf for large |x| and both forms below stay finite there, where a driver's
// tanh or a division of infinities may not.
float sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }
float tanh_stable(float x) { return 1.0 - 2.0 / (exp(2.0 * x) + 1.0); }

// erf with a relative error below 1.2e-7 (Numerical Recipes' erfc Chebyshev fit); GLSL has no erf.
float erf_approx(float x) {
    float z = abs(x), t = 1.0 / (1.0 + 0.5 * z);
    float poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
               + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    float erfc_z = t * exp(poly);
    return x >= 0.0 ? 1.0 - erfc_z : erfc_z - 1.0;
}

const float SQRT_HALF = 0.70710678118654752;
const float INV_SQRT_2PI = 0.39894228040143268;
const float SQRT_2_OVER_PI = 0.79788456080286536;
const float GELU_CUBIC = 0.044715;

float f(float x) {
#if ACT == ACT_SILU
    return x * sigmoid(x);
#elif ACT == ACT_GELU
    return 0.5 * x * (1.0 + erf_approx(x * SQRT_HALF));
#elif ACT == ACT_GELU_TANH
    return 0.5 * x * (1.0 + tanh_stable(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)));
#endif
}

float df(float x) {
#if ACT == ACT_SILU
    float s = sigmoid(x);
    return s * (1.0 + x * (1.0 - s));
#elif ACT == ACT_GELU
    return 0.5 * (1.0 + erf_approx(x * SQRT_HALF)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
#elif ACT == ACT_GELU_TANH
    float t = tanh_stable(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x);
#else
#error "ACT names no case of Activation"
#endif
}

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        float x = to_f32(x_data[i]);
#if BACKWARD && GATED
        float g = to_f32(g_data[i]), up = to_f32(up_data[i]);
        float d_gate = g * up * df(x), d_up = g * f(x);
        c_data[i] = C_FROM_F32(d_gate);
        du_data[i] = DU_FROM_F32(d_up);
#elif BACKWARD
        c_data[i] = C_FROM_F32(to_f32(g_data[i]) * df(x));
#elif GATED
        c_data[i] = C_FROM_F32(f(x) * to_f32(up_data[i]));
#else
        c_data[i] = C_FROM_F32(f(x));
#endif
    }
}
