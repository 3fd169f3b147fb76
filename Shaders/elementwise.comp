#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// out[i] = f(a[i], b[i]) for the ops add, mul, scale, cast, scale_rows and clip_coefficient (OP = 0...5),
// clip_coefficient with the largest norm as `factor`. add and mul
// read b[i % columns] (b broadcast over rows, or columns = count); scale_rows reads b[i / columns]
// and may write over a (each element is read before it is written).
// Host defines: OP, A_T, B_T (add, mul, scale_rows), C_T, C_FROM_F32. Workgroup size: specialization constant 0.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer ABuf { A_T a_data[]; };
#if OP <= 1 || OP == 4
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
#if OP == 0
        float v = a + to_f32(b_data[i % p.columns]);
#elif OP == 1
        float v = a * to_f32(b_data[i % p.columns]);
#elif OP == 2
        float v = a * p.factor;
#elif OP == 4
        float v = a * to_f32(b_data[i / p.columns]);
#elif OP == 5
        float v = min(1.0, p.factor / (sqrt(a) + 1e-6));
#else
        float v = a;
#endif
        c_data[i] = C_FROM_F32(v);
    }
}
