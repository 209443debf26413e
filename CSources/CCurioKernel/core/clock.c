/* A kernel's clock: CLOCK_MONOTONIC, or a virtual clock for tests. Every
 * timer deadline and every "is it due" question of a kernel reads
 * ck_kernel_now, so switching the clock moves all of them together; the
 * loop's jump on idleness lives in ck_poll (kernel.c). */
#include "kernel.h"

void ck_clock_set_virtual(ck_kernel *k, int64_t start_ns, int64_t autojump_ns) {
    atomic_store_explicit(&k->clock.now_ns, start_ns, memory_order_relaxed);
    k->clock.autojump_ns = autojump_ns;
    k->clock.is_virtual = true;
}

bool ck_clock_is_virtual(const ck_kernel *k) { return k->clock.is_virtual; }

int64_t ck_kernel_now(const ck_kernel *k) {
    if (__builtin_expect(k->clock.is_virtual, 0))
        return atomic_load_explicit(&k->clock.now_ns, memory_order_relaxed);
    return ck_now_ns();
}

bool ck_clock_advance(ck_kernel *k, int64_t by_ns) {
    if (!k->clock.is_virtual || by_ns < 0) return false;
    int64_t now = atomic_load_explicit(&k->clock.now_ns, memory_order_relaxed);
    int64_t to = by_ns > INT64_MAX - now ? INT64_MAX : now + by_ns;
    atomic_store_explicit(&k->clock.now_ns, to, memory_order_relaxed);
    return true;
}

void ck_clock_hold(ck_kernel *k, bool hold) { k->clock.held = hold; }

int64_t ck_clock_now(void) {
    ck_kernel *k = ck_current();
    return k ? ck_kernel_now(k) : ck_now_ns();
}
