/* vmc-guest.c — guest-port backends: the host end of com.redhat.spice.0.
 *
 * Every backend ends up as "one connection fd" (or the push buffer) plus an
 * open/closed state:
 *   unix:PATH     a listening socket stays open for the port's life; each accepted
 *                 connection is the agent until it closes. A connection arriving while
 *                 the previous one is still open replaces it (the newest wins: an agent
 *                 that reconnects has given up on its old connection).
 *   connect:PATH  connects now and again RETRY_MS after each failure or close.
 *   pty           a pty master; the agent is "open" while some process holds the slave
 *                 open (the master reports HUP while nobody does; we poll for that
 *                 every PTY_POLL_MS while closed). The slave is put in raw mode.
 *   dev:PATH      opened at start (an error if it cannot be); reopened RETRY_MS after a
 *                 close or a drop.
 *   fd:N          an inherited connected fd (or a listening socket, which then behaves
 *                 like unix:). After EOF or a drop it is closed for good.
 *   push          the embedding VMM reports open/close and pushes bytes.
 *
 * Events: OPENED and CLOSED are queued and delivered in order from the main loop
 * (never from inside a vmc_guest_port_* call); READABLE and WRITABLE are level
 * triggered and delivered from the fd watch (or, for push, the same deferred source)
 * only while wanted. The owner may free the port from inside its event callback.
 */
#define _GNU_SOURCE
#include "server/vmc-guest.h"
#include "server/vmc-listener.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define RETRY_MS 200
#define PTY_POLL_MS 100
#define PUSH_BUFFER_SIZE (256 * 1024)

typedef enum {
    KIND_UNIX_LISTEN,
    KIND_CONNECT,
    KIND_PTY,
    KIND_DEV,
    KIND_FD,
    KIND_PUSH,
} GuestKind;

struct _VmcGuestPort {
    guint ref;
    gboolean freed;
    GMainContext *context;
    GuestKind kind;
    char *path;
    int spec_fd;
    char *description;
    gboolean started;

    VmcGuestEventFunc func;
    gpointer user_data;

    /* unix: (and fd: that is a listening socket) */
    int listen_fd;
    VmcWatch *listen_watch;

    /* the agent connection (for pty: the master, which outlives connections) */
    int fd;
    gboolean fd_is_socket;
    VmcWatch *watch;
    gboolean open;
    gboolean hup_paused; /* hung up while nobody wanted to read: watch paused */
    gboolean want_read;
    gboolean want_write;
    gboolean pty_dropped; /* pty: ignore the slave until it is closed and reopened */

    GSource *timer; /* connect/dev retry, pty polling */
    GSource *defer; /* queued OPENED/CLOSED, push readiness */
    GQueue pending; /* VmcGuestEvent + 1 */

    /* push */
    guint8 *push_buf;
    gsize push_head;
    gsize push_len;
    gboolean push_refused; /* a push was (partly) refused: tell space_func when room */
    gboolean push_blocked; /* write_func took less than offered: wait for push_writable */
    VmcGuestPushWriteFunc push_write;
    VmcGuestPushSpaceFunc push_space;
    gpointer push_data;
};

static void port_unref(VmcGuestPort *p);
static void arm_defer(VmcGuestPort *p);
static void conn_lost(VmcGuestPort *p, const char *why);
static void start_timer(VmcGuestPort *p, guint ms);
static void on_conn_ready(gpointer user_data, GIOCondition revents);

/* ------------------------------------------------------------------------------------
 * events
 * ------------------------------------------------------------------------------------ */

/* Calls the owner. Returns FALSE if the owner freed the port meanwhile. */
static gboolean
emit(VmcGuestPort *p, VmcGuestEvent ev)
{
    gboolean alive;

    if (p->func == NULL)
        return TRUE;
    p->ref++;
    p->func(p, ev, p->user_data);
    alive = !p->freed;
    port_unref(p);
    return alive;
}

