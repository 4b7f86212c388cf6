/* test-guest-port.c — the guest-port backends (server/vmc-guest.h) on a private
 * GMainContext: unix listen across reconnects, connect with retry, pty, dev, fd, push. */
#define _GNU_SOURCE
#include "server/vmc-guest.h"
#include "server-test-util.h"

#include <glib/gstdio.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

typedef struct {
    GMainContext *ctx;
    char *dir;
    VmcGuestPort *port;
    GArray *events;   /* VmcGuestEvent, OPENED/CLOSED only */
    GByteArray *got;  /* bytes read from the port */
    guint readable;
    guint writable;
    gboolean saw_eof; /* a read returned -1 */
    gboolean drain;   /* read everything on READABLE */
    gboolean free_on_closed;
    guint fds_before;
} Fixture;

static void
on_event(VmcGuestPort *port, VmcGuestEvent ev, gpointer user_data)
{
    Fixture *f = user_data;

    switch (ev) {
    case VMC_GUEST_EVENT_OPENED:
    case VMC_GUEST_EVENT_CLOSED:
        g_array_append_val(f->events, ev);
        if (ev == VMC_GUEST_EVENT_CLOSED && f->free_on_closed)
            g_clear_pointer(&f->port, vmc_guest_port_free);
        break;
    case VMC_GUEST_EVENT_READABLE:
        f->readable++;
        while (f->drain) {
            guint8 buf[65536];
            gssize n = vmc_guest_port_read(port, buf, sizeof(buf));
            if (n < 0) {
                f->saw_eof = TRUE;
                break;
            }
            if (n == 0)
                break;
            g_byte_array_append(f->got, buf, (guint)n);
        }
        break;
    case VMC_GUEST_EVENT_WRITABLE:
        f->writable++;
        break;
    }
}

static void
fixture_setup(Fixture *f, gconstpointer data)
{
    f->fds_before = vmc_test_count_fds();
    f->ctx = g_main_context_new();
    f->dir = g_dir_make_tmp("vmc-guest-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->events = g_array_new(FALSE, FALSE, sizeof(VmcGuestEvent));
    f->got = g_byte_array_new();
    f->drain = TRUE;
}

static void
fixture_teardown(Fixture *f, gconstpointer data)
{
    g_clear_pointer(&f->port, vmc_guest_port_free);
    vmc_test_spin(f->ctx);
    g_main_context_unref(f->ctx);
    g_rmdir(f->dir);
    g_free(f->dir);
    g_array_unref(f->events);
    g_byte_array_unref(f->got);
    g_assert_cmpuint(vmc_test_count_fds(), ==, f->fds_before);
}

static VmcGuestPort *
start_port(Fixture *f, const char *spec)
{
    GError *error = NULL;

    f->port = vmc_guest_port_new(spec, f->ctx, &error);
    g_assert_no_error(error);
    vmc_guest_port_set_event_func(f->port, on_event, f);
    g_assert_true(vmc_guest_port_start(f->port, &error));
    g_assert_no_error(error);
    return f->port;
}

typedef struct {
    Fixture *f;
    guint n;
} CountWait;

static gboolean
events_reached(gpointer data)
{
    CountWait *w = data;
    return w->f->events->len >= w->n;
}

static void
wait_events(Fixture *f, guint n)
{
    CountWait w = {f, n};
    g_assert_true(vmc_test_wait(f->ctx, events_reached, &w, VMC_TEST_TIMEOUT_MS));
}

static VmcGuestEvent
event_at(Fixture *f, guint i)
{
    g_assert_cmpuint(i, <, f->events->len);
    return g_array_index(f->events, VmcGuestEvent, i);
}

static gboolean
got_reached(gpointer data)
{
    CountWait *w = data;
    return w->f->got->len >= w->n;
}

static void
wait_got(Fixture *f, guint n)
{
    CountWait w = {f, n};
    g_assert_true(vmc_test_wait(f->ctx, got_reached, &w, VMC_TEST_TIMEOUT_MS));
}

static int
connect_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
    return fd;
}

static void
port_write_all(Fixture *f, const char *s)
{
    GOutputVector v[2];
    gsize len = strlen(s), half = len / 2;

    /* two vectors: checks the gathered write */
    v[0].buffer = s;
    v[0].size = half;
    v[1].buffer = s + half;
    v[1].size = len - half;
    g_assert_cmpint(vmc_guest_port_writev(f->port, v, 2), ==, (gssize)len);
}

