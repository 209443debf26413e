/* Happens-before annotations for ThreadSanitizer, for locks it cannot see.
 *
 * Swift's Synchronization.Mutex takes its lock in the standard library's
 * own code when contended, which is not built with ThreadSanitizer: a
 * thread that acquires the mutex there is not seen to synchronize with
 * the one that released it, and every access the mutex guards is reported
 * as a race. Curio's `Locked` (Sources/Curio/Core/Locked.swift) tells the
 * sanitizer what the mutex does: acquire after locking, release before
 * unlocking. Outside a TSan build the runtime's functions are absent (weak
 * symbols, null) and these do nothing. */
#include "../core/kernel.h"

void __tsan_acquire(void *addr) __attribute__((weak));
void __tsan_release(void *addr) __attribute__((weak));

void ck_tsan_acquire(void *addr) {
    if (__tsan_acquire) __tsan_acquire(addr);
}

void ck_tsan_release(void *addr) {
    if (__tsan_release) __tsan_release(addr);
}