static void
queue_event(VmcGuestPort *p, VmcGuestEvent ev)
{
    g_queue_push_tail(&p->pending, GUINT_TO_POINTER((guint)ev + 1));
    arm_defer(p);
}

/* Delivers queued OPENED/CLOSED events. FALSE if the port was freed. */
static gboolean
flush_pending(VmcGuestPort *p)
{
    while (!g_queue_is_empty(&p->pending)) {
        VmcGuestEvent ev = (VmcGuestEvent)(GPOINTER_TO_UINT(g_queue_pop_head(&p->pending)) - 1);
        if (!emit(p, ev))
            return FALSE;
    }
    return TRUE;
}

static gsize
push_space(VmcGuestPort *p)
{
    return PUSH_BUFFER_SIZE - p->push_len;
}

static gboolean
defer_needed(VmcGuestPort *p)
{
    if (!g_queue_is_empty(&p->pending))
        return TRUE;
    if (p->kind != KIND_PUSH)
        return FALSE;
    if (p->push_refused && push_space(p) > 0)
        return TRUE;
    return p->open && ((p->want_read && p->push_len > 0) || (p->want_write && !p->push_blocked));
}

static gboolean
defer_dispatch(GSource *source, GSourceFunc cb, gpointer user_data)
{
    VmcGuestPort *p = user_data;
    gboolean alive = FALSE;

    g_source_set_ready_time(source, -1);
    p->ref++;
    if (!flush_pending(p))
        goto out;
    if (p->kind == KIND_PUSH) {
        if (p->push_refused && push_space(p) > 0) {
            p->push_refused = FALSE;
            if (p->push_space != NULL) {
                p->push_space(p->push_data);
                if (p->freed)
                    goto out;
            }
        }
        if (p->open && p->want_read && p->push_len > 0 && !emit(p, VMC_GUEST_EVENT_READABLE))
            goto out;
        if (p->open && p->want_write && !p->push_blocked &&
            !emit(p, VMC_GUEST_EVENT_WRITABLE))
            goto out;
    }
    alive = TRUE;
out:
    if (alive)
        arm_defer(p);
    port_unref(p);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs defer_funcs = {
    .dispatch = defer_dispatch,
};

static void
arm_defer(VmcGuestPort *p)
{
    if (p->defer != NULL && !p->freed)
        g_source_set_ready_time(p->defer, defer_needed(p) ? 0 : -1);
}

/* ------------------------------------------------------------------------------------
 * construction
 * ------------------------------------------------------------------------------------ */

static gboolean
parse_spec(VmcGuestPort *p, const char *spec, GError **error)
{
    const char *colon = strchr(spec, ':');
    g_autofree char *scheme = colon ? g_strndup(spec, (gsize)(colon - spec)) : g_strdup(spec);
    const char *arg = colon ? colon + 1 : NULL;

    if (g_str_equal(scheme, "pty") && arg == NULL) {
        p->kind = KIND_PTY;
        return TRUE;
    }
    if (g_str_equal(scheme, "push") && arg == NULL) {
        p->kind = KIND_PUSH;
        return TRUE;
    }
    if (arg != NULL && arg[0] != '\0') {
        if (g_str_equal(scheme, "unix")) {
            p->kind = KIND_UNIX_LISTEN;
            p->path = g_strdup(arg);
            return TRUE;
        }
        if (g_str_equal(scheme, "connect")) {
            p->kind = KIND_CONNECT;
            p->path = g_strdup(arg);
            return TRUE;
        }
        if (g_str_equal(scheme, "dev")) {
            p->kind = KIND_DEV;
            p->path = g_strdup(arg);
            return TRUE;
        }
        if (g_str_equal(scheme, "fd")) {
            guint64 n;
            if (!g_ascii_string_to_unsigned(arg, 10, 0, G_MAXINT, &n, NULL))
                goto bad;
            p->kind = KIND_FD;
            p->spec_fd = (int)n;
            return TRUE;
        }
    }
bad:
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "bad guest port '%s' (use unix:PATH, connect:PATH, pty, dev:PATH, fd:N or "
                "push)",
                spec);
    return FALSE;
}

