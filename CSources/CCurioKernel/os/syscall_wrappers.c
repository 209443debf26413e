/* Thin wrappers for system calls and process settings Swift's Glibc
 * module does not expose (not the kernel's request system calls: those
 * are backend/try_request.c). */
#define _GNU_SOURCE
#include "ck.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

void ck_ignore_sigpipe(void) {
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
        !(old.sa_flags & SA_SIGINFO)) {
        struct sigaction ign;
        memset(&ign, 0, sizeof ign);
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGPIPE, &ign, NULL);
    }
}

int ck_pipe2(int fds[2], int flags) {
    return pipe2(fds, flags) == 0 ? 0 : -errno;
}

int ck_spawn_close_from(void *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, lowest);
}

int ck_accept_cloexec_nonblock(int fd) {
    int r = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    return r < 0 ? -errno : r;
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
