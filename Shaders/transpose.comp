#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// out[i] = x[source(i)]: the output's row-major index split over its 4 (padded) dimensions, each
// coordinate times the input's stride along that axis (TransposeLayout.swift; CPUBackend+Transpose.swift
// is the twin). Host defines: X_T, C_T, C_FROM_F32. Workgroup size: specialization constant 0.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer XBuf { X_T x_data[]; };
layout(std430, binding = 1) writeonly buffer OutBuf { C_T out_data[]; };

layout(push_constant) uniform Params { uvec4 dims; uvec4 strides; uint count; } p;  // uvec4s first: std430 aligns them to 16 bytes

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        uint rest = i, source = 0u;
        for (int axis = 3; axis >= 0; axis--) {
            source += rest % p.dims[axis] * p.strides[axis];
            rest /= p.dims[axis];
        }
        out_data[i] = C_FROM_F32(to_f32(x_data[source]));
    }
}
