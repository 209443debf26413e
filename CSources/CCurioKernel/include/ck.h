/*
 * The Curio kernel's C interface.
 *
 * The kernel owns three things: a ready queue of (job, task) pairs, a timer
 * heap on CLOCK_MONOTONIC and an I/O backend (io_uring or epoll). One
 * kernel belongs to one thread; the only calls allowed from other threads
 * are ck_post() and ck_wake(). The Swift façade drives the loop with
 * ck_poll(), which hands back a batch of completions (timer expiries, I/O
 * results, posted messages) tagged with the token the caller supplied.
 *
 * Nothing on the hot path allocates: timer entries and requests come from
 * free lists that only grow.
 */
#ifndef CK_H
#define CK_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ck_kernel ck_kernel;

/* ---------------------------------------------------------------- ready queue
 * A power-of-two ring. Inline because it is the single hottest path: every
 * task switch is one push and one pop. */

typedef struct ck_ready_entry {
    void *job;   /* a Swift UnownedJob */
    void *task;  /* the Swift task record the job belongs to, or NULL */
} ck_ready_entry;

typedef struct ck_ready {
    ck_ready_entry *buf;
    uint32_t mask;
    uint32_t head; /* next slot to pop */
    uint32_t tail; /* next slot to push */
} ck_ready;

/* Doubles the ring; returns false when memory is exhausted. */
bool ck_ready_grow(ck_ready *q);

static inline bool ck_ready_push(ck_ready *q, void *job, void *task) {
    if ((uint32_t)(q->tail - q->head) > q->mask) {
        if (!ck_ready_grow(q)) return false;
    }
    ck_ready_entry *e = &q->buf[q->tail & q->mask];
    e->job = job;
    e->task = task;
    q->tail++;
    return true;
}

/* Puts a job ahead of every other: the one that must run right after the
 * running job (a task going on after its timeout block's child ended). */
static inline bool ck_ready_push_front(ck_ready *q, void *job, void *task) {
    if ((uint32_t)(q->tail - q->head) > q->mask) {
        if (!ck_ready_grow(q)) return false;
    }
    q->head--;
    ck_ready_entry *e = &q->buf[q->head & q->mask];
    e->job = job;
    e->task = task;
    return true;
}

static inline bool ck_ready_pop(ck_ready *q, ck_ready_entry *out) {
    if (q->head == q->tail) return false;
    *out = q->buf[q->head & q->mask];
    q->head++;
    return true;
}

static inline uint32_t ck_ready_count(const ck_ready *q) {
    return q->tail - q->head;
}

/* ---------------------------------------------------------------- time */

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t ck_now_ns(void);

/* A kernel's clock, the one its timers run on: CLOCK_MONOTONIC, or after
 * ck_clock_set_virtual a virtual clock for tests that stands still while
 * tasks run. With autojump_ns >= 0, a loop that has nothing to run and
 * finds no event within autojump_ns of real time moves the virtual clock
 * to the next timer's deadline (trio's MockClock, tokio's time::pause);
 * with autojump_ns < 0 only ck_clock_advance moves it. Reads are safe from
 * any thread; the rest is for the kernel's thread. */
void ck_clock_set_virtual(ck_kernel *k, int64_t start_ns, int64_t autojump_ns);
bool ck_clock_is_virtual(const ck_kernel *k);
int64_t ck_kernel_now(const ck_kernel *k);
/* Moves a virtual clock forward by by_ns (>= 0); timers due by then fire
 * on the loop's next poll. No effect on a real clock: returns false. */
bool ck_clock_advance(ck_kernel *k, int64_t by_ns);
/* While held, the loop expects an answer from outside it (a worker
 * thread) that virtual time must not overtake: an idle wait lasts as long
 * in real time as the next deadline is away before the clock jumps, so the
 * virtual clock runs no faster than real time, and an answer that never
 * comes cannot hang the loop. */
void ck_clock_hold(ck_kernel *k, bool hold);
/* The clock of the kernel bound to the calling thread; CLOCK_MONOTONIC
 * on a thread that runs no kernel. */
int64_t ck_clock_now(void);

/* ---------------------------------------------------------------- kernel */

typedef enum ck_backend_kind {
    CK_BACKEND_IO_URING = 1,
    CK_BACKEND_EPOLL = 2,
} ck_backend_kind;

