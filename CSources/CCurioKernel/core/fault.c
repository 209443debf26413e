/* The test hook behind ck_fault_inject: per-kind countdowns. */
#include "kernel.h"
#include "fault.h"

#ifdef CK_FAULT_INJECTION
static atomic_uint countdown[CK_FAULT_KINDS];

bool ck_fault_inject(ck_fault kind, uint32_t count) {
    if ((unsigned)kind >= CK_FAULT_KINDS) return false;
    atomic_store(&countdown[kind], count);
    return true;
}

bool ck_fault_hit(ck_fault kind) {
    unsigned left = atomic_load_explicit(&countdown[kind], memory_order_relaxed);
    while (left) {
        if (atomic_compare_exchange_weak(&countdown[kind], &left, left - 1)) return true;
    }
    return false;
}
#else
bool ck_fault_inject(ck_fault kind, uint32_t count) {
    (void)kind;
    (void)count;
    return false;
}
#endif