static void
update_description(VmcGuestPort *p)
{
    g_free(p->description);
    switch (p->kind) {
    case KIND_UNIX_LISTEN:
        p->description = g_strdup_printf("unix:%s", p->path);
        break;
    case KIND_CONNECT:
        p->description = g_strdup_printf("connect:%s", p->path);
        break;
    case KIND_PTY:
        p->description = g_strdup_printf("pty:%s", p->path ? p->path : "(not opened)");
        break;
    case KIND_DEV:
        p->description = g_strdup_printf("dev:%s", p->path);
        break;
    case KIND_FD:
        p->description = g_strdup_printf("fd:%d", p->spec_fd);
        break;
    case KIND_PUSH:
        p->description = g_strdup("push");
        break;
    }
}

/**
 * vmc_guest_port_new:
 * @spec: a guest-port spec (see vmc-guest.h)
 * @context: (nullable): the context events are delivered on (NULL: the thread default)
 *
 * Returns: (transfer full): the port, not started; NULL with
 * G_IO_ERROR_INVALID_ARGUMENT for a bad spec.
 */
VmcGuestPort *
vmc_guest_port_new(const char *spec, GMainContext *context, GError **error)
{
    VmcGuestPort *p;

    g_return_val_if_fail(spec != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    p = g_new0(VmcGuestPort, 1);
    p->ref = 1;
    p->listen_fd = -1;
    p->fd = -1;
    p->spec_fd = -1;
    p->want_read = TRUE;
    g_queue_init(&p->pending);
    if (!parse_spec(p, spec, error)) {
        g_free(p);
        return NULL;
    }
    p->context = context ? g_main_context_ref(context) : g_main_context_ref_thread_default();
    update_description(p);

    p->defer = g_source_new(&defer_funcs, sizeof(GSource));
    g_source_set_static_name(p->defer, "vmc-guest-defer");
    g_source_set_callback(p->defer, NULL, p, NULL);
    g_source_set_ready_time(p->defer, -1);
    g_source_attach(p->defer, p->context);

    if (p->kind == KIND_PUSH)
        p->push_buf = g_malloc(PUSH_BUFFER_SIZE);
    return p;
}

static void
stop_timer(VmcGuestPort *p)
{
    if (p->timer != NULL) {
        g_source_destroy(p->timer);
        g_source_unref(p->timer);
        p->timer = NULL;
    }
}

static void
close_conn_fd(VmcGuestPort *p)
{
    vmc_watch_free(g_steal_pointer(&p->watch));
    /* the pty master outlives agent connections */
    if (p->fd >= 0 && p->kind != KIND_PTY)
        close(p->fd);
    if (p->kind != KIND_PTY)
        p->fd = -1;
    p->hup_paused = FALSE;
}

static void
port_unref(VmcGuestPort *p)
{
    if (--p->ref > 0)
        return;
    g_queue_clear(&p->pending);
    g_free(p->push_buf);
    g_free(p->path);
    g_free(p->description);
    g_free(p);
}

void
vmc_guest_port_free(VmcGuestPort *port)
{
    if (port == NULL)
        return;
    g_return_if_fail(!port->freed);
    port->freed = TRUE;
    stop_timer(port);
    if (port->defer != NULL) {
        g_source_destroy(port->defer);
        g_source_unref(port->defer);
        port->defer = NULL;
    }
    vmc_watch_free(g_steal_pointer(&port->watch));
    vmc_watch_free(g_steal_pointer(&port->listen_watch));
    if (port->fd >= 0)
        close(port->fd);
    port->fd = -1;
    if (port->listen_fd >= 0) {
        close(port->listen_fd);
        if (port->kind == KIND_UNIX_LISTEN)
            unlink(port->path);
    }
    port->listen_fd = -1;
    g_main_context_unref(port->context);
    port->context = NULL;
    port->open = FALSE;
    port_unref(port);
}

void
vmc_guest_port_set_event_func(VmcGuestPort *port, VmcGuestEventFunc func, gpointer user_data)
{
    g_return_if_fail(port != NULL);
    port->func = func;
    port->user_data = user_data;
}

/* ------------------------------------------------------------------------------------
 * connections
 * ------------------------------------------------------------------------------------ */

static GIOCondition
wanted_events(VmcGuestPort *p)
{
    return (p->want_read ? G_IO_IN : 0) | (p->want_write ? G_IO_OUT : 0);
}

/* The agent side is there on `fd` (owned by the port from now on). */
static void
adopt(VmcGuestPort *p, int fd)
{
    g_assert(!p->open);
    p->fd = fd;
    p->fd_is_socket = vmc_fd_is_socket(fd);
    p->hup_paused = FALSE;
    p->watch = vmc_watch_new(p->context, fd, wanted_events(p), on_conn_ready, p);
    p->open = TRUE;
    g_debug("guest port %s: agent side open", p->description);
    queue_event(p, VMC_GUEST_EVENT_OPENED);
}

static void
conn_lost(VmcGuestPort *p, const char *why)
{
    if (!p->open)
        return;
    g_debug("guest port %s: agent side closed (%s)", p->description, why);
    p->open = FALSE;
    close_conn_fd(p);
    switch (p->kind) {
    case KIND_CONNECT:
    case KIND_DEV:
        start_timer(p, RETRY_MS);
        break;
    case KIND_PTY:
        start_timer(p, PTY_POLL_MS);
        break;
    case KIND_PUSH:
        p->push_len = 0;
        p->push_head = 0;
        p->push_blocked = FALSE;
        break;
    case KIND_UNIX_LISTEN:
    case KIND_FD:
        break;
    }
    queue_event(p, VMC_GUEST_EVENT_CLOSED);
}

static void
on_conn_ready(gpointer user_data, GIOCondition revents)
{
    VmcGuestPort *p = user_data;

    p->ref++;
    if (!flush_pending(p) || !p->open)
        goto out;
    if ((revents & (G_IO_ERR | G_IO_NVAL)) && !(revents & G_IO_IN)) {
        conn_lost(p, "error");
        flush_pending(p);
        goto out;
    }
    if ((revents & G_IO_HUP) && !p->want_read) {
        /* data may still be unread: wait until the owner wants it */
        p->hup_paused = TRUE;
        vmc_watch_set_paused(p->watch, TRUE);
        if (p->want_write)
            emit(p, VMC_GUEST_EVENT_WRITABLE); /* its write will see the error */
        goto out;
    }
    if ((revents & (G_IO_IN | G_IO_HUP)) && p->want_read) {
        if (!emit(p, VMC_GUEST_EVENT_READABLE) || !p->open)
            goto out;
    }
    if ((revents & G_IO_OUT) && p->want_write)
        emit(p, VMC_GUEST_EVENT_WRITABLE);
out:
    port_unref(p);
}

static void
on_listen_ready(gpointer user_data, GIOCondition revents)
{
    VmcGuestPort *p = user_data;
    int fd, newest = -1;

    /* take everything pending; the newest connection wins */
    while ((fd = vmc_accept(p->listen_fd)) >= 0) {
        if (newest >= 0)
            close(newest);
        newest = fd;
    }
    if (newest < 0) {
        if (errno != EAGAIN)
            g_debug("guest port %s: accept: %s", p->description, g_strerror(errno));
        return;
    }
    p->ref++;
    if (p->open) {
        conn_lost(p, "replaced by a new connection");
        if (!flush_pending(p)) {
            close(newest);
            goto out;
        }
    }
    if (p->open) { /* the owner's CLOSED handler cannot reopen us, but be safe */
        close(newest);
        goto out;
    }
    adopt(p, newest);
    flush_pending(p);
out:
    port_unref(p);
}

static int
open_dev(const char *path)
{
    return open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
}

/* pty: is some process holding the slave open? */
static gboolean
pty_slave_open(VmcGuestPort *p)
{
    struct pollfd pfd = {.fd = p->fd, .events = POLLIN};

    if (poll(&pfd, 1, 0) < 0)
        return FALSE;
    return !(pfd.revents & POLLHUP);
}

static gboolean
on_timer(gpointer user_data)
{
    VmcGuestPort *p = user_data;
    int fd;

    switch (p->kind) {
    case KIND_CONNECT:
        fd = vmc_connect_unix(p->path);
        if (fd < 0) {
            g_debug("guest port %s: connect: %s (retrying)", p->description, g_strerror(errno));
            return G_SOURCE_CONTINUE;
        }
        break;
    case KIND_DEV:
        fd = open_dev(p->path);
        if (fd < 0) {
            g_debug("guest port %s: open: %s (retrying)", p->description, g_strerror(errno));
            return G_SOURCE_CONTINUE;
        }
        break;
    case KIND_PTY:
        if (p->pty_dropped) {
            guint8 junk[4096];
            if (!pty_slave_open(p))
                p->pty_dropped = FALSE;
            else
                while (vmc_fd_read(p->fd, junk, sizeof(junk)) > 0)
                    ;
            return G_SOURCE_CONTINUE;
        }
        if (!pty_slave_open(p))
            return G_SOURCE_CONTINUE;
        g_source_unref(p->timer);
        p->timer = NULL;
        p->fd_is_socket = FALSE;
        p->hup_paused = FALSE;
        p->watch = vmc_watch_new(p->context, p->fd, wanted_events(p), on_conn_ready, p);
        p->open = TRUE;
        g_debug("guest port %s: agent side open", p->description);
        queue_event(p, VMC_GUEST_EVENT_OPENED);
        return G_SOURCE_REMOVE;
    default:
        g_assert_not_reached();
    }
    g_source_unref(p->timer);
    p->timer = NULL;
    adopt(p, fd);
    return G_SOURCE_REMOVE;
}

static void
start_timer(VmcGuestPort *p, guint ms)
{
    stop_timer(p);
    p->timer = g_timeout_source_new(ms);
    g_source_set_static_name(p->timer, "vmc-guest-retry");
    g_source_set_callback(p->timer, on_timer, p, NULL);
    g_source_attach(p->timer, p->context);
}

static gboolean
start_pty(VmcGuestPort *p, GError **error)
{
    struct termios t;
    char name[256];
    int m, s;

    m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof(name)) != 0)
        goto fail;
    p->path = g_strdup(name);
    /* raw mode, set through a short-lived slave fd; closing it makes the master report
     * HUP until the agent opens the slave */
    s = open(p->path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0)
        goto fail;
    if (tcgetattr(s, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(s, TCSANOW, &t);
    }
    close(s);
    p->fd = m;
    update_description(p);
    start_timer(p, PTY_POLL_MS);
    return TRUE;

fail: {
    int err = errno;
    if (m >= 0)
        close(m);
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(err), "cannot open a pty: %s",
                g_strerror(err));
    return FALSE;
}
}