/* Creates a kernel. `want` is the backend to try first; if io_uring cannot
 * be set up (disabled by sysctl, seccomp, an old kernel, or the environment
 * variable CURIO_DISABLE_IO_URING=1) the kernel falls back to epoll and says
 * so once on stderr. Returns NULL and sets errno when neither works. */
ck_kernel *ck_kernel_new(ck_backend_kind want);

/* Options for ck_kernel_new_with (OR them into ck_kernel_options.flags). */
enum {
    /* Do not print the one-time fallback line on stderr; the caller reads
     * ck_kernel_fallback_reason and logs it itself. */
    CK_KERNEL_QUIET_FALLBACK = 1u << 0,
    /* Do not read CURIO_DISABLE_IO_URING: the caller's configuration has
     * already decided (it asks for CK_BACKEND_EPOLL to disable io_uring). */
    CK_KERNEL_IGNORE_ENV = 1u << 1,
    /* The loop may move to another thread while requests are in flight.
     * Without it the io_uring ring is bound (IORING_SETUP_SINGLE_ISSUER,
     * DEFER_TASKRUN) to the first thread that runs ck_poll and can move to
     * another thread only when no request is in flight; with it the ring
     * uses COOP_TASKRUN and any thread may drive it (one at a time). */
    CK_KERNEL_ANY_THREAD = 1u << 2,
};

typedef struct ck_kernel_options {
    ck_backend_kind want; /* the backend to try first */
    uint32_t flags;       /* CK_KERNEL_* */
} ck_kernel_options;

/* ck_kernel_new with options; ck_kernel_new(want) is
 * ck_kernel_new_with(&(ck_kernel_options){want, 0}). */
ck_kernel *ck_kernel_new_with(const ck_kernel_options *options);

/* Why this kernel runs epoll although io_uring was asked for (e.g.
 * "disabled by CURIO_DISABLE_IO_URING", "io_uring_queue_init: Operation
 * not permitted"), or NULL when it runs the backend it was asked for (or
 * was built without io_uring, where epoll is simply the backend). The
 * string lives as long as the kernel. */
const char *ck_kernel_fallback_reason(const ck_kernel *k);

void ck_kernel_free(ck_kernel *k);
ck_backend_kind ck_kernel_backend(const ck_kernel *k);

/* What the backend set up, for logs and metrics. */
typedef struct ck_backend_info {
    ck_backend_kind kind;
    uint32_t uring_setup_flags; /* IORING_SETUP_* the ring was created with (0 on epoll) */
    uint32_t uring_features;    /* IORING_FEAT_* the kernel reported (0 on epoll) */
    uint32_t ring_entries;      /* SQ entries (0 on epoll) */
} ck_backend_info;
void ck_get_backend_info(const ck_kernel *k, ck_backend_info *out);
/* True when io_uring support was compiled in. */
bool ck_have_io_uring(void);

/* The kernel's ready queue, for the inline push/pop above. */
ck_ready *ck_kernel_ready(ck_kernel *k);

/* The kernel running on this thread (set by ck_bind_thread), or NULL. */
ck_kernel *ck_current(void);
void ck_bind_thread(ck_kernel *k); /* NULL unbinds */
/* Opaque owner pointer (the Swift Kernel object) stored with the kernel. */
void ck_set_owner(ck_kernel *k, void *owner);
void *ck_owner(const ck_kernel *k);
/* Per-thread scratch slot: the task record whose continuation this thread is
 * resuming right now, so the executor can pair the enqueued job with it. */
void *ck_tls_resuming(void);
void ck_set_tls_resuming(void *task);

/* ---------------------------------------------------------------- timers
 * Handles are never 0. A handle stays valid until its timer fires (it is
 * then reported once by ck_poll) or is cancelled; using it afterwards is a
 * caller bug that the generation check turns into a no-op. */

/* Returns the timer's handle, or 0 with errno = ENOMEM when the heap cannot
 * grow: the timer is NOT armed, and the caller must treat 0 as a failure
 * (fail the wait with ENOMEM, or retry) rather than wait for it. */
uint64_t ck_timer_add(ck_kernel *k, int64_t deadline_ns, void *token);
/* Returns true when the timer was pending and is now removed. */
bool ck_timer_cancel(ck_kernel *k, uint64_t handle);
/* Deadline of the earliest pending timer, or INT64_MAX. */
int64_t ck_timer_next(const ck_kernel *k);
uint32_t ck_timer_count(const ck_kernel *k);

/* ---------------------------------------------------------------- requests */

