/* server-test-util.h — helpers for the session, runtime and guest-port suites:
 * bounded waits on a private GMainContext, fd counting, hex. Header-only. */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

#define VMC_TEST_TIMEOUT_MS 5000

typedef gboolean (*VmcTestCond)(gpointer data);

static inline gboolean
vmc_test_timeout_cb(gpointer data)
{
    *(gboolean *)data = TRUE;
    return G_SOURCE_REMOVE;
}

/* Iterates `ctx` until cond(data) holds or timeout_ms pass. Returns cond's value. */
static inline gboolean
vmc_test_wait(GMainContext *ctx, VmcTestCond cond, gpointer data, guint timeout_ms)
{
    gboolean timed_out = FALSE;
    GSource *t = g_timeout_source_new(timeout_ms);
    gboolean ok;

    g_source_set_callback(t, vmc_test_timeout_cb, &timed_out, NULL);
    g_source_attach(t, ctx);
    while (!(ok = cond(data)) && !timed_out)
        g_main_context_iteration(ctx, TRUE);
    g_source_destroy(t);
    g_source_unref(t);
    return ok;
}

/* Runs every ready source, without blocking, a few rounds. */
static inline void
vmc_test_spin(GMainContext *ctx)
{
    for (int i = 0; i < 20; i++)
        if (!g_main_context_iteration(ctx, FALSE))
            break;
}

static inline gboolean
vmc_test_timeout_only(gpointer data)
{
    return FALSE;
}

/* Iterates `ctx` for `ms` (for "nothing happens" checks only; never as a sync). */
static inline void
vmc_test_run_for(GMainContext *ctx, guint ms)
{
    vmc_test_wait(ctx, vmc_test_timeout_only, NULL, ms);
}

static inline guint
vmc_test_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    guint n = 0;

    g_assert_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

/* Blocking-with-deadline helpers on a raw fd (the test's peer side). */
static inline gboolean
vmc_test_fd_read_exact(int fd, guint8 *buf, gsize len, guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    gsize off = 0;

    while (off < len) {
        GPollFD p = {.fd = fd, .events = G_IO_IN};
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        ssize_t n;
        if (left <= 0)
            return FALSE;
        if (g_poll(&p, 1, (gint)left) <= 0)
            continue;
        n = read(fd, buf + off, len - off);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return FALSE;
        off += (gsize)n;
    }
    return TRUE;
}

static inline void
vmc_test_fd_write_all(int fd, const guint8 *buf, gsize len)
{
    gsize off = 0;

    while (off < len) {
        GPollFD p = {.fd = fd, .events = G_IO_OUT};
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            g_poll(&p, 1, 100);
            continue;
        }
        g_assert_cmpint(n, >, 0);
        off += (gsize)n;
    }
}

/* EOF (or error) within timeout, with no bytes before it. */
static inline gboolean
vmc_test_fd_wait_eof(int fd, guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {
        GPollFD p = {.fd = fd, .events = G_IO_IN};
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        guint8 b;
        ssize_t n;
        if (left <= 0)
            return FALSE;
        if (g_poll(&p, 1, (gint)left) <= 0)
            continue;
        n = read(fd, &b, 1);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        return n <= 0;
    }
}
