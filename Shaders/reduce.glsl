// Workgroup sums by a fixed-shape tree in shared memory, so a result does not depend on
// scheduling. Every invocation of the workgroup must call them, in uniform control flow.
// Host/includer defines: REDUCE_SIZE, the workgroup size (a power of two).
shared vec4 reduce_scratch[REDUCE_SIZE];

vec4 workgroup_sum(vec4 v) {
    uint lid = gl_LocalInvocationID.x;
    reduce_scratch[lid] = v;
    barrier();
    for (uint width = REDUCE_SIZE / 2u; width > 0u; width >>= 1) {
        if (lid < width) reduce_scratch[lid] += reduce_scratch[lid + width];
        barrier();
    }
    vec4 total = reduce_scratch[0];
    barrier();  // the scratch may be reused at once
    return total;
}

float workgroup_max(float v) {
    uint lid = gl_LocalInvocationID.x;
    reduce_scratch[lid].x = v;
    barrier();
    for (uint width = REDUCE_SIZE / 2u; width > 0u; width >>= 1) {
        if (lid < width) reduce_scratch[lid].x = max(reduce_scratch[lid].x, reduce_scratch[lid + width].x);
        barrier();
    }
    float total = reduce_scratch[0].x;
    barrier();
    return total;
}