typedef enum ck_op {
    CK_OP_READ = 1,    /* read(fd, buf, len) at offset `offset` (-1: current) */
    CK_OP_WRITE,       /* write(fd, buf, len) at offset `offset` (-1: current) */
    CK_OP_RECV,        /* recv(fd, buf, len, flags) */
    CK_OP_SEND,        /* send(fd, buf, len, flags | MSG_NOSIGNAL) */
    CK_OP_ACCEPT,      /* accept4(fd, buf=sockaddr, len=capacity, flags) */
    CK_OP_CONNECT,     /* connect(fd, buf=sockaddr, len) */
    CK_OP_POLL_IN,     /* wait until readable; result is the revents mask */
    CK_OP_POLL_OUT,    /* wait until writable; result is the revents mask */
    CK_OP_RECVMSG,     /* recvmsg(fd, buf=msghdr, flags) */
    CK_OP_SENDMSG,     /* sendmsg(fd, buf=msghdr, flags | MSG_NOSIGNAL) */
    /* Multishot accept: accept4(fd, NULL, NULL, flags) for every incoming
     * connection until cancelled. Each new descriptor comes as its own
     * CK_EVENT_IO_MORE event (result: the descriptor) and the request stays
     * pending; it ends with one CK_EVENT_MULTI_END: -ECANCELED after ck_cancel or
     * ck_forget_fd on the listener, or -errno on an error (ECONNABORTED is
     * skipped). buf and len are ignored (ask getpeername for the peer).
     * Connections accepted after the cancel, or while the completion list
     * has no memory, are closed (their peers see a reset), never leaked.
     * io_uring: IORING_ACCEPT_MULTISHOT; epoll: accepts until EAGAIN on
     * every readiness edge. */
    CK_OP_ACCEPT_MULTI,
    /* Streaming receive: the socket's bytes as a sequence of chunks, each in
     * a buffer of the kernel's receive pool (ck_stream_configure), until the
     * end of the stream. Each chunk comes as a CK_EVENT_CHUNK (result: its
     * length, aux: its buffer id, read with ck_stream_buffer) and stays the
     * consumer's until ck_stream_release gives its buffer back; the request
     * ends with one CK_EVENT_STREAM_END: 0 at end of file, -errno on an
     * error (ECONNRESET), -ECANCELED after ck_cancel or ck_forget_fd.
     * `len` bounds the buffers one stream holds at once (0: the pool's
     * size): at the bound, or when the pool is empty, the stream stops
     * receiving and starts again when a buffer is released; the data waits
     * in the socket meanwhile (TCP's window stops the peer), so memory
     * stays bounded and nothing is lost. io_uring: a multishot recv
     * (IORING_RECV_MULTISHOT, IOSQE_BUFFER_SELECT) from a provided-buffer
     * ring, armed again after -ENOBUFS; kernels without buffer rings
     * (< 5.19) or multishot recv (< 6.0), and epoll, recv into a pool
     * buffer on readiness, with the same events. */
    CK_OP_RECV_STREAM,
    /* A send the caller does not wait for: send(fd, buf, len, flags |
     * MSG_NOSIGNAL | MSG_WAITALL). io_uring queues it for the loop's next
     * enter without a system call of its own (the send and the receive
     * that follows it share one io_uring_enter) and reports the outcome as
     * one CK_EVENT_SENT_BEHIND (result: bytes sent or -errno); `buf` must
     * stay valid until then. epoll sends at once, as CK_OP_SEND's
     * try-first does, and returns -EAGAIN instead of waiting when the
     * socket is full (the caller then sends as it would have). The request
     * survives ck_forget_fd: closing the socket behind it hands it to the
     * system first (see ck_flush_fd), so bytes a caller handed over are
     * never dropped by its close. */
    CK_OP_SEND_BEHIND,
} ck_op;

typedef struct ck_request_args {
    ck_op op;
    int fd;
    void *buf;
    uint64_t len;
    int flags;
    int64_t offset;
} ck_request_args;

/* Result meaning "the request is in flight; a completion will follow". */
#define CK_PENDING INT64_MIN