/**
 * vmc_guest_port_start:
 *
 * Binds, opens or connects, as the spec says. OPENED arrives later from the main loop
 * (connect: when a connection succeeds; unix: when the agent connects; pty: when the
 * slave is opened; dev/fd: right away).
 */
gboolean
vmc_guest_port_start(VmcGuestPort *port, GError **error)
{
    VmcGuestPort *p = port;
    int fd;

    g_return_val_if_fail(port != NULL, FALSE);
    g_return_val_if_fail(!port->started, FALSE);

    switch (p->kind) {
    case KIND_UNIX_LISTEN:
        p->listen_fd = vmc_listen_unix(p->path, error);
        if (p->listen_fd < 0)
            return FALSE;
        p->listen_watch = vmc_watch_new(p->context, p->listen_fd, G_IO_IN, on_listen_ready, p);
        break;
    case KIND_CONNECT:
        fd = vmc_connect_unix(p->path);
        if (fd >= 0)
            adopt(p, fd);
        else
            start_timer(p, RETRY_MS);
        break;
    case KIND_PTY:
        if (!start_pty(p, error))
            return FALSE;
        break;
    case KIND_DEV:
        fd = open_dev(p->path);
        if (fd < 0) {
            int err = errno;
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(err), "%s: %s", p->path,
                        g_strerror(err));
            return FALSE;
        }
        adopt(p, fd);
        break;
    case KIND_FD:
        if (fcntl(p->spec_fd, F_GETFD) < 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "fd %d is not an open file descriptor", p->spec_fd);
            return FALSE;
        }
        if (!vmc_fd_set_nonblocking(p->spec_fd, error))
            return FALSE;
        if (vmc_fd_is_socket(p->spec_fd) && vmc_fd_is_listening(p->spec_fd)) {
            p->listen_fd = p->spec_fd;
            p->listen_watch =
                vmc_watch_new(p->context, p->listen_fd, G_IO_IN, on_listen_ready, p);
        } else {
            adopt(p, p->spec_fd);
        }
        break;
    case KIND_PUSH:
        break;
    }
    p->started = TRUE;
    return TRUE;
}

