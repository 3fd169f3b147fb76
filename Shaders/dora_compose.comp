#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "dora.glsl"

// DoRA's compose on its own: y = base + (g − 1)·base + g·(s·lora), one read of base, lora and g and
// one write of y. doraForward fuses the same formula into its base matmul's epilogue instead.
// Host defines: BASE_T, L_T, G_T, C_T, C_FROM_F32. Workgroup size: specialization constant 0.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer BaseBuf { BASE_T base_data[]; };
layout(std430, binding = 1) readonly buffer LoraBuf { L_T lora_data[]; };
layout(std430, binding = 2) readonly buffer GBuf { G_T g_data[]; };
layout(std430, binding = 3) writeonly buffer CBuf { C_T c_data[]; };

layout(push_constant) uniform Params { uint count; uint columns; float scale; } p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        float g = to_f32(g_data[i % p.columns]);
        c_data[i] = C_FROM_F32(dora_compose(to_f32(base_data[i]), p.scale * to_f32(lora_data[i]), g, true));
    }
}
