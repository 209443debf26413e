/* The system call behind each request, run without blocking: epoll's
 * try-first path and io_uring's retry after a readiness poll. */
#include "backend.h"
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

void ck_deliver_accepted(ck_kernel *k, ck_req *q, int fd) {
    if (q->state == CK_REQ_PENDING && ck_report_more(k, q, fd)) return;
    if (q->state == CK_REQ_PENDING) k->stats.accepts_dropped++;
    close(fd);
}

int64_t ck_try_request(ck_req *q) {
    const ck_request_args *a = &q->args;
    const int dontwait = MSG_DONTWAIT;
    ssize_t r;
    switch (a->op) {
    case CK_OP_READ:
        r = a->offset < 0 ? read(a->fd, a->buf, a->len)
                          : pread(a->fd, a->buf, a->len, a->offset);
        break;
    case CK_OP_WRITE:
        r = a->offset < 0 ? write(a->fd, a->buf, a->len)
                          : pwrite(a->fd, a->buf, a->len, a->offset);
        break;
    case CK_OP_RECV:
        r = recv(a->fd, a->buf, a->len, a->flags | dontwait);
        break;
    case CK_OP_SEND:
    case CK_OP_SEND_BEHIND:
        r = send(a->fd, a->buf, a->len, a->flags | dontwait | MSG_NOSIGNAL);
        break;
    case CK_OP_RECVMSG:
        r = recvmsg(a->fd, a->buf, a->flags | dontwait);
        break;
    case CK_OP_SENDMSG:
        r = sendmsg(a->fd, a->buf, a->flags | dontwait | MSG_NOSIGNAL);
        break;
    case CK_OP_ACCEPT:
        q->addrlen = (socklen_t)a->len;
        r = accept4(a->fd, a->buf, a->buf ? &q->addrlen : NULL, a->flags);
        break;
    case CK_OP_CONNECT: {
        /* A connect already under way reports its outcome through SO_ERROR
         * once the socket turns writable; the backend asks again here. */
        int err = 0;
        socklen_t len = sizeof err;
        if (q->started) {
            if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
            if (err == 0) {
                struct pollfd p = {.fd = a->fd, .events = POLLOUT};
                if (poll(&p, 1, 0) == 1) return 0;
                return -EAGAIN;
            }
            return -err;
        }
        r = connect(a->fd, a->buf, (socklen_t)a->len);
        if (r < 0 && errno == EINPROGRESS) {
            q->started = true;
            return -EAGAIN;
        }
        break;
    }
    case CK_OP_POLL_IN:
    case CK_OP_POLL_OUT: {
        struct pollfd p = {.fd = a->fd,
                           .events = a->op == CK_OP_POLL_IN ? POLLIN : POLLOUT};
        int n = poll(&p, 1, 0);
        if (n < 0) return -errno;
        if (n == 0) return -EAGAIN;
        return p.revents;
    }
    default:
        return -EINVAL;
    }
    if (r < 0) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return r;
}
