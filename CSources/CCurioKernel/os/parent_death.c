/* Children Curio starts to work for it die with their parent.
 *
 * `runInProcess` starts its child as this same executable with
 * CURIO_PARENT_PID in the environment. Before any Swift code runs, this
 * constructor asks Linux to SIGKILL the child when its parent goes
 * (PR_SET_PDEATHSIG), then checks the parent is still the one that started
 * it: a parent that died between the spawn and the prctl would otherwise
 * leave the child behind, adopted by init. With CURIO_EXEC_COMMAND also
 * set, the child then becomes the command in argv[1...]; the death signal
 * survives execve (except into set-user-ID programs).
 *
 * The signal follows the *thread* that spawned the child. Curio spawns on
 * a kernel thread and waits for the child before the call that started it
 * returns, so that thread outlives the child unless the process dies.
 *
 * glibc passes (argc, argv, envp) to constructors. Only async-signal-safe
 * work and the environment are touched: nothing else has started yet. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define CK_PARENT_KEY "CURIO_PARENT_PID"
#define CK_EXEC_KEY "CURIO_EXEC_COMMAND"

static void ck_write_err(const char *a, const char *b, const char *c) {
    ssize_t r = write(2, a, strlen(a));
    r = write(2, b, strlen(b));
    r = write(2, c, strlen(c));
    (void)r;
}

__attribute__((constructor))
static void ck_die_with_parent(int argc, char **argv, char **envp) {
    (void)envp;
    const char *parent = getenv(CK_PARENT_KEY);
    if (parent == NULL) return;
    pid_t expected = (pid_t)strtol(parent, NULL, 10);
    int exec_command = getenv(CK_EXEC_KEY) != NULL;
    /* Grandchildren are not Curio's to tie to this process. */
    unsetenv(CK_PARENT_KEY);
    unsetenv(CK_EXEC_KEY);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != expected) {
        /* The parent is already gone (or cannot be watched): go with it. */
        kill(getpid(), SIGKILL);
        _exit(137);
    }
    if (!exec_command) return;
    if (argc < 2) {
        ck_write_err("curio: no command to run", "", "\n");
        _exit(127);
    }
    execvp(argv[1], argv + 1);
    int e = errno;
    ck_write_err("curio: cannot run '", argv[1], "': ");
    ck_write_err(strerror(e), "", "\n");
    _exit(e == ENOENT ? 127 : 126);
}