gboolean
vmc_guest_port_is_open(VmcGuestPort *port)
{
    g_return_val_if_fail(port != NULL, FALSE);
    return port->open;
}

const char *
vmc_guest_port_describe(VmcGuestPort *port)
{
    g_return_val_if_fail(port != NULL, NULL);
    return port->description;
}

/* ------------------------------------------------------------------------------------
 * I/O
 * ------------------------------------------------------------------------------------ */

gssize
vmc_guest_port_read(VmcGuestPort *port, guint8 *buf, gsize len)
{
    VmcGuestPort *p = port;
    gssize n;

    g_return_val_if_fail(port != NULL, -1);
    g_return_val_if_fail(buf != NULL || len == 0, -1);

    if (!p->open)
        return -1;
    if (len == 0)
        return 0;
    if (p->kind == KIND_PUSH) {
        gsize take = MIN(len, p->push_len);
        if (take == 0)
            return 0;
        memcpy(buf, p->push_buf + p->push_head, take);
        p->push_head += take;
        p->push_len -= take;
        if (p->push_len == 0)
            p->push_head = 0;
        if (p->push_refused)
            arm_defer(p);
        return (gssize)take;
    }
    n = vmc_fd_read(p->fd, buf, len);
    if (n < 0) {
        conn_lost(p, errno == 0 ? "end of stream" : g_strerror(errno));
        return -1;
    }
    return n;
}

