#include <cblas.h>

/* LAPACK's divide-and-conquer SVD, which OpenBLAS builds in (Fortran calling convention). */
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork,
             int *iwork, int *info);

/* LAPACK's Householder QR and the explicit Q from its reflectors, as PyTorch's linalg.qr uses them. */
void dgeqrf_(const int *m, const int *n, double *a, const int *lda, double *tau, double *work, const int *lwork, int *info);
void dorgqr_(const int *m, const int *n, const int *k, double *a, const int *lda, const double *tau, double *work,
             const int *lwork, int *info);

/* LAPACK's LU solve of A·X = B, for CorDA's inverse of the damped covariance, as torch.linalg.inv computes it. */
void dgesv_(const int *n, const int *nrhs, double *a, const int *lda, int *ipiv, double *b, const int *ldb, int *info);
