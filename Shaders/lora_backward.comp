#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// The two LoRA-branch products of backward that read G = ∂L/∂y [T, d_out], in one dispatch:
//   z = 0: du = s·G·B   [T, r]      (a block of DU_BM rows of du per workgroup, over all of d_out)
//   z = 1: dB = s·Gᵀ·u  [d_out, r]  (a block of BM rows of dB per workgroup, over all of T)
// Each workgroup sums its whole inner dimension in order, one thread per output element, so the
// result is deterministic and needs no second pass over partial sums (the split over workgroups
// that one read of G for both products needs costs two more dispatches than reading G twice).
// Grid: x over row blocks of the longer product (a workgroup past its product's rows returns), y
// over r in blocks of RC, z the product. Host defines: G_T, B_T, U_T, RC (16 or 32), DU_BM (du's
// rows per workgroup: BM, or 256 / RC — one output per thread — where T is short beside d_out, so
// the du pass, whose every thread sums d_out terms, runs on more workgroups; each output is still
// one thread's sum in order, the same bits either way), ACCUMULATE (dB and dm add onto what they
// hold: windows of G's rows gathered in order).
// DORA: the branch sees G⊙g (g per column j: B's rows and dB are scaled by g_j), and the dB
// workgroups of the first rank block give DoRA's magnitude gradient beside it,
// dm[j] = Σ_t G[t,j]·inner[t,j] / max(n_j, eps), when DORA_DM is set.
#define BM 64
#define BK 32
#define ROW_STEP (256 / RC)
#define PER (BM / ROW_STEP)
#define DU_PER (DU_BM / ROW_STEP)
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer GBuf { G_T g_data[]; };
layout(std430, binding = 1) readonly buffer BBuf { B_T b_data[]; };
layout(std430, binding = 2) readonly buffer UBuf { U_T u_data[]; };
layout(std430, binding = 3) writeonly buffer DuBuf { float du[]; };
#if ACCUMULATE
layout(std430, binding = 4) buffer DbBuf { float db[]; };
#else
layout(std430, binding = 4) writeonly buffer DbBuf { float db[]; };
#endif

#if DORA
layout(std430, binding = 5) readonly buffer GScaleBuf { float g_col[]; };
layout(std430, binding = 6) readonly buffer NormBuf { float norm[]; };
layout(std430, binding = 7) readonly buffer InnerBuf { float inner[]; };
#if ACCUMULATE
layout(std430, binding = 8) buffer DmBuf { float dm[]; };
#else
layout(std430, binding = 8) writeonly buffer DmBuf { float dm[]; };
#endif
#endif

layout(push_constant) uniform Params { uint T, d_out, r; float eps, scale; } p;

// X(m, k) and Y(k, c) of this workgroup's product for one step of BK along k. Padded by one
// column: the loads of the dB pass walk down m, one bank per row.
shared float Xs[BM][BK + 1];
shared float Ys[BK][RC];

void main() {
    uint lid = gl_LocalInvocationID.x;
    bool db_pass = gl_WorkGroupID.z == 1u;
    uint rows = db_pass ? p.d_out : p.T, depth = db_pass ? p.T : p.d_out;
    uint bm = db_pass ? BM : DU_BM;
    uint m0 = gl_WorkGroupID.x * bm, c0 = gl_WorkGroupID.y * RC;
    if (m0 >= rows) return;
    uint cc = lid % RC, mq = lid / RC;   // this thread's column, and its rows mq + ROW_STEP·i
    float acc[PER];
    for (uint i = 0u; i < PER; i++) acc[i] = 0.0;
#if DORA
    bool dm_thread = DORA_DM != 0 && db_pass && gl_WorkGroupID.y == 0u && lid < BM && m0 + lid < rows;
    float dm_acc = 0.0;
#endif

    for (uint k0 = 0u; k0 < depth; k0 += BK) {
        // X is G for du (contiguous along k) and Gᵀ for dB (contiguous along m): consecutive
        // threads load consecutive elements of G either way.
        for (uint e = lid; e < bm * BK; e += 256u) {
            uint mm = db_pass ? e % BM : e / BK, kk = db_pass ? e / BM : e % BK;
            uint m = m0 + mm, k = k0 + kk;
            float v = 0.0;
            if (m < rows && k < depth) v = to_f32(g_data[db_pass ? k * p.d_out + m : m * p.d_out + k]);
            Xs[mm][kk] = v;
        }
        // Y is B (with DoRA, its rows scaled by g) for du, u for dB.
        for (uint e = lid; e < BK * RC; e += 256u) {
            uint kk = e / RC, c = c0 + e % RC, k = k0 + kk;
            float v = 0.0;
            if (k < depth && c < p.r) {
                if (db_pass) {
                    v = to_f32(u_data[k * p.r + c]);
                } else {
                    v = to_f32(b_data[k * p.r + c]);
#if DORA
                    v *= g_col[k];
#endif
                }
            }
            Ys[kk][e % RC] = v;
        }
        barrier();
        // Constant trip counts keep acc in registers; with DU_BM = BM the second loop is dead code.
        if (db_pass || DU_PER == PER) {
            for (uint kk = 0u; kk < BK; kk++) {
                float y = Ys[kk][cc];
                for (uint i = 0u; i < PER; i++) acc[i] = fma(Xs[mq + ROW_STEP * i][kk], y, acc[i]);
            }
        } else {
            for (uint kk = 0u; kk < BK; kk++) {
                float y = Ys[kk][cc];
                for (uint i = 0u; i < DU_PER; i++) acc[i] = fma(Xs[mq + ROW_STEP * i][kk], y, acc[i]);
            }
        }
#if DORA
        if (dm_thread) {
            for (uint kk = 0u; kk < BK && k0 + kk < depth; kk++)
                dm_acc = fma(Xs[lid][kk], inner[(k0 + kk) * p.d_out + m0 + lid], dm_acc);
        }
#endif
        barrier();
    }

#if DORA
    if (dm_thread) {
        float value = dm_acc / max(norm[m0 + lid], p.eps);
#if ACCUMULATE
        dm[m0 + lid] += value;
#else
        dm[m0 + lid] = value;
#endif
    }
#endif

    uint c = c0 + cc;
    if (c >= p.r) return;
    for (uint i = 0u; i < PER; i++) {
        uint m = m0 + mq + ROW_STEP * i;
        if (mq + ROW_STEP * i >= bm || m >= rows) break;
        if (!db_pass) {
            du[m * p.r + c] = p.scale * acc[i];
            continue;
        }
#if DORA
        float value = p.scale * g_col[m] * acc[i];
#else
        float value = p.scale * acc[i];
#endif
#if ACCUMULATE
        db[m * p.r + c] += value;
#else
        db[m * p.r + c] = value;
#endif
    }
}
