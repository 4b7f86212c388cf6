/* vmc-listener.c — fd watches, listening sockets and non-blocking socket I/O. */
#define _GNU_SOURCE
#include "server/vmc-listener.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

/* ------------------------------------------------------------------------------------
 * VmcWatch
 * ------------------------------------------------------------------------------------ */

typedef struct {
    GSource base;
    GPollFD pfd;
    gboolean paused;
    VmcWatchFunc func;
    gpointer user_data;
} WatchSource;

struct _VmcWatch {
    WatchSource *src;
};

static gboolean
watch_prepare(GSource *base, gint *timeout)
{
    *timeout = -1;
    return FALSE;
}

static gboolean
watch_check(GSource *base)
{
    WatchSource *w = (WatchSource *)base;

    if (w->paused)
        return FALSE;
    return (w->pfd.revents & (w->pfd.events | G_IO_HUP | G_IO_ERR | G_IO_NVAL)) != 0;
}

static gboolean
watch_dispatch(GSource *base, GSourceFunc callback, gpointer user_data)
{
    WatchSource *w = (WatchSource *)base;
    GIOCondition revents = (GIOCondition)w->pfd.revents;

    w->pfd.revents = 0;
    if (w->paused)
        return G_SOURCE_CONTINUE;
    w->func(w->user_data, revents);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs watch_funcs = {
    .prepare = watch_prepare,
    .check = watch_check,
    .dispatch = watch_dispatch,
};

VmcWatch *
vmc_watch_new(GMainContext *context, int fd, GIOCondition events, VmcWatchFunc func,
              gpointer user_data)
{
    VmcWatch *watch;
    WatchSource *w;

    g_return_val_if_fail(fd >= 0, NULL);
    g_return_val_if_fail(func != NULL, NULL);

    w = (WatchSource *)g_source_new(&watch_funcs, sizeof(WatchSource));
    g_source_set_static_name(&w->base, "vmc-watch");
    /* Non-recursive sources are "blocked" around each dispatch, which removes and
     * re-adds their fds and wakes the context up (an eventfd write, a poll and a read
     * per dispatch). Our callbacks never iterate the context, so allow recursion and
     * skip all that. */
    g_source_set_can_recurse(&w->base, TRUE);
    w->pfd.fd = fd;
    w->pfd.events = (gushort)events;
    w->func = func;
    w->user_data = user_data;
    g_source_add_poll(&w->base, &w->pfd);
    g_source_attach(&w->base, context);

    watch = g_new0(VmcWatch, 1);
    watch->src = w;
    return watch;
}

void
vmc_watch_free(VmcWatch *watch)
{
    if (watch == NULL)
        return;
    g_source_destroy(&watch->src->base);
    g_source_unref(&watch->src->base);
    g_free(watch);
}

void
vmc_watch_set_events(VmcWatch *watch, GIOCondition events)
{
    g_return_if_fail(watch != NULL);
    /* In place: GLib copies GPollFD.events into its poll array on every iteration. */
    watch->src->pfd.events = (gushort)events;
}

GIOCondition
vmc_watch_get_events(VmcWatch *watch)
{
    g_return_val_if_fail(watch != NULL, 0);
    return (GIOCondition)watch->src->pfd.events;
}

void
vmc_watch_set_paused(VmcWatch *watch, gboolean paused)
{
    WatchSource *w;

    g_return_if_fail(watch != NULL);
    w = watch->src;
    paused = !!paused;
    if (w->paused == paused)
        return;
    w->paused = paused;
    w->pfd.revents = 0;
    if (paused)
        g_source_remove_poll(&w->base, &w->pfd);
    else
        g_source_add_poll(&w->base, &w->pfd);
}

/* ------------------------------------------------------------------------------------
 * sockets
 * ------------------------------------------------------------------------------------ */

gboolean
vmc_fd_set_nonblocking(int fd, GError **error)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(err), "fd %d: %s", fd,
                    g_strerror(err));
        return FALSE;
    }
    return TRUE;
}

static gboolean
fill_unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len, GError **error)
{
    gsize plen = strlen(path);

    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (plen == 0 || plen >= sizeof(sun->sun_path)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "UNIX socket path '%s' is empty or too long", path);
        return FALSE;
    }
    memcpy(sun->sun_path, path, plen);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
    return TRUE;
}

int
vmc_connect_unix(const char *path)
{
    struct sockaddr_un sun;
    socklen_t len;
    int fd;

    if (!fill_unix_addr(path, &sun, &len, NULL)) {
        errno = EINVAL;
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, len) < 0) {
        int err = errno;
        close(fd);
        /* a UNIX connect never completes later: EINPROGRESS does not happen, EAGAIN
         * means a full backlog */
        errno = err;
        return -1;
    }
    return fd;
}

int
vmc_listen_unix(const char *path, GError **error)
{
    struct sockaddr_un sun;
    socklen_t len;
    struct stat st;
    int fd;

    if (!fill_unix_addr(path, &sun, &len, error))
        return -1;

    if (lstat(path, &st) == 0) {
        int probe;

        if (!S_ISSOCK(st.st_mode)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                        "%s exists and is not a socket", path);
            return -1;
        }
        probe = vmc_connect_unix(path);
        if (probe >= 0 || errno == EAGAIN) {
            if (probe >= 0)
                close(probe);
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                        "%s: another process is listening there", path);
            return -1;
        }
        /* a stale socket file from a previous run */
        unlink(path);
    }

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, len) < 0 || listen(fd, 16) < 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(err), "%s: %s", path,
                    g_strerror(err));
        return -1;
    }
    return fd;
}

