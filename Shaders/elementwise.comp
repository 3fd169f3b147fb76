#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// out[i] = f(a[i], b[i]) for the ops add, mul, scale, cast, scale_rows and clip_coefficient (OP, one of
// ElementwiseKernel.Operation's cases OP_ADD ... OP_CLIP_COEFFICIENT),
// clip_coefficient with the largest norm as `factor`. add and mul
// read b[i % columns] (b broadcast over rows, or columns = count); scale_rows reads b[i / columns]
// and may write over a (each element is read before it is written).
// Host defines: OP, A_T, B_T (add, mul, scale_rows), C_T, C_FROM_F32. Workgroup size: specialization constant 0.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer ABuf { A_T a_data[]; };
#if OP == OP_ADD || OP == OP_MUL || OP == OP_SCALE_ROWS
layout(std430, binding = 1) readonly buffer BBuf { B_T b_data[]; };
layout(std430, binding = 2) writeonly buffer CBuf { C_T c_data[]; };
#else
layout(std430, binding = 1) writeonly buffer CBuf { C_T c_data[]; };
#endif

layout(push_constant) uniform Params { uint count; float factor; uint columns; } p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        float a = to_f32(a_data[i]);
#if OP == OP_ADD
        float v = a + to_f32(b_data[i % p.columns]);
#elif OP == OP_MUL
        float v = a * to_f32(b_data[i % p.columns]);
#elif OP == OP_SCALE
        float v = a * p.factor;
#elif OP == OP_SCALE_ROWS
        float v = a * to_f32(b_data[i / p.columns]);
#elif OP == OP_CLIP_COEFFICIENT
        float v = min(1.0, p.factor / (sqrt(a) + 1e-6));
#elif OP == OP_CAST
        float v = a;
#else
#error "OP names no case of ElementwiseKernel.Operation"
#endif
        c_data[i] = C_FROM_F32(v);
    }
}
