/* Fault injection for tests. Built with CK_FAULT_INJECTION (make ctest), a
 * fault site asks ck_fault_hit whether to fail this time; in every other
 * build the site compiles to `false` and costs nothing. */
#ifndef CK_CORE_FAULT_H
#define CK_CORE_FAULT_H

#include "ck.h"

#ifdef CK_FAULT_INJECTION
bool ck_fault_hit(ck_fault kind);
#else
#define ck_fault_hit(kind) ((void)(kind), false)
#endif

#endif