static gboolean
split_host_port(const char *host_port, char **host, char **port, GError **error)
{
    const char *colon;

    if (host_port[0] == '[') {
        const char *close_br = strchr(host_port, ']');
        if (close_br == NULL || close_br[1] != ':' || close_br[2] == '\0')
            goto bad;
        *host = g_strndup(host_port + 1, (gsize)(close_br - host_port - 1));
        *port = g_strdup(close_br + 2);
        return TRUE;
    }
    colon = strrchr(host_port, ':');
    if (colon == NULL || colon[1] == '\0' || strchr(host_port, ':') != colon)
        goto bad;
    *host = g_strndup(host_port, (gsize)(colon - host_port));
    *port = g_strdup(colon + 1);
    return TRUE;

bad:
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "'%s' is not HOST:PORT, [IPV6]:PORT or unix:PATH", host_port);
    return FALSE;
}

static gboolean
parse_port(const char *s, GError **error)
{
    guint64 v;

    if (!g_ascii_string_to_unsigned(s, 10, 0, 65535, &v, NULL)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "'%s' is not a port number (0-65535)", s);
        return FALSE;
    }
    return TRUE;
}

GArray *
vmc_listen_tcp(const char *host_port, GError **error)
{
    g_autofree char *host = NULL;
    g_autofree char *port = NULL;
    g_autoptr(GArray) fds = NULL;
    struct addrinfo hints, *res = NULL, *ai;
    int gai, last_err = 0;
    int bound_port = -1;

    if (!split_host_port(host_port, &host, &port, error) || !parse_port(port, error))
        return NULL;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_ADDRCONFIG;
    gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s: %s", host_port,
                    gai_strerror(gai));
        return NULL;
    }

    fds = g_array_new(FALSE, FALSE, sizeof(int));
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int fd, one = 1;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            last_err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        /* with port 0 and several addresses, use the same ephemeral port for all */
        if (bound_port > 0) {
            if (ai->ai_family == AF_INET)
                ((struct sockaddr_in *)ai->ai_addr)->sin_port = htons((guint16)bound_port);
            else if (ai->ai_family == AF_INET6)
                ((struct sockaddr_in6 *)ai->ai_addr)->sin6_port = htons((guint16)bound_port);
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
            last_err = errno;
            close(fd);
            if (last_err == EADDRINUSE)
                break;
            continue;
        }
        if (bound_port <= 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
                if (ss.ss_family == AF_INET)
                    bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
                else if (ss.ss_family == AF_INET6)
                    bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            }
        }
        g_array_append_val(fds, fd);
    }
    freeaddrinfo(res);

    if (last_err == EADDRINUSE || fds->len == 0) {
        for (guint i = 0; i < fds->len; i++)
            close(g_array_index(fds, int, i));
        if (last_err == 0)
            last_err = EADDRNOTAVAIL;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(last_err), "%s: %s", host_port,
                    last_err == EADDRINUSE ? "address already in use" : g_strerror(last_err));
        return NULL;
    }
    return g_steal_pointer(&fds);
}

char *
vmc_socket_describe(int fd, gboolean peer)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN];
    int r;

    memset(&ss, 0, sizeof(ss));
    r = peer ? getpeername(fd, (struct sockaddr *)&ss, &sl)
             : getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (r < 0)
        return g_strdup_printf("fd:%d", fd);
    switch (ss.ss_family) {
    case AF_INET: {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        return g_strdup_printf("%s:%u", host, ntohs(sin->sin_port));
    }
    case AF_INET6: {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        return g_strdup_printf("[%s]:%u", host, ntohs(sin6->sin6_port));
    }
    case AF_UNIX: {
        struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
        gsize off = offsetof(struct sockaddr_un, sun_path);
        if (sl <= off || sun->sun_path[0] == '\0')
            return g_strdup("unix:");
        return g_strdup_printf("unix:%.*s", (int)strnlen(sun->sun_path, sl - off),
                               sun->sun_path);
    }
    default:
        return g_strdup_printf("fd:%d", fd);
    }
}

gboolean
vmc_socket_is_unix(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    return getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX;
}

gboolean
vmc_fd_is_socket(int fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

gboolean
vmc_fd_is_listening(int fd)
{
    int v = 0;
    socklen_t sl = sizeof(v);

    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &sl) == 0 && v != 0;
}

int
vmc_accept(int listen_fd)
{
    int fd;

    do {
        fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0 && (errno == EWOULDBLOCK || errno == ECONNABORTED))
        errno = EAGAIN;
    return fd;
}

gssize
vmc_fd_read(int fd, guint8 *buf, gsize len)
{
    ssize_t n;

    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    do {
        n = read(fd, buf, len);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        return n;
    if (n == 0) {
        errno = 0;
        return -1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    return -1;
}

gssize
vmc_fd_writev(int fd, gboolean is_socket, const GOutputVector *vec, guint nvec)
{
    struct iovec iov[64];
    guint n = 0;
    ssize_t w;

    G_STATIC_ASSERT(64 <= IOV_MAX);
    for (guint i = 0; i < nvec && n < G_N_ELEMENTS(iov); i++) {
        if (vec[i].size == 0)
            continue;
        iov[n].iov_base = (void *)vec[i].buffer;
        iov[n].iov_len = vec[i].size;
        n++;
    }
    if (n == 0)
        return 0;
    do {
        if (is_socket) {
            struct msghdr msg;
            memset(&msg, 0, sizeof(msg));
            msg.msg_iov = iov;
            msg.msg_iovlen = n;
            w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            w = writev(fd, iov, (int)n);
        }
    } while (w < 0 && errno == EINTR);
    if (w >= 0)
        return w;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    return -1;
}
