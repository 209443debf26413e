/* Names for code addresses, for the monitor's live stacks. dladdr() only
 * knows exported (dynamic) symbols, and executables export few; so for the
 * rest we read the ELF symbol table of the file the address belongs to.
 * One file is cached at a time (usually the executable itself). */
#define _GNU_SOURCE
#include "../core/kernel.h"
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct { uint64_t start, size; const char *name; } sym_entry;

static pthread_mutex_t sym_lock = PTHREAD_MUTEX_INITIALIZER;
static char cached_path[4096];
static void *map_base;
static size_t map_len;
static sym_entry *syms;
static size_t nsyms;

static int by_start(const void *a, const void *b) {
    const sym_entry *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static void drop_cache(void) {
    if (map_base) munmap(map_base, map_len);
    free(syms);
    map_base = NULL;
    syms = NULL;
    nsyms = 0;
    cached_path[0] = 0;
}

static int load(const char *path) {
    if (strcmp(path, cached_path) == 0) return syms != NULL;
    drop_cache();
    snprintf(cached_path, sizeof cached_path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(Elf64_Ehdr)) { close(fd); return 0; }
    map_len = (size_t)st.st_size;
    map_base = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map_base == MAP_FAILED) { map_base = NULL; return 0; }
    const Elf64_Ehdr *eh = map_base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) return 0;
    if (eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > map_len) return 0;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)((const char *)map_base + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB) continue;
        if (sh[i].sh_link >= eh->e_shnum) continue;
        const Elf64_Shdr *strs = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > map_len || strs->sh_offset + strs->sh_size > map_len) continue;
        const Elf64_Sym *s = (const Elf64_Sym *)((const char *)map_base + sh[i].sh_offset);
        size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
        syms = calloc(n ? n : 1, sizeof *syms);
        if (!syms) return 0;
        for (size_t j = 0; j < n; j++) {
            if (ELF64_ST_TYPE(s[j].st_info) != STT_FUNC || s[j].st_value == 0) continue;
            if (s[j].st_name >= strs->sh_size) continue;
            syms[nsyms++] = (sym_entry){s[j].st_value, s[j].st_size,
                                        (const char *)map_base + strs->sh_offset + s[j].st_name};
        }
        qsort(syms, nsyms, sizeof *syms, by_start);
        break;
    }
    return syms != NULL;
}

int ck_symbol_name(void *addr, char *name, size_t name_len, uint64_t *offset, char *file, size_t file_len) {
    Dl_info info;
    if (!dladdr(addr, &info) || !info.dli_fname) return 0;
    const char *base = strrchr(info.dli_fname, '/');
    snprintf(file, file_len, "%s", base ? base + 1 : info.dli_fname);
    if (info.dli_sname && info.dli_saddr) {
        snprintf(name, name_len, "%s", info.dli_sname);
        *offset = (uint64_t)((char *)addr - (char *)info.dli_saddr);
        return 1;
    }
    pthread_mutex_lock(&sym_lock);
    int found = 0;
    if (load(info.dli_fname) && nsyms) {
        /* Symbol values are link-time addresses; PIE binaries load at fbase. */
        uint64_t rel = (uint64_t)((char *)addr - (char *)info.dli_fbase);
        size_t lo = 0, hi = nsyms;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (syms[mid].start <= rel) lo = mid + 1; else hi = mid;
        }
        if (lo > 0) {
            const sym_entry *e = &syms[lo - 1];
            if (rel < e->start + (e->size ? e->size : 1 << 20)) {
                snprintf(name, name_len, "%s", e->name);
                *offset = rel - e->start;
                found = 1;
            }
        }
    }
    pthread_mutex_unlock(&sym_lock);
    return found;
}