static void
expect_peer_reads(int fd, const char *s)
{
    gsize len = strlen(s);
    g_autofree guint8 *buf = g_malloc(len);

    g_assert_true(vmc_test_fd_read_exact(fd, buf, len, VMC_TEST_TIMEOUT_MS));
    g_assert_cmpmem(buf, len, s, len);
}

/* ---------------------------------------------------------------------------------- */

static void
test_spec_parse(void)
{
    static const char *good[] = {"unix:/tmp/x", "connect:/tmp/x", "pty", "dev:/dev/null",
                                 "fd:3", "push"};
    static const char *bad[] = {"", "unix:", "unix", "tcp:1.2.3.4:5", "fd:abc", "fd:-1",
                                "pty:/x", "push:1", "dev:", "connect"};

    for (guint i = 0; i < G_N_ELEMENTS(good); i++) {
        GError *error = NULL;
        VmcGuestPort *p = vmc_guest_port_new(good[i], NULL, &error);
        g_assert_no_error(error);
        g_assert_nonnull(p);
        g_assert_false(vmc_guest_port_is_open(p));
        g_assert_nonnull(vmc_guest_port_describe(p));
        vmc_guest_port_free(p);
    }
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        GError *error = NULL;
        VmcGuestPort *p = vmc_guest_port_new(bad[i], NULL, &error);
        g_assert_null(p);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_clear_error(&error);
    }
}

static void
test_unix_reconnect(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "g.sock", NULL);
    g_autofree char *desc = g_strdup_printf("unix:%s", path);
    int a, b;

    start_port(f, desc);
    g_assert_cmpstr(vmc_guest_port_describe(f->port), ==, desc);
    g_assert_false(vmc_guest_port_is_open(f->port));

    /* first agent connection: both directions */
    a = connect_unix(path);
    wait_events(f, 1);
    g_assert_cmpint(event_at(f, 0), ==, VMC_GUEST_EVENT_OPENED);
    g_assert_true(vmc_guest_port_is_open(f->port));
    vmc_test_fd_write_all(a, (const guint8 *)"hello", 5);
    wait_got(f, 5);
    g_assert_cmpmem(f->got->data, f->got->len, "hello", 5);
    port_write_all(f, "to-agent");
    expect_peer_reads(a, "to-agent");

    /* the agent goes away: CLOSED, the listener stays */
    close(a);
    wait_events(f, 2);
    g_assert_cmpint(event_at(f, 1), ==, VMC_GUEST_EVENT_CLOSED);
    g_assert_true(f->saw_eof);
    g_assert_false(vmc_guest_port_is_open(f->port));
    g_assert_cmpint(vmc_guest_port_read(f->port, (guint8[4]){0}, 4), ==, -1);

    /* it reconnects */
    a = connect_unix(path);
    wait_events(f, 3);
    g_assert_cmpint(event_at(f, 2), ==, VMC_GUEST_EVENT_OPENED);
    g_byte_array_set_size(f->got, 0);
    vmc_test_fd_write_all(a, (const guint8 *)"again", 5);
    wait_got(f, 5);

    /* a new connection while the old one is still open: the newest wins */
    b = connect_unix(path);
    wait_events(f, 5);
    g_assert_cmpint(event_at(f, 3), ==, VMC_GUEST_EVENT_CLOSED);
    g_assert_cmpint(event_at(f, 4), ==, VMC_GUEST_EVENT_OPENED);
    g_assert_true(vmc_test_fd_wait_eof(a, VMC_TEST_TIMEOUT_MS));
    port_write_all(f, "new");
    expect_peer_reads(b, "new");
    close(a);
    close(b);
    wait_events(f, 6);
    g_assert_cmpint(event_at(f, 5), ==, VMC_GUEST_EVENT_CLOSED);

    /* the socket file is removed with the port */
    g_clear_pointer(&f->port, vmc_guest_port_free);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