/* Starts a request. Either completes at once (a try-first path, or a bad
 * argument, or -ENOMEM when the request pool cannot grow) and returns the
 * result (>= 0, or -errno) with *handle = 0, or returns CK_PENDING with a
 * non-zero *handle whose completion ck_poll will report with `token`. The
 * buffer must stay valid until then.
 *
 * Both backends give the same semantics: a request on a descriptor that
 * would block (O_NONBLOCK pipes, files and sockets included) waits for
 * readiness and is retried inside the kernel, so -EAGAIN never comes back;
 * CK_OP_CONNECT completes with 0 or the connection's error, never with
 * -EINPROGRESS, -EALREADY or -EAGAIN. No completion is ever dropped: when
 * memory or the io_uring submission queue runs out, the work waits for the
 * next loop turn. */
int64_t ck_submit(ck_kernel *k, const ck_request_args *args, void *token,
                  uint64_t *handle);
/* Asks for a pending request to be cancelled. The request still completes
 * through ck_poll exactly once: with -ECANCELED, or with its real result if
 * it finished first. Returns false when the handle is not pending. */
bool ck_cancel(ck_kernel *k, uint64_t handle);
/* Tells the backend that fd is about to be closed: pending requests on it
 * complete with -ECANCELED and epoll forgets its registration. */
void ck_forget_fd(ck_kernel *k, int fd);
/* Hands fd's CK_OP_SEND_BEHIND requests to the system now (they would
 * otherwise wait for the loop's next enter) and collects what finished.
 * Returns how many are still in flight on fd: 0 means every byte handed
 * over is in the socket, so a shutdown(2) cannot overtake it. On the
 * kernel's thread only; epoll: always 0. */
int ck_flush_fd(ck_kernel *k, int fd);
uint32_t ck_pending_requests(const ck_kernel *k);
/* Completions already waiting for the next ck_poll (epoll's immediate
 * completions, cancellations). */
uint32_t ck_waiting_events(const ck_kernel *k);

/* ---------------------------------------------------------------- receive pool
 * The buffers CK_OP_RECV_STREAM receives into: `count` buffers of `size`
 * bytes per kernel, allocated with the first stream (count is rounded up
 * to a power of two, at most 32768; size at least 64 bytes, at most 1 MiB).
 * Defaults: 256 × 8 KiB. */

/* Sets the pool's shape before the first stream: 0, -EINVAL for a bad
 * shape, -EBUSY once the pool exists. */
int ck_stream_configure(ck_kernel *k, uint32_t count, uint32_t size);
/* The bytes of a buffer a CK_EVENT_CHUNK named (valid until it is
 * released), or NULL for a buffer id the consumer does not hold. */
uint8_t *ck_stream_buffer(ck_kernel *k, uint32_t bid);
/* Gives a chunk's buffer back to the pool (for io_uring, to the buffer
 * ring) and starts again a stream that stopped for want of it. False when
 * the consumer does not hold that buffer (released twice, or never given). */
bool ck_stream_release(ck_kernel *k, uint32_t bid);

typedef struct ck_stream_stats {
    uint32_t buffers;      /* the pool's size (0 before the first stream) */
    uint32_t buffer_size;
    uint32_t held;         /* buffers handed out in chunks and not released */
    uint32_t streams;      /* streams pending */
    bool ring;             /* io_uring's provided-buffer ring and multishot recv are in use */
    uint64_t chunks;       /* chunks delivered */
    uint64_t exhausted;    /* times a stream stopped because the pool was empty (ENOBUFS) */
    uint64_t paused;       /* times a stream stopped at its own bound */
    uint64_t rearmed;      /* times a stopped stream started receiving again */
} ck_stream_stats;
void ck_get_stream_stats(const ck_kernel *k, ck_stream_stats *out);

/* ---------------------------------------------------------------- posts
 * Thread-safe. A post with a job goes straight onto the ready queue when
 * the kernel next polls; a post without one is reported by ck_poll as a
 * CK_EVENT_MESSAGE carrying `token`. Both wake a sleeping kernel. */

bool ck_post(ck_kernel *k, void *job, void *task, void *token);
/* Wakes the kernel from ck_poll without posting anything. */
void ck_wake(ck_kernel *k);
/* Number of posts waiting (approximate when read from another thread). */
uint32_t ck_posted_count(ck_kernel *k);

/* ---------------------------------------------------------------- the loop */

