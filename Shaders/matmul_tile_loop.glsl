// One tiled product, included by matmul.comp once per product with these defined:
// PRODUCT_NAME (the function), PRODUCT_K (its inner dimension), PRODUCT_LOAD_A(m, k), PRODUCT_LOAD_B(k, n).
// Thread (tx, ty) owns rows ty + 16·i and columns tx + 16·j of the 64×64 tile.
void PRODUCT_NAME(uint m0, uint n0, inout float acc[TM][TN]) {
    uint lid = gl_LocalInvocationID.x, tx = lid % 16u, ty = lid / 16u;
    for (uint k0 = 0u; k0 < PRODUCT_K; k0 += BK) {
        for (uint e = lid; e < BM * BK; e += 256u) {
#if TRANS_A
            uint mm = e % BM, kk = e / BM;  // consecutive threads walk m, contiguous in Aᵀ
#else
            uint mm = e / BK, kk = e % BK;  // consecutive threads walk k, contiguous in A
#endif
            As[kk][mm] = PRODUCT_LOAD_A(m0 + mm, k0 + kk);
        }
        for (uint e = lid; e < BN * BK; e += 256u) {
#if TRANS_B
            uint nn = e / BK, kk = e % BK;
#else
            uint nn = e % BN, kk = e / BN;
#endif
            Bs[kk][nn] = PRODUCT_LOAD_B(k0 + kk, n0 + nn);
        }
        barrier();
        for (uint kk = 0u; kk < BK; kk++) {
            float a[TM], b[TN];
            for (uint i = 0u; i < TM; i++) a[i] = As[kk][ty + 16u * i];
            for (uint j = 0u; j < TN; j++) b[j] = Bs[kk][tx + 16u * j];
            for (uint i = 0u; i < TM; i++)
                for (uint j = 0u; j < TN; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier();
    }
}
#undef PRODUCT_NAME
#undef PRODUCT_K
#undef PRODUCT_LOAD_A
#undef PRODUCT_LOAD_B