static void
test_unix_busy_and_stale(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "g.sock", NULL);
    g_autofree char *spec = g_strdup_printf("unix:%s", path);
    g_autofree char *file = g_build_filename(f->dir, "plain", NULL);
    g_autofree char *spec2 = g_strdup_printf("unix:%s", file);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    GError *error = NULL;
    VmcGuestPort *other;
    int s;

    /* a stale socket file (bound, nobody listening) is replaced */
    s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    g_assert_cmpint(bind(s, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
    close(s);
    start_port(f, spec);

    /* a live one is busy */
    other = vmc_guest_port_new(spec, f->ctx, &error);
    g_assert_no_error(error);
    g_assert_false(vmc_guest_port_start(other, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE);
    g_clear_error(&error);
    vmc_guest_port_free(other);
    g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS)); /* the failed one did not unlink */

    /* a plain file is never replaced */
    g_assert_true(g_file_set_contents(file, "x", 1, NULL));
    other = vmc_guest_port_new(spec2, f->ctx, &error);
    g_assert_false(vmc_guest_port_start(other, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_clear_error(&error);
    vmc_guest_port_free(other);
    g_unlink(file);
    g_clear_pointer(&f->port, vmc_guest_port_free);
}

static int
listen_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    g_assert_cmpint(bind(s, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
    g_assert_cmpint(listen(s, 4), ==, 0);
    return s;
}

static int
accept_within(int lfd, guint timeout_ms)
{
    GPollFD p = {.fd = lfd, .events = G_IO_IN};

    if (g_poll(&p, 1, (gint)timeout_ms) <= 0)
        return -1;
    return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static gboolean
iterate_until_accept(Fixture *f, int lfd, int *out)
{
    gint64 deadline = g_get_monotonic_time() + VMC_TEST_TIMEOUT_MS * 1000;

    while (g_get_monotonic_time() < deadline) {
        int c;
        g_main_context_iteration(f->ctx, FALSE);
        c = accept_within(lfd, 10);
        if (c >= 0) {
            *out = c;
            return TRUE;
        }
    }
    return FALSE;
}

static void
test_connect_retry(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "qemu.sock", NULL);
    g_autofree char *spec = g_strdup_printf("connect:%s", path);
    int lfd, c;

    /* nothing listens yet: start succeeds and keeps retrying */
    start_port(f, spec);
    vmc_test_run_for(f->ctx, 50);
    g_assert_cmpuint(f->events->len, ==, 0);

    lfd = listen_unix(path);
    g_assert_true(iterate_until_accept(f, lfd, &c));
    wait_events(f, 1);
    g_assert_cmpint(event_at(f, 0), ==, VMC_GUEST_EVENT_OPENED);
    vmc_test_fd_write_all(c, (const guint8 *)"abc", 3);
    wait_got(f, 3);
    port_write_all(f, "xyz");
    expect_peer_reads(c, "xyz");

    /* the other end closes: CLOSED, then it connects again */
    close(c);
    wait_events(f, 2);
    g_assert_cmpint(event_at(f, 1), ==, VMC_GUEST_EVENT_CLOSED);
    g_assert_true(iterate_until_accept(f, lfd, &c));
    wait_events(f, 3);
    g_assert_cmpint(event_at(f, 2), ==, VMC_GUEST_EVENT_OPENED);

    /* drop: closes, then reconnects */
    vmc_guest_port_drop(f->port);
    g_assert_false(vmc_guest_port_is_open(f->port));
    g_assert_cmpuint(f->events->len, ==, 3); /* never from inside the call */
    wait_events(f, 4);
    g_assert_cmpint(event_at(f, 3), ==, VMC_GUEST_EVENT_CLOSED);
    g_assert_true(vmc_test_fd_wait_eof(c, VMC_TEST_TIMEOUT_MS));
    close(c);
    g_assert_true(iterate_until_accept(f, lfd, &c));
    wait_events(f, 5);
    g_assert_cmpint(event_at(f, 4), ==, VMC_GUEST_EVENT_OPENED);
    close(c);
    g_clear_pointer(&f->port, vmc_guest_port_free);
    close(lfd);
    g_unlink(path);
}

static void
test_pty(Fixture *f, gconstpointer data)
{
    const char *desc;
    int s;

    start_port(f, "pty");
    desc = vmc_guest_port_describe(f->port);
    g_assert_true(g_str_has_prefix(desc, "pty:/dev/"));
    vmc_test_run_for(f->ctx, 150);
    g_assert_cmpuint(f->events->len, ==, 0); /* nobody has the slave open */

    s = open(desc + 4, O_RDWR | O_NOCTTY | O_CLOEXEC);
    g_assert_cmpint(s, >=, 0);
    wait_events(f, 1);
    g_assert_cmpint(event_at(f, 0), ==, VMC_GUEST_EVENT_OPENED);

    /* raw: binary bytes pass unchanged, no echo */
    vmc_test_fd_write_all(s, (const guint8 *)"\x01\x00\r\n\x03\x7f", 6);
    wait_got(f, 6);
    g_assert_cmpmem(f->got->data, f->got->len, "\x01\x00\r\n\x03\x7f", 6);
    port_write_all(f, "\r\n\x04x");
    expect_peer_reads(s, "\r\n\x04x");

    /* slave closed: CLOSED; reopened: OPENED */
    close(s);
    wait_events(f, 2);
    g_assert_cmpint(event_at(f, 1), ==, VMC_GUEST_EVENT_CLOSED);
    s = open(desc + 4, O_RDWR | O_NOCTTY | O_CLOEXEC);
    wait_events(f, 3);
    g_assert_cmpint(event_at(f, 2), ==, VMC_GUEST_EVENT_OPENED);

    /* drop: stays closed while this slave fd lives, reopens after close + open */
    vmc_guest_port_drop(f->port);
    wait_events(f, 4);
    g_assert_cmpint(event_at(f, 3), ==, VMC_GUEST_EVENT_CLOSED);
    vmc_test_fd_write_all(s, (const guint8 *)"junk", 4);
    vmc_test_run_for(f->ctx, 250);
    g_assert_cmpuint(f->events->len, ==, 4);
    close(s);
    vmc_test_run_for(f->ctx, 250);
    g_byte_array_set_size(f->got, 0);
    s = open(desc + 4, O_RDWR | O_NOCTTY | O_CLOEXEC);
    wait_events(f, 5);
    g_assert_cmpint(event_at(f, 4), ==, VMC_GUEST_EVENT_OPENED);
    vmc_test_fd_write_all(s, (const guint8 *)"ok", 2);
    wait_got(f, 2);
    g_assert_cmpmem(f->got->data, f->got->len, "ok", 2); /* the junk was discarded */
    close(s);
}

static void
test_fd(Fixture *f, gconstpointer data)
{
    int sv[2];
    g_autofree char *spec = NULL;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    spec = g_strdup_printf("fd:%d", sv[0]);
    start_port(f, spec);
    g_assert_cmpstr(vmc_guest_port_describe(f->port), ==, spec);
    wait_events(f, 1);
    g_assert_cmpint(event_at(f, 0), ==, VMC_GUEST_EVENT_OPENED);
    vmc_test_fd_write_all(sv[1], (const guint8 *)"fdfd", 4);
    wait_got(f, 4);
    port_write_all(f, "back");
    expect_peer_reads(sv[1], "back");
    close(sv[1]);
    wait_events(f, 2);
    g_assert_cmpint(event_at(f, 1), ==, VMC_GUEST_EVENT_CLOSED);
    /* the inherited fd belongs to the port and is closed with the connection */
    g_assert_cmpint(fcntl(sv[0], F_GETFD), ==, -1);

    /* a closed fd number is an error at start */
    {
        GError *error = NULL;
        VmcGuestPort *p = vmc_guest_port_new(spec, f->ctx, &error);
        g_assert_false(vmc_guest_port_start(p, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_clear_error(&error);
        vmc_guest_port_free(p);
    }
}

static void
test_fd_listening(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "inh.sock", NULL);
    g_autofree char *spec = NULL;
    int lfd = listen_unix(path), a;

    spec = g_strdup_printf("fd:%d", lfd);
    start_port(f, spec);
    a = connect_unix(path);
    wait_events(f, 1);
    g_assert_cmpint(event_at(f, 0), ==, VMC_GUEST_EVENT_OPENED);
    close(a);
    wait_events(f, 2);
    a = connect_unix(path);
    wait_events(f, 3);
    g_assert_cmpint(event_at(f, 2), ==, VMC_GUEST_EVENT_OPENED);
    close(a);
    g_clear_pointer(&f->port, vmc_guest_port_free);
    g_unlink(path);
}

static void
test_dev(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "fifo", NULL);
    g_autofree char *spec = g_strdup_printf("dev:%s", path);
    g_autofree char *missing = g_strdup_printf("dev:%s/none", f->dir);
    GError *error = NULL;
    VmcGuestPort *p;
    int w;

    p = vmc_guest_port_new(missing, f->ctx, &error);
    g_assert_false(vmc_guest_port_start(p, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_clear_error(&error);
    vmc_guest_port_free(p);

    g_assert_cmpint(mkfifo(path, 0600), ==, 0);
    start_port(f, spec);
    wait_events(f, 1);
    g_assert_cmpint(event_at(f, 0), ==, VMC_GUEST_EVENT_OPENED);
    w = open(path, O_WRONLY | O_CLOEXEC);
    vmc_test_fd_write_all(w, (const guint8 *)"dev!", 4);
    wait_got(f, 4);
    g_assert_cmpmem(f->got->data, f->got->len, "dev!", 4);
    close(w);

    /* drop: closed, reopened after a short delay */
    vmc_guest_port_drop(f->port);
    wait_events(f, 3);
    g_assert_cmpint(event_at(f, 1), ==, VMC_GUEST_EVENT_CLOSED);
    g_assert_cmpint(event_at(f, 2), ==, VMC_GUEST_EVENT_OPENED);
    g_clear_pointer(&f->port, vmc_guest_port_free);
    g_unlink(path);
}

static void
test_write_interest(Fixture *f, gconstpointer data)
{
    int sv[2];
    g_autofree char *spec = NULL;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    spec = g_strdup_printf("fd:%d", sv[0]);
    start_port(f, spec);
    wait_events(f, 1);
    vmc_test_run_for(f->ctx, 30);
    g_assert_cmpuint(f->writable, ==, 0); /* not wanted: never reported */
    vmc_guest_port_want_write(f->port, TRUE);
    vmc_test_spin(f->ctx);
    g_assert_cmpuint(f->writable, >, 0);
    vmc_guest_port_want_write(f->port, FALSE);
    f->writable = 0;
    vmc_test_spin(f->ctx);
    g_assert_cmpuint(f->writable, ==, 0);

    /* read interest off: bytes wait in the socket, READABLE is not reported */
    vmc_guest_port_want_read(f->port, FALSE);
    f->readable = 0;
    vmc_test_fd_write_all(sv[1], (const guint8 *)"wait", 4);
    vmc_test_run_for(f->ctx, 30);
    g_assert_cmpuint(f->readable, ==, 0);
    /* even a hang-up with unread data keeps them until reading resumes */
    close(sv[1]);
    vmc_test_run_for(f->ctx, 30);
    g_assert_cmpuint(f->events->len, ==, 1);
    vmc_guest_port_want_read(f->port, TRUE);
    wait_events(f, 2);
    g_assert_cmpmem(f->got->data, f->got->len, "wait", 4);
    g_assert_cmpint(event_at(f, 1), ==, VMC_GUEST_EVENT_CLOSED);
}

static void
test_free_in_callback(Fixture *f, gconstpointer data)
{
    int sv[2];
    g_autofree char *spec = NULL;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    spec = g_strdup_printf("fd:%d", sv[0]);
    start_port(f, spec);
    f->free_on_closed = TRUE;
    wait_events(f, 1);
    close(sv[1]);
    wait_events(f, 2);
    g_assert_null(f->port);
}

/* ---- push ---- */

typedef struct {
    GByteArray *out; /* what the "guest" accepted */
    gsize accept;    /* how many more bytes it takes before blocking */
    guint space_calls;
} PushGuest;

static gsize
push_write(gpointer user_data, const guint8 *data, gsize len)
{
    PushGuest *g = user_data;
    gsize take = MIN(len, g->accept);

    g_byte_array_append(g->out, data, (guint)take);
    g->accept -= take;
    return take;
}

static void
push_space(gpointer user_data)
{
    PushGuest *g = user_data;
    g->space_calls++;
}

static gboolean
space_called(gpointer data)
{
    return ((PushGuest *)data)->space_calls > 0;
}

static gboolean
writable_seen(gpointer data)
{
    return ((Fixture *)data)->writable > 0;
}

static void
test_push(Fixture *f, gconstpointer data)
{
    PushGuest g = {.out = g_byte_array_new(), .accept = 5};
    g_autofree guint8 *big = g_malloc(300 * 1024);
    GOutputVector v[2] = {{"0123", 4}, {"456789", 6}};
    gsize taken;

    start_port(f, "push");
    g_assert_cmpstr(vmc_guest_port_describe(f->port), ==, "push");
    vmc_guest_port_push_set_funcs(f->port, push_write, push_space, &g);
    /* pushed before open: discarded */
    g_assert_cmpuint(vmc_guest_port_push_bytes(f->port, (const guint8 *)"lost", 4), ==, 4);

    vmc_guest_port_push_open(f->port, TRUE);
    g_assert_cmpuint(f->events->len, ==, 0); /* deferred */
    g_assert_cmpuint(vmc_guest_port_push_bytes(f->port, (const guint8 *)"guest", 5), ==, 5);
    wait_got(f, 5);
    g_assert_cmpint(event_at(f, 0), ==, VMC_GUEST_EVENT_OPENED);
    g_assert_cmpmem(f->got->data, f->got->len, "guest", 5);

    /* the VMM takes 5 of 10 bytes, then signals room */
    g_assert_cmpint(vmc_guest_port_writev(f->port, v, 2), ==, 5);
    g_assert_cmpmem(g.out->data, g.out->len, "01234", 5);
    vmc_guest_port_want_write(f->port, TRUE);
    vmc_test_spin(f->ctx);
    g_assert_cmpuint(f->writable, ==, 0); /* blocked until push_writable */
    g.accept = 100;
    vmc_guest_port_push_writable(f->port);
    g_assert_true(vmc_test_wait(f->ctx, writable_seen, f, VMC_TEST_TIMEOUT_MS));
    g_assert_cmpint(vmc_guest_port_writev(f->port, (GOutputVector[]){{"56789", 5}}, 1), ==, 5);
    g_assert_cmpmem(g.out->data, g.out->len, "0123456789", 10);
    vmc_guest_port_want_write(f->port, FALSE);

    /* a full buffer refuses the rest; reading makes room and the VMM hears of it */
    f->drain = FALSE;
    memset(big, 'b', 300 * 1024);
    taken = vmc_guest_port_push_bytes(f->port, big, 300 * 1024);
    g_assert_cmpuint(taken, ==, 256 * 1024);
    g_assert_cmpuint(vmc_guest_port_push_bytes(f->port, big, 1), ==, 0);
    vmc_test_spin(f->ctx);
    g_assert_cmpuint(g.space_calls, ==, 0);
    f->drain = TRUE;
    g_assert_true(vmc_test_wait(f->ctx, space_called, &g, VMC_TEST_TIMEOUT_MS));
    wait_got(f, 5 + 256 * 1024);

    /* drop: closed until the VMM reports the next open */
    vmc_guest_port_drop(f->port);
    wait_events(f, 2);
    g_assert_cmpint(event_at(f, 1), ==, VMC_GUEST_EVENT_CLOSED);
    g_assert_cmpint(vmc_guest_port_writev(f->port, v, 1), ==, -1);
    vmc_guest_port_push_open(f->port, TRUE);
    wait_events(f, 3);
    g_assert_cmpint(event_at(f, 2), ==, VMC_GUEST_EVENT_OPENED);
    vmc_guest_port_push_open(f->port, FALSE);
    wait_events(f, 4);
    g_assert_cmpint(event_at(f, 3), ==, VMC_GUEST_EVENT_CLOSED);
    g_byte_array_unref(g.out);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("Guest-port backends: unix listen, connect, pty, dev, fd, push");

    g_test_add_func("/guest-port/spec", test_spec_parse);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/guest-port/unix/reconnect", test_unix_reconnect);
    ADD("/guest-port/unix/busy-and-stale", test_unix_busy_and_stale);
    ADD("/guest-port/connect/retry", test_connect_retry);
    ADD("/guest-port/pty", test_pty);
    ADD("/guest-port/fd/connected", test_fd);
    ADD("/guest-port/fd/listening", test_fd_listening);
    ADD("/guest-port/dev", test_dev);
    ADD("/guest-port/interest", test_write_interest);
    ADD("/guest-port/free-in-callback", test_free_in_callback);
    ADD("/guest-port/push", test_push);
#undef ADD
    return g_test_run();
}
