// Open MPI's C API without its headers or its library at build time: cmpi_load dlopens libmpi and
// resolves the few functions and predefined handles data-parallel training uses, so binaries build
// and run where MPI is absent, and only a run launched by mpirun needs it.
#ifndef CMPI_H
#define CMPI_H
#include <stdint.h>

/// Loads `path` (NULL: libmpi.so.40, then libmpi.so). 0 on success, else -1 and cmpi_last_error().
int cmpi_load(const char *path);
const char *cmpi_last_error(void);

/// MPI_Init_thread (funneled: only the thread that initialised calls MPI) and the world's rank and
/// size. Every function below returns MPI's error code (0 is MPI_SUCCESS).
int cmpi_init(int *rank, int *size);
/// MPI_Allreduce(MPI_IN_PLACE, …, MPI_SUM, MPI_COMM_WORLD) over `count` floats, in pieces of at
/// most 2^30 elements (MPI counts are ints).
int cmpi_allreduce_sum_float(float *values, int64_t count);
/// MPI_Bcast of `count` bytes from `root` over MPI_COMM_WORLD, in pieces of at most 2^30.
int cmpi_broadcast_bytes(void *bytes, int64_t count, int root);
/// MPI_Abort(MPI_COMM_WORLD, code): ends every process of the job.
void cmpi_abort(int code);
int cmpi_finalize(void);
#endif