typedef enum ck_event_kind {
    CK_EVENT_TIMER = 1,   /* result: the deadline that expired */
    CK_EVENT_IO = 2,      /* result: >= 0 or -errno */
    CK_EVENT_MESSAGE = 3, /* result: 0 */
    CK_EVENT_IO_MORE = 4, /* a result of a multishot request, which stays pending */
    CK_EVENT_CHUNK = 5,   /* CK_OP_RECV_STREAM: result = bytes, aux = buffer id */
    CK_EVENT_STREAM_END = 6, /* CK_OP_RECV_STREAM ended: 0 (EOF) or -errno */
    CK_EVENT_MULTI_END = 7, /* CK_OP_ACCEPT_MULTI ended: -errno. A kind of its own
                             * because its token is the receiver of the
                             * connections, not a task waiting for one result. */
    CK_EVENT_SENT_BEHIND = 8, /* CK_OP_SEND_BEHIND ended: bytes sent or -errno;
                               * its token is the sender, not a task */
} ck_event_kind;

typedef struct ck_event {
    void *token;
    int64_t result;
    int32_t kind;
    uint32_t aux; /* CK_EVENT_CHUNK: the buffer id; otherwise 0 */
} ck_event;

/* One turn of the loop's waiting half. Moves posted jobs onto the ready
 * queue; then, if `may_block` and the ready queue is empty, submits pending
 * work and waits until a completion, the next timer deadline or a wake-up
 * (at most `max_wait_ns` when that is >= 0); otherwise it only looks.
 * Fills up to `cap` events and returns how many (or -errno on a backend
 * failure). I/O completions come first, then the timers that have expired
 * by the end of the wait. */
int ck_poll(ck_kernel *k, bool may_block, int64_t max_wait_ns, ck_event *out,
            int cap);

/* Counters for tests, the monitor and metrics. */
typedef struct ck_stats {
    uint64_t polls;          /* ck_poll calls */
    uint64_t enters;         /* io_uring_enter / epoll_wait system calls */
    uint64_t wakeups_sent;   /* eventfd writes by other threads */
    uint64_t immediate;      /* requests completed by the try-first path */
    uint64_t submitted;      /* SQEs handed to io_uring (submitted / enters: batching) */
    uint64_t readiness_retries; /* io_uring: -EAGAIN / connect in progress turned into a poll */
    uint64_t sqe_waits;      /* io_uring: SQEs that had to wait for a free slot */
    uint64_t deferred_events; /* completions, timers and posts that waited a turn for memory */
    uint64_t accepts_dropped; /* multishot accepts closed: no memory to report them */
    uint64_t sends_behind;   /* CK_OP_SEND_BEHIND requests queued (io_uring) */
    uint64_t clock_jumps;    /* virtual clock: jumps to the next deadline on an idle loop */
} ck_stats;
void ck_get_stats(const ck_kernel *k, ck_stats *out);

/* ---------------------------------------------------------------- fault injection
 * For tests of the out-of-memory and full-ring paths. */
typedef enum ck_fault {
    CK_FAULT_REQUEST_ALLOC = 0, /* the request pool cannot grow (ck_submit: -ENOMEM) */
    CK_FAULT_DONE_GROW = 1,     /* the completion list cannot grow */
    CK_FAULT_READY_GROW = 2,    /* the ready queue cannot grow */
    CK_FAULT_TIMER_GROW = 3,    /* the timer heap cannot grow (ck_timer_add: 0) */
    CK_FAULT_SQE = 4,           /* io_uring: no submission queue entry is free */
    CK_FAULT_BUF_RING = 5,      /* io_uring: the provided-buffer ring cannot be set up
                                   (the receive pool falls back to recv on readiness) */
    CK_FAULT_POOL_ALLOC = 6,    /* the receive pool cannot be allocated (a stream: -ENOMEM) */
    CK_FAULT_KINDS = 7,
} ck_fault;

/* Makes the next `count` occurrences of `kind` fail, process-wide (0 turns
 * it off). Only a kernel compiled with CK_FAULT_INJECTION (the C tests)
 * has the hook; elsewhere it does nothing and returns false. */
bool ck_fault_inject(ck_fault kind, uint32_t count);

/* ---------------------------------------------------------------- monitoring
 * The kernel thread marks which task holds it; any thread may read the
 * mark, which is how the monitor names a task that hogs the kernel. */
void ck_mark_running(ck_kernel *k, int64_t task_id, int64_t since_ns);
void ck_read_running(ck_kernel *k, int64_t *task_id, int64_t *since_ns);
/* Records the calling thread as the kernel's (for stack captures). */
void ck_note_thread(ck_kernel *k);
/* Prepares stack captures (installs the capture signal's handler). */
int ck_stacks_init(void);
/* Captures the kernel thread's current stack into out (return addresses,
 * innermost first): the count, or -errno (-ETIMEDOUT if the thread did
 * not answer within wait_ms, e.g. blocked with the signal masked). */
