/* Signals reach Curio through a self-pipe written by a C handler.
 *
 * signalfd would be the textbook choice, but it only sees signals that are
 * blocked in every thread of the process, and threads created before
 * Curio (the Swift runtime's pool, the caller's own) keep them unblocked:
 * the signal would run its default action there instead. A handler works
 * whichever thread the signal lands on. It only writes one byte, which is
 * async-signal-safe; no Swift code ever runs in a handler. */
#define _GNU_SOURCE
#include "../core/kernel.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int sig_pipe[2] = {-1, -1};
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_refs[_NSIG];
static struct sigaction sig_saved[_NSIG];

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    /* A full pipe drops the byte; Curio queues one wake-up per burst anyway. */
    ssize_t r = write(sig_pipe[1], &b, 1);
    (void)r;
    errno = saved;
}

int ck_signal_pipe(void) {
    pthread_mutex_lock(&sig_lock);
    if (sig_pipe[0] < 0) {
        if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
            int e = errno;
            pthread_mutex_unlock(&sig_lock);
            return -e;
        }
    }
    int fd = sig_pipe[0];
    pthread_mutex_unlock(&sig_lock);
    return fd;
}

int ck_signal_watch(int sig) {
    if (sig <= 0 || sig >= _NSIG) return -EINVAL;
    if (sig == SIGKILL || sig == SIGSTOP) return -EPERM;
    int fd = ck_signal_pipe();
    if (fd < 0) return fd;
    pthread_mutex_lock(&sig_lock);
    if (sig_refs[sig]++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(sig, &sa, &sig_saved[sig]) != 0) {
            int e = errno;
            sig_refs[sig]--;
            pthread_mutex_unlock(&sig_lock);
            return -e;
        }
    }
    pthread_mutex_unlock(&sig_lock);
    return 0;
}

void ck_signal_unwatch(int sig) {
    if (sig <= 0 || sig >= _NSIG) return;
    pthread_mutex_lock(&sig_lock);
    if (sig_refs[sig] > 0 && --sig_refs[sig] == 0) sigaction(sig, &sig_saved[sig], NULL);
    pthread_mutex_unlock(&sig_lock);
}

int ck_signal_watchers(int sig) {
    if (sig <= 0 || sig >= _NSIG) return 0;
    pthread_mutex_lock(&sig_lock);
    int n = sig_refs[sig];
    pthread_mutex_unlock(&sig_lock);
    return n;
}
