// matmul.comp's tiled product over k in [k_begin, k_end), added to acc: load_a(m, k) and load_b(k, n)
// give quads along the operand's contiguous axis, zero from k_end on.
// Each thread stages its share of the next tile in registers while it computes on the current one,
// then stores it into the other shared buffer, so one barrier per step orders both.
void accumulate_product(uint m0, uint n0, uint k_begin, uint k_end) {
    uint lid = gl_LocalInvocationID.x, tx = lid % (BN / TN), ty = lid / (BN / TN);
    vec4 a_next[A_QUADS], b_next[B_QUADS];
    uint steps = (k_end - k_begin + BK - 1u) / BK;
    for (uint step = 0u; step <= steps; step++) {
        uint k0 = k_begin + step * BK;
        if (step < steps) {
            // Quad q of the tile: along k (A) or m (Aᵀ) as the operand is contiguous; n or k alike for B.
            for (uint i = 0u; i < A_QUADS; i++) {
                uint q = lid + i * THREADS;
                if (q >= BM * BK / 4u) break;
#if TRANS_A
                a_next[i] = load_a(m0 + 4u * (q % (BM / 4u)), k0 + q / (BM / 4u));
#else
                a_next[i] = load_a(m0 + q / (BK / 4u), k0 + 4u * (q % (BK / 4u)));
#endif
            }
            for (uint i = 0u; i < B_QUADS; i++) {
                uint q = lid + i * THREADS;
                if (q >= BN * BK / 4u) break;
#if TRANS_B
                b_next[i] = load_b(k0 + 4u * (q % (BK / 4u)), n0 + q / (BK / 4u));
#else
                b_next[i] = load_b(k0 + q / (BN / 4u), n0 + 4u * (q % (BN / 4u)));
#endif
            }
        }
        if (step > 0u) {
            uint a_base = ((step - 1u) & 1u) * BK * A_ROW, b_base = ((step - 1u) & 1u) * BK * B_ROW;
            for (uint kk = 0u; kk < BK; kk++) {
                vec4 a[TM / 4u], b[TN / 4u];
                for (uint g = 0u; g < TM / 4u; g++) a[g] = As[a_base + kk * A_ROW + g * (BM / TM) + ty];
                for (uint h = 0u; h < TN / 4u; h++) b[h] = Bs[b_base + kk * B_ROW + h * (BN / TN) + tx];
                for (uint i = 0u; i < TM; i++)
                    for (uint j = 0u; j < TN; j++)
                        acc[i * TN + j] = fma(a[i / 4u][i % 4u], b[j / 4u][j % 4u], acc[i * TN + j]);
            }
        }
        if (step < steps) {
            uint a_base = (step & 1u) * BK * A_ROW, b_base = (step & 1u) * BK * B_ROW;
            for (uint i = 0u; i < A_QUADS; i++) {
                uint q = lid + i * THREADS;
                if (q >= BM * BK / 4u) break;
#if TRANS_A
                As[a_base + (q / (BM / 4u)) * A_ROW + q % (BM / 4u)] = a_next[i];
#else
                uint mm = q / (BK / 4u), kk = 4u * (q % (BK / 4u));
                for (uint e = 0u; e < 4u; e++) As[a_base + (kk + e) * A_ROW + mm / 4u][mm % 4u] = a_next[i][e];
#endif
            }
            for (uint i = 0u; i < B_QUADS; i++) {
                uint q = lid + i * THREADS;
                if (q >= BN * BK / 4u) break;
#if TRANS_B
                uint nn = q / (BK / 4u), kk = 4u * (q % (BK / 4u));
                for (uint e = 0u; e < 4u; e++) Bs[b_base + (kk + e) * B_ROW + nn / 4u][nn % 4u] = b_next[i][e];
#else
                Bs[b_base + (q / (BN / 4u)) * B_ROW + q % (BN / 4u)] = b_next[i];
#endif
            }
        }
        barrier();
    }
}
