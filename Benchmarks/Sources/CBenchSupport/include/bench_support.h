#ifndef CURIO_BENCH_SUPPORT_H
#define CURIO_BENCH_SUPPORT_H

#include <stddef.h>

/// Bytes malloc has handed out and not yet freed, over all arenas and
/// mmapped chunks (mallinfo2: uordblks + hblkhd). 0 where unavailable.
size_t bench_heap_in_use(void);

/// Returns free heap memory to the system (malloc_trim(0)), so that the
/// next resident-set reading starts low.
void bench_trim_heap(void);

#endif