static gssize
push_writev(VmcGuestPort *p, const GOutputVector *vec, guint nvec)
{
    gsize total = 0;

    if (p->push_write == NULL) {
        p->push_blocked = TRUE;
        return 0;
    }
    for (guint i = 0; i < nvec; i++) {
        gsize took;
        if (vec[i].size == 0)
            continue;
        took = p->push_write(p->push_data, vec[i].buffer, vec[i].size);
        if (took > vec[i].size)
            took = vec[i].size;
        total += took;
        if (took < vec[i].size) {
            p->push_blocked = TRUE;
            break;
        }
        if (!p->open) /* the VMM closed the port from inside its write function */
            break;
    }
    return (gssize)MIN(total, (gsize)G_MAXSSIZE);
}

gssize
vmc_guest_port_writev(VmcGuestPort *port, const GOutputVector *vec, guint nvec)
{
    VmcGuestPort *p = port;
    gssize n;

    g_return_val_if_fail(port != NULL, -1);
    g_return_val_if_fail(vec != NULL || nvec == 0, -1);

    if (!p->open)
        return -1;
    if (p->kind == KIND_PUSH)
        return push_writev(p, vec, nvec);
    n = vmc_fd_writev(p->fd, p->fd_is_socket, vec, nvec);
    if (n < 0)
        conn_lost(p, g_strerror(errno));
    return n;
}

