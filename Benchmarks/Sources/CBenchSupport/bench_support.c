#include "bench_support.h"

#include <stdlib.h>   /* defines __GLIBC__ on glibc */

#if defined(__GLIBC__)
#include <malloc.h>

size_t bench_heap_in_use(void) {
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
#else
    struct mallinfo m = mallinfo();
    return (size_t)(unsigned)m.uordblks + (size_t)(unsigned)m.hblkhd;
#endif
}

void bench_trim_heap(void) { malloc_trim(0); }
#else
size_t bench_heap_in_use(void) { return 0; }
void bench_trim_heap(void) {}
#endif
