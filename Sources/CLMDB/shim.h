#ifndef LEDGERFLOW_CLMDB_SHIM_H
#define LEDGERFLOW_CLMDB_SHIM_H
#include <lmdb.h>
#include <pthread.h>

/// Names the calling thread (at most 15 bytes), for ps, top and perf: glibc declares pthread_setname_np only
/// under _GNU_SOURCE, which Swift's Glibc module is not built with.
static inline int ledgerflow_name_thread(const char *name) {
    extern int pthread_setname_np(pthread_t thread, const char *name);
    return pthread_setname_np(pthread_self(), name);
}

/// The calling thread's kernel id (its /proc/self/task/<id>), declared by glibc only under _GNU_SOURCE too.
static inline int ledgerflow_thread_id(void) {
    extern __pid_t gettid(void);
    return (int)gettid();
}
#endif
