#version 450

// The roofline's memory probe: a streaming copy of vec4s (VulkanBackend+Probe.swift times it).
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer SourceBuf { vec4 source[]; };
layout(std430, binding = 1) writeonly buffer TargetBuf { vec4 target[]; };

layout(push_constant) uniform Params { uint count; } p;

void main() {
    uint stride = gl_NumWorkGroups.x * 256u;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) target[i] = source[i];
}
