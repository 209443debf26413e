/* Capturing the kernel thread's stack from another thread, for the
 * monitor's `where` on a task that hogs the kernel. The monitor sends the
 * kernel thread a real-time signal; its handler records a backtrace into a
 * static buffer and raises a flag. glibc's backtrace() loads libgcc on its
 * first call, which is not safe in a handler, so ck_stacks_init() makes
 * that first call ahead of time. */
#define _GNU_SOURCE
#include "../core/kernel.h"
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#define CK_STACK_MAX 64

static void *frames[CK_STACK_MAX];
static atomic_int nframes;
static atomic_int captured;
static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;
static int capture_signal;

static void on_capture(int sig) {
    (void)sig;
    int saved = errno;
    int n = backtrace(frames, CK_STACK_MAX);
    atomic_store(&nframes, n);
    atomic_store(&captured, 1);
    errno = saved;
}

int ck_stacks_init(void) {
    static atomic_int ready;
    if (atomic_load(&ready)) return 0;
    pthread_mutex_lock(&capture_lock);
    if (!atomic_load(&ready)) {
        void *warm[2];
        backtrace(warm, 2);
        capture_signal = SIGRTMIN + 3;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_capture;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(capture_signal, &sa, NULL) != 0) {
            int e = errno;
            pthread_mutex_unlock(&capture_lock);
            return -e;
        }
        atomic_store(&ready, 1);
    }
    pthread_mutex_unlock(&capture_lock);
    return 0;
}

void ck_note_thread(ck_kernel *k) { k->thread = pthread_self(); k->has_thread = true; }

int ck_capture_stack(ck_kernel *k, void **out, int max, int wait_ms) {
    if (!k->has_thread) return -ESRCH;
    int err = ck_stacks_init();
    if (err) return err;
    pthread_mutex_lock(&capture_lock);
    atomic_store(&captured, 0);
    err = pthread_kill(k->thread, capture_signal);
    if (err) {
        pthread_mutex_unlock(&capture_lock);
        return -err;
    }
    int n = -ETIMEDOUT;
    for (int i = 0; i < wait_ms; i++) {
        if (atomic_load(&captured)) {
            n = atomic_load(&nframes);
            if (n > max) n = max;
            memcpy(out, frames, (size_t)n * sizeof(void *));
            break;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_unlock(&capture_lock);
    return n;
}