void
vmc_guest_port_want_read(VmcGuestPort *port, gboolean want)
{
    g_return_if_fail(port != NULL);
    port->want_read = !!want;
    if (port->watch != NULL) {
        vmc_watch_set_events(port->watch, wanted_events(port));
        if (want && port->hup_paused) {
            port->hup_paused = FALSE;
            vmc_watch_set_paused(port->watch, FALSE);
        }
    }
    if (port->kind == KIND_PUSH)
        arm_defer(port);
}

void
vmc_guest_port_want_write(VmcGuestPort *port, gboolean want)
{
    g_return_if_fail(port != NULL);
    port->want_write = !!want;
    if (port->watch != NULL)
        vmc_watch_set_events(port->watch, wanted_events(port));
    if (port->kind == KIND_PUSH)
        arm_defer(port);
}

/**
 * vmc_guest_port_drop:
 *
 * Closes the current agent connection, after a guest protocol error. A CLOSED event
 * follows from the main loop, as for any close. Afterwards: unix: waits for the next
 * connection; connect: and dev: reconnect/reopen after a short delay; pty: ignores (and
 * drains) the slave until it is closed and opened again; fd: stays closed; push: stays
 * closed until the VMM reports the next open.
 */
void
vmc_guest_port_drop(VmcGuestPort *port)
{
    g_return_if_fail(port != NULL);
    if (!port->open)
        return;
    if (port->kind == KIND_PTY)
        port->pty_dropped = TRUE;
    conn_lost(port, "dropped");
}

/* ------------------------------------------------------------------------------------
 * push backend
 * ------------------------------------------------------------------------------------ */

void
vmc_guest_port_push_open(VmcGuestPort *port, gboolean open)
{
    g_return_if_fail(port != NULL);
    g_return_if_fail(port->kind == KIND_PUSH);

    if (open) {
        if (port->open)
            return;
        port->push_len = 0;
        port->push_head = 0;
        port->push_blocked = FALSE;
        port->open = TRUE;
        g_debug("guest port push: agent side open");
        queue_event(port, VMC_GUEST_EVENT_OPENED);
    } else {
        conn_lost(port, "closed by the VMM");
    }
}

/**
 * vmc_guest_port_push_bytes:
 *
 * Takes bytes the guest wrote. Returns how many were taken: fewer than @len when the
 * buffer (256 KiB) is full; the space function is then called once there is room.
 * Bytes pushed while the port is closed (or dropped) are discarded and count as taken.
 */
gsize
vmc_guest_port_push_bytes(VmcGuestPort *port, const guint8 *data, gsize len)
{
    VmcGuestPort *p = port;
    gsize take;

    g_return_val_if_fail(port != NULL, 0);
    g_return_val_if_fail(port->kind == KIND_PUSH, 0);
    g_return_val_if_fail(data != NULL || len == 0, 0);

    if (!p->open)
        return len;
    take = MIN(len, push_space(p));
    if (take < len)
        p->push_refused = TRUE;
    if (take == 0)
        return 0;
    if (p->push_head + p->push_len + take > PUSH_BUFFER_SIZE) {
        memmove(p->push_buf, p->push_buf + p->push_head, p->push_len);
        p->push_head = 0;
    }
    memcpy(p->push_buf + p->push_head + p->push_len, data, take);
    p->push_len += take;
    arm_defer(p);
    return take;
}

void
vmc_guest_port_push_set_funcs(VmcGuestPort *port, VmcGuestPushWriteFunc write_func,
                              VmcGuestPushSpaceFunc space_func, gpointer user_data)
{
    g_return_if_fail(port != NULL);
    g_return_if_fail(port->kind == KIND_PUSH);
    port->push_write = write_func;
    port->push_space = space_func;
    port->push_data = user_data;
    port->push_blocked = FALSE;
    arm_defer(port);
}

void
vmc_guest_port_push_writable(VmcGuestPort *port)
{
    g_return_if_fail(port != NULL);
    g_return_if_fail(port->kind == KIND_PUSH);
    port->push_blocked = FALSE;
    arm_defer(port);
}
