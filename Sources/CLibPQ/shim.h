#ifndef PASSION_CLIBPQ_SHIM_H
#define PASSION_CLIBPQ_SHIM_H
#include <libpq-fe.h>

/* The PG_DIAG_* field codes are character-literal macros, which Swift does not import. */
static inline int passion_pg_diag_sqlstate(void) { return PG_DIAG_SQLSTATE; }
static inline int passion_pg_diag_message(void) { return PG_DIAG_MESSAGE_PRIMARY; }
static inline int passion_pg_diag_constraint(void) { return PG_DIAG_CONSTRAINT_NAME; }
static inline int passion_pg_diag_table(void) { return PG_DIAG_TABLE_NAME; }
static inline int passion_pg_diag_column(void) { return PG_DIAG_COLUMN_NAME; }
static inline int passion_pg_diag_detail(void) { return PG_DIAG_MESSAGE_DETAIL; }
static inline int passion_pg_diag_hint(void) { return PG_DIAG_MESSAGE_HINT; }

/* epoll for PostgresPoller, which waits on libpq's sockets. Glibc's Swift module leaves
   sys/epoll.h out, and struct epoll_event is packed, which Swift cannot import faithfully. */
#include <sys/epoll.h>
#include <errno.h>
#include <stddef.h>
static const unsigned passion_epoll_readable = EPOLLIN;
static const unsigned passion_epoll_writable = EPOLLOUT;
static const unsigned passion_epoll_error = EPOLLERR;

#include <sys/eventfd.h>
#include <unistd.h>
#include <stdint.h>

static inline int passion_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

/* An eventfd in the epoll set (level-triggered) that wakes the waiting thread. */
static inline int passion_epoll_add_waker(int epoll) {
    int waker = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (waker < 0) return -1;
    struct epoll_event event = { .events = EPOLLIN, .data.fd = waker };
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, waker, &event) != 0) return -1;
    return waker;
}
static inline void passion_wake(int waker) { uint64_t one = 1; ssize_t n = write(waker, &one, sizeof one); (void)n; }
static inline void passion_drain_waker(int waker) { uint64_t count; ssize_t n = read(waker, &count, sizeof count); (void)n; }

/* Arms `fd` for one wake-up on `events` (or hang-up, or error); registers it the first time. */
static inline int passion_epoll_arm(int epoll, int fd, unsigned events) {
    struct epoll_event event = { .events = events | EPOLLONESHOT | EPOLLRDHUP, .data.fd = fd };
    if (epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event) == 0) return 0;
    if (errno != ENOENT) return -1;
    return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event);
}

/* Names the calling thread (as ps and perf show it); pthread_setname_np needs _GNU_SOURCE. */
#include <sys/prctl.h>
static inline void passion_name_thread(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

static inline int passion_epoll_forget(int epoll, int fd) { return epoll_ctl(epoll, EPOLL_CTL_DEL, fd, NULL); }

/* Waits up to `timeout` ms (-1: no limit) for ready descriptors; fills up to 64 (fd, events)
   pairs and returns how many. */
static inline int passion_epoll_wait(int epoll, int *fds, unsigned *events, int timeout) {
    struct epoll_event ready[64];
    int count = epoll_wait(epoll, ready, 64, timeout);
    for (int i = 0; i < count; i++) {
        fds[i] = ready[i].data.fd;
        events[i] = ready[i].events;
    }
    return count;
}
#endif
