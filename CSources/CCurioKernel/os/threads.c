/* Thread placement for KernelGroup: the CPUs the process may use, pinning a
 * thread to one of them and naming it. glibc declares these only under
 * _GNU_SOURCE, which Swift's Glibc module does not see. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>

#include "ck.h"

int ck_allowed_cpus(int *out, int max) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++) {
        if (CPU_ISSET(cpu, &set)) out[n++] = cpu;
    }
    return n;
}

int ck_pin_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return -1;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 ? 0 : -1;
}

void ck_name_thread(const char *name) {
    (void)pthread_setname_np(pthread_self(), name);
}
