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
static inline int passion_pg_diag_source_function(void) { return PG_DIAG_SOURCE_FUNCTION; }

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

/* Linux AIO's one-shot poll (IOCB_CMD_POLL, Linux 4.18) with IOCB_FLAG_RESFD: the kernel
   signals an eventfd when a watched socket is ready, so an event loop that cannot watch a
   foreign descriptor without reading it (SwiftNIO's) can wait for libpq's sockets by reading
   the eventfd. A request is its iocb, allocated here and named by its own address. */
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <time.h>
#include <poll.h>
static inline int passion_aio_setup(unsigned capacity, uint64_t *context) {
    aio_context_t created = 0;
    if (syscall(SYS_io_setup, capacity, &created) != 0) return -1;
    *context = (uint64_t)created;
    return 0;
}
/* Cancels what is pending, waits for it, and frees the context. */
static inline void passion_aio_destroy(uint64_t context) { syscall(SYS_io_destroy, (aio_context_t)context); }
/* Starts a one-shot poll of `fd`; returns the request's key, or 0 when the kernel refused it. */
static inline uint64_t passion_aio_poll(uint64_t context, int fd, unsigned events, int signal) {
    struct iocb *request = calloc(1, sizeof *request);
    if (request == NULL) return 0;
    request->aio_fildes = (uint32_t)fd;
    request->aio_lio_opcode = IOCB_CMD_POLL;
    request->aio_buf = events;
    request->aio_flags = IOCB_FLAG_RESFD;
    request->aio_resfd = (uint32_t)signal;
    request->aio_data = (uint64_t)(uintptr_t)request;
    struct iocb *batch[1] = { request };
    if (syscall(SYS_io_submit, (aio_context_t)context, 1, batch) != 1) { free(request); return 0; }
    return request->aio_data;
}
/* Frees a finished request (its completion reaped, or its context destroyed). */
static inline void passion_aio_free(uint64_t key) { free((void *)(uintptr_t)key); }
/* Takes up to 64 finished requests without waiting: each one's key and result (the ready
   events, which use epoll's numbering, or a negative errno). Returns how many. */
static inline int passion_aio_reap(uint64_t context, uint64_t *keys, int64_t *results) {
    struct io_event finished[64];
    struct timespec now = { 0, 0 };
    long count = syscall(SYS_io_getevents, (aio_context_t)context, 0, 64, finished, &now);
    for (long i = 0; i < count; i++) {
        keys[i] = finished[i].data;
        results[i] = finished[i].res;
    }
    return (int)count;
}
static inline int passion_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
/* Whether this kernel and sandbox grant AIO polls (4.18+; io_setup alone may pass where
   IOCB_CMD_POLL is refused): submits one on a fresh eventfd, then cancels it. */
static inline int passion_aio_supported(void) {
    uint64_t context;
    if (passion_aio_setup(1, &context) != 0) return 0;
    int probe = passion_eventfd();
    uint64_t key = probe >= 0 ? passion_aio_poll(context, probe, POLLIN, probe) : 0;
    passion_aio_destroy(context);
    if (key != 0) passion_aio_free(key);
    if (probe >= 0) close(probe);
    return key != 0;
}
#endif
