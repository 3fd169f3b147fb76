#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// The two LoRA-branch products of backward that read G = ∂L/∂y [T, d_out], from one read of G:
//   du = G·B   [T, r]      (partial over this workgroup's 128 columns of G)
//   dB = Gᵀ·u  [d_out, r]  (partial over this workgroup's rows of G)
// Grid: x over d_out in blocks of BJ, y over T in chunks of TCH, z over r in blocks of RC.
// Partials: du_part[x][T][r] and db_part[y][d_out][r], summed in order by sum_blocks.comp (with the
// scale s), so the result is deterministic. Host defines: G_T, B_T, U_T, RC (16 or 32).
// DORA: the LoRA branch sees G⊙g (g per column j: B's rows and dB are scaled by g_j), and the same
// read of G gives DoRA's magnitude gradient, dm_part[y][j] = Σ_t G[t,j]·inner[t,j] / max(n_j, eps),
// over this workgroup's rows (the first rank block computes it, when DORA_DM is set).
#define BT 16
#define BJ 128
#define TCH 256
#define DU_PER (RC / 16)
#define DB_PER (RC / 2)
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer GBuf { G_T g_data[]; };
layout(std430, binding = 1) readonly buffer BBuf { B_T b_data[]; };
layout(std430, binding = 2) readonly buffer UBuf { U_T u_data[]; };
layout(std430, binding = 3) writeonly buffer DuBuf { float du_part[]; };
layout(std430, binding = 4) writeonly buffer DbBuf { float db_part[]; };

#if DORA
layout(std430, binding = 5) readonly buffer GScaleBuf { float g_col[]; };
layout(std430, binding = 6) readonly buffer NormBuf { float norm[]; };
layout(std430, binding = 7) readonly buffer InnerBuf { float inner[]; };
layout(std430, binding = 8) writeonly buffer DmBuf { float dm_part[]; };
#endif

layout(push_constant) uniform Params { uint T, d_out, r; float eps; } p;

// Padded by one column: the du loop's 16 rows of a wavefront read one column each step, which the
// unpadded 128-float rows put in one bank.
shared float Gs[BT][BJ + 1];
shared float Bs[BJ][RC];
shared float Us[BT][RC];

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint j0 = gl_WorkGroupID.x * BJ, t_begin = gl_WorkGroupID.y * TCH, c0 = gl_WorkGroupID.z * RC;
    uint t_end = min(t_begin + TCH, p.T);

    for (uint e = lid; e < BJ * RC; e += 256u) {
        uint jj = e / RC, cc = e % RC, j = j0 + jj, c = c0 + cc;
        Bs[jj][cc] = (j < p.d_out && c < p.r) ? to_f32(b_data[j * p.r + c]) : 0.0;
#if DORA
        if (j < p.d_out) Bs[jj][cc] *= g_col[j];
#endif
    }
#if DORA
    bool dm_thread = DORA_DM != 0 && gl_WorkGroupID.z == 0u && lid < BJ && j0 + lid < p.d_out;
    float dm_acc = 0.0;
#endif
    float db_acc[DB_PER];
    for (uint q = 0u; q < DB_PER; q++) db_acc[q] = 0.0;
    uint db_j = lid % BJ, db_c = lid / BJ;     // this thread's dB column: c = db_c + 2q
    uint du_t = lid % BT, du_c = lid / BT;     // this thread's du row: c = du_c + 16q

    for (uint t0 = t_begin; t0 < t_end; t0 += BT) {
        for (uint e = lid; e < BT * BJ; e += 256u) {
            uint tt = e / BJ, jj = e % BJ, t = t0 + tt, j = j0 + jj;
            Gs[tt][jj] = (t < t_end && j < p.d_out) ? to_f32(g_data[t * p.d_out + j]) : 0.0;
        }
        for (uint e = lid; e < BT * RC; e += 256u) {
            uint tt = e / RC, cc = e % RC, t = t0 + tt, c = c0 + cc;
            Us[tt][cc] = (t < t_end && c < p.r) ? to_f32(u_data[t * p.r + c]) : 0.0;
        }
        barrier();
        for (uint q = 0u; q < DU_PER; q++) {
            uint cc = du_c + 16u * q;
            float s = 0.0;
            for (uint jj = 0u; jj < BJ; jj++) s = fma(Gs[du_t][jj], Bs[jj][cc], s);
            uint t = t0 + du_t, c = c0 + cc;
            if (t < t_end && c < p.r) du_part[(gl_WorkGroupID.x * p.T + t) * p.r + c] = s;
        }
#if DORA
        if (dm_thread) {
            for (uint tt = 0u; tt < BT && t0 + tt < t_end; tt++)
                dm_acc = fma(Gs[tt][lid], inner[(t0 + tt) * p.d_out + j0 + lid], dm_acc);
        }
#endif
        for (uint q = 0u; q < DB_PER; q++) {
            uint cc = db_c + 2u * q;
            float s = db_acc[q];
            for (uint tt = 0u; tt < BT; tt++) s = fma(Gs[tt][db_j], Us[tt][cc], s);
            db_acc[q] = s;
        }
        barrier();
    }
    uint j = j0 + db_j;
    if (j < p.d_out) {
#if DORA
        float g_j = g_col[j];
#else
        float g_j = 1.0;
#endif
        for (uint q = 0u; q < DB_PER; q++) {
            uint c = c0 + db_c + 2u * q;
            if (c < p.r) db_part[(gl_WorkGroupID.y * p.d_out + j) * p.r + c] = g_j * db_acc[q];
        }
    }
#if DORA
    if (dm_thread) dm_part[gl_WorkGroupID.y * p.d_out + j0 + lid] = dm_acc / max(norm[j0 + lid], p.eps);
#endif
}
