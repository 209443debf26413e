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

/* Whether `sa` is a handler function (not SIG_DFL / SIG_IGN). */
static int is_handler(const struct sigaction *sa) {
    if (sa->sa_flags & SA_SIGINFO) return sa->sa_sigaction != NULL;
    return sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN && sa->sa_handler != NULL;
}

static void on_signal(int sig, siginfo_t *info, void *context);

static int is_ours(const struct sigaction *sa) {
    return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_signal;
}

/* Set while this thread runs a chained handler: one that chains back to
 * Curio's (it was installed over Curio's and saved it) must not loop. */
static _Thread_local volatile sig_atomic_t chaining;

static void on_signal(int sig, siginfo_t *info, void *context) {
    if (chaining) return;
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    /* A full pipe drops the byte; Curio queues one wake-up per burst anyway. */
    ssize_t r = write(sig_pipe[1], &b, 1);
    (void)r;
    /* Whoever handled the signal before Curio still sees it. */
    const struct sigaction *prev = &sig_saved[sig];
    if (is_handler(prev) && !is_ours(prev)) {
        chaining = 1;
        if (prev->sa_flags & SA_SIGINFO) prev->sa_sigaction(sig, info, context);
        else prev->sa_handler(sig);
        chaining = 0;
    }
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
    int outcome;
    return ck_signal_watch_outcome(sig, &outcome);
}

int ck_signal_watch_outcome(int sig, int *outcome_out) {
    if (sig <= 0 || sig >= _NSIG) return -EINVAL;
    if (sig == SIGKILL || sig == SIGSTOP) return -EPERM;
    int fd = ck_signal_pipe();
    if (fd < 0) return fd;
    pthread_mutex_lock(&sig_lock);
    struct sigaction current;
    if (sigaction(sig, NULL, &current) != 0) {
        int e = errno;
        pthread_mutex_unlock(&sig_lock);
        return -e;
    }
    int outcome = CK_SIGNAL_TAKEN;
    if (sig_refs[sig] == 0 || !is_ours(&current)) {
        /* First watch, or someone replaced Curio's handler since: install
         * it (again), chaining to what was there. */
        outcome = sig_refs[sig] > 0 ? CK_SIGNAL_RECLAIMED
                : is_handler(&current) ? CK_SIGNAL_CHAINED
                : current.sa_handler == SIG_IGN ? CK_SIGNAL_WAS_IGNORED : CK_SIGNAL_TAKEN;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_RESTART | SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        /* Saved before the handler that reads it is installed. */
        sig_saved[sig] = current;
        if (sigaction(sig, &sa, NULL) != 0) {
            int e = errno;
            pthread_mutex_unlock(&sig_lock);
            return -e;
        }
    }
    sig_refs[sig]++;
    pthread_mutex_unlock(&sig_lock);
    *outcome_out = outcome;
    return 0;
}

void ck_signal_unwatch(int sig) {
    if (sig <= 0 || sig >= _NSIG) return;
    pthread_mutex_lock(&sig_lock);
    if (sig_refs[sig] > 0 && --sig_refs[sig] == 0) {
        struct sigaction current;
        /* A handler installed over Curio's is its owner's now: keep it. */
        if (sigaction(sig, NULL, &current) == 0 && is_ours(&current)) sigaction(sig, &sig_saved[sig], NULL);
    }
    pthread_mutex_unlock(&sig_lock);
}

int ck_signal_watchers(int sig) {
    if (sig <= 0 || sig >= _NSIG) return 0;
    pthread_mutex_lock(&sig_lock);
    int n = sig_refs[sig];
    pthread_mutex_unlock(&sig_lock);
    return n;
}
