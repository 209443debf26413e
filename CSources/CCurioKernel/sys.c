/* Thin wrappers for system calls the Swift side cannot reach directly. */
#define _GNU_SOURCE
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

uint64_t ck_next_serial(void) {
    static _Atomic uint64_t next = 1;
    return atomic_fetch_add(&next, 1);
}

int ck_pipe2(int fds[2], int flags) {
    return pipe2(fds, flags) == 0 ? 0 : -errno;
}

int ck_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    long r = syscall(SYS_pidfd_open, pid, 0);
    return r < 0 ? -errno : (int)r;
#else
    (void)pid;
    return -ENOSYS;
#endif
}
