#include "CMPI.h"
#include <dlfcn.h>
#include <stdio.h>

// Open MPI's handles are pointers to its predefined objects (MPI_COMM_WORLD is &ompi_mpi_comm_world),
// so they are symbols to resolve, not constants to compile in.
typedef void *cmpi_handle;
#define CMPI_THREAD_FUNNELED 1
#define CMPI_IN_PLACE ((void *)1)
#define CMPI_CHUNK ((int64_t)1 << 30)

static int (*p_init_thread)(int *, char ***, int, int *);
static int (*p_comm_rank)(cmpi_handle, int *);
static int (*p_comm_size)(cmpi_handle, int *);
static int (*p_allreduce)(const void *, void *, int, cmpi_handle, cmpi_handle, cmpi_handle);
static int (*p_bcast)(void *, int, cmpi_handle, int, cmpi_handle);
static int (*p_abort)(cmpi_handle, int);
static int (*p_finalize)(void);
static cmpi_handle comm_world, type_float, type_byte, op_sum;
static char cmpi_error[512];

#define CMPI_RESOLVE(target, symbol)                                                         \
    if (!(*(void **)&(target) = dlsym(lib, symbol))) {                                     \
        snprintf(cmpi_error, sizeof cmpi_error, "%s does not define %s (not Open MPI?)", name, symbol); \
        return -1;                                                                           \
    }

int cmpi_load(const char *path) {
    if (p_init_thread) return 0;
    const char *name = path ? path : "libmpi.so.40";
    // RTLD_GLOBAL: Open MPI's own plugins, dlopened in turn, resolve libmpi's symbols globally.
    void *lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!lib && !path) lib = dlopen(name = "libmpi.so", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(cmpi_error, sizeof cmpi_error, "%s", dlerror());
        return -1;
    }
    CMPI_RESOLVE(comm_world, "ompi_mpi_comm_world")
    CMPI_RESOLVE(type_float, "ompi_mpi_float")
    CMPI_RESOLVE(type_byte, "ompi_mpi_byte")
    CMPI_RESOLVE(op_sum, "ompi_mpi_op_sum")
    CMPI_RESOLVE(p_comm_rank, "MPI_Comm_rank")
    CMPI_RESOLVE(p_comm_size, "MPI_Comm_size")
    CMPI_RESOLVE(p_allreduce, "MPI_Allreduce")
    CMPI_RESOLVE(p_bcast, "MPI_Bcast")
    CMPI_RESOLVE(p_abort, "MPI_Abort")
    CMPI_RESOLVE(p_finalize, "MPI_Finalize")
    CMPI_RESOLVE(p_init_thread, "MPI_Init_thread")  // last: it marks the library loaded
    return 0;
}

const char *cmpi_last_error(void) { return cmpi_error; }

int cmpi_init(int *rank, int *size) {
    int provided = 0;
    int status = p_init_thread(NULL, NULL, CMPI_THREAD_FUNNELED, &provided);
    if (status == 0) status = p_comm_rank(comm_world, rank);
    if (status == 0) status = p_comm_size(comm_world, size);
    return status;
}

int cmpi_allreduce_sum_float(float *values, int64_t count) {
    for (int64_t start = 0; start < count; start += CMPI_CHUNK) {
        int64_t n = count - start < CMPI_CHUNK ? count - start : CMPI_CHUNK;
        int status = p_allreduce(CMPI_IN_PLACE, values + start, (int)n, type_float, op_sum, comm_world);
        if (status != 0) return status;
    }
    return 0;
}

int cmpi_broadcast_bytes(void *bytes, int64_t count, int root) {
    for (int64_t start = 0; start < count; start += CMPI_CHUNK) {
        int64_t n = count - start < CMPI_CHUNK ? count - start : CMPI_CHUNK;
        int status = p_bcast((char *)bytes + start, (int)n, type_byte, root, comm_world);
        if (status != 0) return status;
    }
    return 0;
}

void cmpi_abort(int code) { p_abort(comm_world, code); }

int cmpi_finalize(void) { return p_finalize(); }