int ck_capture_stack(ck_kernel *k, void **out, int max, int wait_ms);
/* The function containing `addr` (its raw, possibly mangled, name), the
 * offset into it and the file's base name; 0 when unknown. Reads the ELF
 * symbol table for functions the dynamic table does not export. */
int ck_symbol_name(void *addr, char *name, size_t name_len, uint64_t *offset,
                   char *file, size_t file_len);

/* Sets SIGPIPE to SIG_IGN if it still has its default action, as Python
 * does at startup: a write to a pipe or socket whose reader is gone then
 * fails with EPIPE instead of killing the program. */
void ck_ignore_sigpipe(void);

/* A number unique within the process, counting from 1 (kernel serials). */
uint64_t ck_next_serial(void);

/* ---------------------------------------------------------------- helpers
 * System calls Swift's Glibc module does not expose. */

/* pipe2(fds, flags); returns 0 or -errno. */
int ck_pipe2(int fds[2], int flags);
/* posix_spawn_file_actions_addclosefrom_np on `actions` (a
 * posix_spawn_file_actions_t *): the child closes every descriptor from
 * `lowest` up, after the actions added before; returns 0 or an errno. */
int ck_spawn_close_from(void *actions, int lowest);
/* accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK): the descriptor
 * or -errno. */
int ck_accept_cloexec_nonblock(int fd);
/* pidfd_open(pid, 0): a descriptor that turns readable when the child
 * exits; -errno on failure (kernels before 5.3: -ENOSYS). */
int ck_pidfd_open(int pid);
/* The CPUs the calling thread may run on (sched_getaffinity), at most
 * `max` of them in `out`, ascending; returns how many (0 on failure). */
int ck_allowed_cpus(int *out, int max);
/* Keeps the calling thread on `cpu`; 0 or -1. */
int ck_pin_thread(int cpu);
/* Names the calling thread (at most 15 bytes are kept). */
void ck_name_thread(const char *name);

/* ---------------------------------------------------------------- signals
 * A process-wide self-pipe: watched signals write their number (one byte)
 * into it from a C handler. */

/* The pipe's read end (created on first use, non-blocking), or -errno. */
int ck_signal_pipe(void);
/* Starts catching `sig` (reference-counted); -EINVAL for a bad number,
 * -EPERM for SIGKILL/SIGSTOP. The first watcher saves the old action; a
 * handler found there keeps being called after Curio's (chained). 0 on
 * success; ck_signal_watch_outcome also says what was found (CK_SIGNAL_*). */
int ck_signal_watch(int sig);
int ck_signal_watch_outcome(int sig, int *outcome);
enum {
    CK_SIGNAL_TAKEN = 0,        /* the default action was replaced */
    CK_SIGNAL_CHAINED = 1,      /* a previous handler is called after Curio's */
    CK_SIGNAL_WAS_IGNORED = 2,  /* the signal was ignored (SIG_IGN), e.g. for a
                                   Dispatch signal source: it now reaches Curio */
    CK_SIGNAL_RECLAIMED = 3     /* another handler had replaced Curio's while
                                   watched: Curio's is back and chains to it */
};
/* Drops one watch; the last one restores the saved action, unless someone
 * else's handler has replaced Curio's meanwhile (that one is kept). */
void ck_signal_unwatch(int sig);
/* How many watches `sig` has. */
int ck_signal_watchers(int sig);

/* ThreadSanitizer happens-before annotations (no-ops outside a TSan build):
 * see tsan_annotations.c. */
void ck_tsan_acquire(void *addr);
void ck_tsan_release(void *addr);

/* The Swift task running on this thread, unretained, or NULL: the Swift
 * runtime's swift_task_getCurrent, which withUnsafeCurrentTask is built on.
 * Swift code may not name that runtime entry itself (the compiler reserves
 * it), so the kernel layer reaches it through this inline function, which
 * only Swift's Clang compiles (the C tests neither see nor link it). See
 * assumption 6 in Sources/Curio/Core/RuntimeAssumptions.swift. */
#if defined(__clang__) && defined(__has_attribute)
#if __has_attribute(swiftcall)
void *swift_task_getCurrent(void) __attribute__((swiftcall));
static inline void *ck_swift_current_task(void) { return swift_task_getCurrent(); }
#endif
#endif

#ifdef __cplusplus
}
#endif
#endif
