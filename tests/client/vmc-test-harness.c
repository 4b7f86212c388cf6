/* vmc-test-harness.c — live-test helpers (see vmc-test-harness.h). */
#include "vmc-test-harness.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <glib/gstdio.h>

#include "protocol/vmc-link.h"

const char *
vmc_test_server_binary(void)
{
    const char *p = g_getenv("VMC_TEST_SERVER");
    if (!p || !*p || !g_file_test(p, G_FILE_TEST_IS_EXECUTABLE))
        return NULL;
    return p;
}

const char *
vmc_test_client_binary(void)
{
    const char *p = g_getenv("VMC_TEST_CLIENT");
    if (!p || !*p || !g_file_test(p, G_FILE_TEST_IS_EXECUTABLE))
        return NULL;
    return p;
}

gboolean
vmc_test_backend_available(const char *backend)
{
    if (!vmc_test_server_binary())
        return FALSE;
    const char *list = g_getenv("VMC_TEST_BACKENDS");
    if (!list)
        return g_strcmp0(backend, "native") == 0;
    g_auto(GStrv) parts = g_strsplit(list, ",", -1);
    return g_strv_contains((const char *const *)parts, backend);
}

/* ---- server process ---- */

void
vmc_test_child_setup(gpointer user_data)
{
    /* in the child: go away with the test process, even when it aborts */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
}

static guint16
free_tcp_port(void)
{
    g_autoptr(GSocket) s = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                        G_SOCKET_PROTOCOL_TCP, NULL);
    g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) any = g_inet_socket_address_new(lo, 0);
    g_assert_nonnull(s);
    g_assert_true(g_socket_bind(s, any, TRUE, NULL));
    g_autoptr(GSocketAddress) got = g_socket_get_local_address(s, NULL);
    guint16 port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(got));
    g_socket_close(s, NULL);
    return port;
}

static void
on_server_exit(GObject *source, GAsyncResult *res, gpointer user_data)
{
    VmcTestServer *s = user_data;
    g_subprocess_wait_finish(G_SUBPROCESS(source), res, NULL);
    s->exited = TRUE;
    s->status = g_subprocess_get_status(G_SUBPROCESS(source));
}

VmcTestServer *
vmc_test_server_start(const char *backend, gboolean tcp, const char *const *extra,
                      GMainContext *ctx, GError **error)
{
    const char *bin = vmc_test_server_binary();
    if (!bin) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no vmcmux-server binary");
        return NULL;
    }
    VmcTestServer *s = g_new0(VmcTestServer, 1);
    s->dir = g_dir_make_tmp("vmc-test-XXXXXX", error);
    if (!s->dir) {
        g_free(s);
        return NULL;
    }
    s->ctx = g_main_context_ref(ctx);
    s->backend = g_strdup(backend);
    s->listen = tcp ? g_strdup_printf("127.0.0.1:%u", free_tcp_port())
                    : g_strdup_printf("unix:%s/spice.sock", s->dir);
    s->guest = g_strdup_printf("unix:%s/agent.sock", s->dir);
    s->log_path = g_build_filename(s->dir, "server.log", NULL);

    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    gboolean have_auth = FALSE;
    g_ptr_array_add(argv, (gpointer)bin);
    g_ptr_array_add(argv, "--backend");
    g_ptr_array_add(argv, (gpointer)backend);
    g_ptr_array_add(argv, "--listen");
    g_ptr_array_add(argv, s->listen);
    g_ptr_array_add(argv, "--guest");
    g_ptr_array_add(argv, s->guest);
    for (guint i = 0; extra && extra[i]; i++) {
        if (g_str_has_prefix(extra[i], "--password") ||
            g_str_has_prefix(extra[i], "--disable-ticketing"))
            have_auth = TRUE;
        g_ptr_array_add(argv, (gpointer)extra[i]);
    }
    if (!have_auth)
        g_ptr_array_add(argv, "--disable-ticketing");
    g_ptr_array_add(argv, NULL);

    g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDERR_MERGE);
    g_subprocess_launcher_set_stdout_file_path(l, s->log_path);
    g_subprocess_launcher_set_child_setup(l, vmc_test_child_setup, NULL, NULL);
    /* libspice-server logs peer trouble with g_warning: do not make that fatal there */
    if (g_strcmp0(backend, "native") != 0)
        g_subprocess_launcher_unsetenv(l, "G_DEBUG");
    g_autofree char *cmdline = g_strjoinv(" ", (char **)argv->pdata);
    g_debug("harness: starting %s", cmdline);
    s->proc = g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, error);
    if (!s->proc) {
        vmc_test_server_free(s);
        return NULL;
    }
    g_main_context_push_thread_default(ctx);
    g_subprocess_wait_async(s->proc, NULL, on_server_exit, s);
    g_main_context_pop_thread_default(ctx);

    /* UNIX listeners: wait until both sockets exist (a bounded poll) */
    if (!tcp) {
        g_autofree char *spice = g_strdup(s->listen + 5);
        g_autofree char *agent = g_strdup(s->guest + 5);
        gint64 deadline = g_get_monotonic_time() + VMC_TEST_TIMEOUT * 1000;
        while (!(g_file_test(spice, G_FILE_TEST_EXISTS) && g_file_test(agent, G_FILE_TEST_EXISTS))) {
            if (s->exited || g_get_monotonic_time() > deadline) {
                g_autofree char *tail = vmc_test_server_log_tail(s, 2000);
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                            "vmcmux-server (%s) did not come up: %s", backend, tail);
                vmc_test_server_free(s);
                return NULL;
            }
            vmc_io_wait(ctx, NULL, NULL, 5);
        }
    }
    return s;
}

gboolean
vmc_test_server_alive(VmcTestServer *s)
{
    while (g_main_context_iteration(s->ctx, FALSE))
        ;
    if (s->exited)
        return FALSE;
    /* the exit notification may still be in flight: ask the kernel too */
    const char *id = g_subprocess_get_identifier(s->proc);
    if (!id)
        return FALSE;
    return TRUE;
}

char *
vmc_test_server_describe_status(VmcTestServer *s)
{
    if (!s->exited)
        return g_strdup("running");
    if (WIFEXITED(s->status))
        return g_strdup_printf("exit %d", WEXITSTATUS(s->status));
    if (WIFSIGNALED(s->status))
        return g_strdup_printf("signal %d", WTERMSIG(s->status));
    return g_strdup_printf("status 0x%x", s->status);
}

char *
vmc_test_server_log_tail(VmcTestServer *s, gsize max)
{
    g_autofree char *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(s->log_path, &text, &len, NULL))
        return g_strdup("(no log)");
    if (len > max)
        return g_strdup(text + len - max);
    return g_steal_pointer(&text);
}

static gboolean
cond_exited(gpointer user_data)
{
    VmcTestServer *s = user_data;
    return s->exited;
}

static void
remove_dir(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(dir, name, NULL);
        if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
            remove_dir(p);
        else
            g_unlink(p);
    }
    g_rmdir(dir);
}

void
vmc_test_server_free(VmcTestServer *s)
{
    if (!s)
        return;
    if (s->proc) {
        if (!s->exited) {
            g_subprocess_send_signal(s->proc, SIGTERM);
            if (!vmc_io_wait(s->ctx, cond_exited, s, VMC_TEST_TIMEOUT)) {
                g_test_message("vmcmux-server did not stop on SIGTERM; killing it");
                g_subprocess_force_exit(s->proc);
                vmc_io_wait(s->ctx, cond_exited, s, VMC_TEST_TIMEOUT);
            }
        }
        if (s->exited && !(WIFEXITED(s->status) && WEXITSTATUS(s->status) == 0)) {
            g_autofree char *st = vmc_test_server_describe_status(s);
            g_test_message("vmcmux-server (%s) ended with %s", s->backend, st);
        }
        g_object_unref(s->proc);
    }
    if (s->dir && !g_getenv("VMC_TEST_KEEP"))
        remove_dir(s->dir);
    while (g_main_context_iteration(s->ctx, FALSE))
        ;
    g_main_context_unref(s->ctx);
    g_free(s->dir);
    g_free(s->listen);
    g_free(s->guest);
    g_free(s->backend);
    g_free(s->log_path);
    g_free(s);
}

/* ---- client ---- */

static GSocket *
connect_retrying(const char *spec, GError **error)
{
    gint64 deadline = g_get_monotonic_time() + VMC_TEST_TIMEOUT * 1000;
    for (;;) {
        GError *local = NULL;
        GSocket *s = vmc_io_connect(spec, VMC_TEST_TIMEOUT, &local);
        if (s)
            return s;
        gboolean retry = g_error_matches(local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
                         g_error_matches(local, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
        if (!retry || g_get_monotonic_time() > deadline) {
            g_propagate_error(error, local);
            return NULL;
        }
        g_error_free(local);
        g_usleep(5000);
    }
}

VmcTestClient *
vmc_test_client_new(GMainContext *ctx, const char *spec, const VmcClientConfig *cfg,
                    GError **error)
{
    g_autoptr(GSocket) sock = connect_retrying(spec, error);
    if (!sock)
        return NULL;
    VmcTestClient *tc = g_new0(VmcTestClient, 1);
    tc->ctx = g_main_context_ref(ctx);
    tc->cc = vmc_client_conn_new_for_socket(sock, cfg, ctx);
    tc->c = vmc_client_conn_get_client(tc->cc);
    return tc;
}

VmcTestClient *
vmc_test_client_connect(GMainContext *ctx, const char *spec, const char *password,
                        GError **error)
{
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.password = password;
    return vmc_test_client_new(ctx, spec, &cfg, error);
}

void
vmc_test_client_free(VmcTestClient *tc)
{
    if (!tc)
        return;
    vmc_client_conn_free(tc->cc);
    while (g_main_context_iteration(tc->ctx, FALSE))
        ;
    g_main_context_unref(tc->ctx);
    g_free(tc);
}

static gboolean
cond_linked(gpointer user_data)
{
    VmcTestClient *tc = user_data;
    VmcClientState st = vmc_client_get_state(tc->c);
    return st == VMC_CLIENT_STATE_CONNECTED || st == VMC_CLIENT_STATE_FAILED ||
           vmc_client_conn_is_closed(tc->cc);
}

gboolean
vmc_test_client_wait_linked(VmcTestClient *tc, guint timeout_ms)
{
    vmc_io_wait(tc->ctx, cond_linked, tc, timeout_ms);
    return vmc_client_get_state(tc->c) == VMC_CLIENT_STATE_CONNECTED;
}

static gboolean
cond_event(gpointer user_data)
{
    VmcTestClient *tc = user_data;
    return vmc_client_pending_events(tc->c) > 0 || vmc_client_conn_is_closed(tc->cc);
}

gboolean
vmc_test_client_next(VmcTestClient *tc, VmcClientEvent *ev, guint timeout_ms)
{
    vmc_io_wait(tc->ctx, cond_event, tc, timeout_ms);
    return vmc_client_next_event(tc->c, ev);
}

static gboolean
wait_matching(VmcTestClient *tc, VmcClientEventType etype, guint32 type, VmcClientEvent *out,
              guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    for (;;) {
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        VmcClientEvent ev;
        if (left <= 0)
            left = 0;
        if (!vmc_test_client_next(tc, &ev, (guint)left))
            return FALSE;
        gboolean match = ev.type == etype &&
                         (etype == VMC_CLIENT_EV_MESSAGE ? ev.msg_type == type
                          : etype == VMC_CLIENT_EV_AGENT_MESSAGE
                              ? (type == G_MAXUINT32 || ev.agent.type == type)
                              : TRUE);
        if (match) {
            if (out)
                *out = ev;
            else
                vmc_client_event_clear(&ev);
            return TRUE;
        }
        vmc_client_event_clear(&ev);
    }
}

gboolean
vmc_test_client_wait_msg(VmcTestClient *tc, guint16 type, VmcClientEvent *ev, guint timeout_ms)
{
    return wait_matching(tc, VMC_CLIENT_EV_MESSAGE, type, ev, timeout_ms);
}

gboolean
vmc_test_client_wait_agent_msg(VmcTestClient *tc, guint32 type, VmcClientEvent *ev,
                               guint timeout_ms)
{
    return wait_matching(tc, VMC_CLIENT_EV_AGENT_MESSAGE, type, ev, timeout_ms);
}

static gboolean
cond_started(gpointer user_data)
{
    VmcTestClient *tc = user_data;
    return vmc_client_agent_started(tc->c) || vmc_client_conn_is_closed(tc->cc);
}

gboolean
vmc_test_client_wait_agent_started(VmcTestClient *tc, guint timeout_ms)
{
    vmc_io_wait(tc->ctx, cond_started, tc, timeout_ms);
    return vmc_client_agent_started(tc->c);
}

static gboolean
cond_closed(gpointer user_data)
{
    VmcTestClient *tc = user_data;
    VmcClientEvent ev;
    while (vmc_client_next_event(tc->c, &ev))
        vmc_client_event_clear(&ev);
    return vmc_client_conn_is_closed(tc->cc);
}

gboolean
vmc_test_client_wait_closed(VmcTestClient *tc, guint timeout_ms)
{
    return vmc_io_wait(tc->ctx, cond_closed, tc, timeout_ms);
}

gboolean
vmc_test_client_closed(VmcTestClient *tc)
{
    return vmc_client_conn_is_closed(tc->cc);
}

static gboolean
cond_flushed(gpointer user_data)
{
    VmcTestClient *tc = user_data;
    return vmc_client_conn_is_closed(tc->cc) ||
           (vmc_client_agent_pending(tc->c) == 0 &&
            vmc_io_conn_output_pending(vmc_client_conn_get_io(tc->cc)) == 0);
}

gboolean
vmc_test_client_flush(VmcTestClient *tc, guint timeout_ms)
{
    return vmc_io_wait(tc->ctx, cond_flushed, tc, timeout_ms) &&
           !vmc_client_conn_is_closed(tc->cc);
}

/* ---- agent ---- */

VmcTestAgent *
vmc_test_agent_new(GMainContext *ctx, const char *spec, GError **error)
{
    VmcAgentConn *ac = vmc_agent_conn_new(spec, ctx, VMC_TEST_TIMEOUT, error);
    if (!ac)
        return NULL;
    VmcTestAgent *ta = g_new0(VmcTestAgent, 1);
    ta->ctx = g_main_context_ref(ctx);
    ta->ac = ac;
    ta->peer = vmc_agent_conn_get_peer(ac);
    return ta;
}

void
vmc_test_agent_free(VmcTestAgent *ta)
{
    if (!ta)
        return;
    vmc_agent_conn_free(ta->ac);
    while (g_main_context_iteration(ta->ctx, FALSE))
        ;
    g_main_context_unref(ta->ctx);
    g_free(ta);
}

static gboolean
cond_agent_event(gpointer user_data)
{
    VmcTestAgent *ta = user_data;
    return vmc_agent_peer_pending_events(ta->peer) > 0 || !vmc_agent_conn_is_open(ta->ac);
}

gboolean
vmc_test_agent_next(VmcTestAgent *ta, VmcAgentPeerEvent *ev, guint timeout_ms)
{
    vmc_io_wait(ta->ctx, cond_agent_event, ta, timeout_ms);
    return vmc_agent_peer_next_event(ta->peer, ev);
}

gboolean
vmc_test_agent_wait_msg(VmcTestAgent *ta, guint32 port, guint32 type, VmcAgentPeerEvent *out,
                        guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    for (;;) {
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        VmcAgentPeerEvent ev;
        if (!vmc_test_agent_next(ta, &ev, left > 0 ? (guint)left : 0))
            return FALSE;
        if (ev.type == VMC_AGENT_PEER_EV_MESSAGE && (port == 0 || ev.port == port) &&
            (type == G_MAXUINT32 || ev.header.type == type)) {
            if (out)
                *out = ev;
            else
                vmc_agent_peer_event_clear(&ev);
            return TRUE;
        }
        vmc_agent_peer_event_clear(&ev);
    }
}

static gboolean
cond_agent_flushed(gpointer user_data)
{
    VmcTestAgent *ta = user_data;
    gsize len;
    vmc_agent_peer_output(ta->peer, &len);
    return len == 0 || !vmc_agent_conn_is_open(ta->ac);
}

gboolean
vmc_test_agent_flush(VmcTestAgent *ta, guint timeout_ms)
{
    return vmc_io_wait(ta->ctx, cond_agent_flushed, ta, timeout_ms) &&
           vmc_agent_conn_is_open(ta->ac);
}

gboolean
vmc_test_agent_is_open(VmcTestAgent *ta)
{
    return vmc_agent_conn_is_open(ta->ac);
}

static gboolean
cond_agent_closed(gpointer user_data)
{
    VmcTestAgent *ta = user_data;
    VmcAgentPeerEvent ev;
    while (vmc_agent_peer_next_event(ta->peer, &ev))
        vmc_agent_peer_event_clear(&ev);
    return !vmc_agent_conn_is_open(ta->ac);
}

gboolean
vmc_test_agent_wait_closed(VmcTestAgent *ta, guint timeout_ms)
{
    return vmc_io_wait(ta->ctx, cond_agent_closed, ta, timeout_ms);
}

void
vmc_test_agent_pause(VmcTestAgent *ta, gboolean paused)
{
    VmcIoConn *io = vmc_agent_conn_get_io(ta->ac);
    if (io)
        vmc_io_conn_pause_read(io, paused);
}

/* ---- raw sockets ---- */

GSocket *
vmc_test_raw_connect(const char *spec, GError **error)
{
    return connect_retrying(spec, error);
}

gboolean
vmc_test_raw_send(GSocket *s, const guint8 *data, gsize len)
{
    gsize off = 0;
    while (off < len) {
        GError *error = NULL;
        if (!g_socket_condition_timed_wait(s, G_IO_OUT, (gint64)VMC_TEST_TIMEOUT * 1000, NULL,
                                           &error)) {
            g_error_free(error);
            return FALSE;
        }
        gssize n = g_socket_send(s, (const gchar *)data + off, len - off, NULL, &error);
        if (n < 0) {
            gboolean again = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
            g_error_free(error);
            if (again)
                continue;
            return FALSE;
        }
        off += (gsize)n;
    }
    return TRUE;
}

gboolean
vmc_test_raw_read(GSocket *s, guint8 *buf, gsize len, guint timeout_ms, gsize *got)
{
    gsize off = 0;
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    while (off < len) {
        GError *error = NULL;
        gint64 left = deadline - g_get_monotonic_time();
        if (left <= 0 || !g_socket_condition_timed_wait(s, G_IO_IN, left, NULL, &error)) {
            g_clear_error(&error);
            break;
        }
        gssize n = g_socket_receive(s, (gchar *)buf + off, len - off, NULL, &error);
        if (n < 0) {
            gboolean again = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
            g_error_free(error);
            if (again)
                continue;
            break;
        }
        if (n == 0)
            break;
        off += (gsize)n;
    }
    if (got)
        *got = off;
    return off == len;
}

gboolean
vmc_test_raw_wait_eof(GSocket *s, guint timeout_ms, gsize *extra)
{
    gsize total = 0;
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    guint8 buf[65536];
    for (;;) {
        GError *error = NULL;
        gint64 left = deadline - g_get_monotonic_time();
        if (left <= 0 || !g_socket_condition_timed_wait(s, G_IO_IN, left, NULL, &error)) {
            g_clear_error(&error);
            if (extra)
                *extra = total;
            return FALSE;
        }
        gssize n = g_socket_receive(s, (gchar *)buf, sizeof(buf), NULL, &error);
        if (n < 0) {
            gboolean again = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
            g_error_free(error);
            if (again)
                continue;
            n = 0; /* reset counts as closed */
        }
        if (n == 0) {
            if (extra)
                *extra = total;
            return TRUE;
        }
        total += (gsize)n;
    }
}

GByteArray *
vmc_test_link_message(guint32 magic, guint32 major, guint32 minor, guint8 channel_type,
                      guint32 connection_id, guint32 common_caps, guint32 channel_caps)
{
    guint8 buf[VMC_LINK_HEADER_SIZE + VMC_LINK_MESS_SIZE + 8];
    VmcLinkMess m = {0};
    VmcLinkHeader h;

    m.connection_id = connection_id;
    m.channel_type = channel_type;
    gsize n = vmc_link_mess_encode(&m, &common_caps, 1, &channel_caps, 1,
                                   buf + VMC_LINK_HEADER_SIZE, sizeof(buf) - VMC_LINK_HEADER_SIZE);
    g_assert_cmpuint(n, ==, VMC_LINK_MESS_SIZE + 8);
    h.magic = magic;
    h.major_version = major;
    h.minor_version = minor;
    h.size = (guint32)n;
    vmc_link_header_encode(&h, buf);
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, buf, (guint)(VMC_LINK_HEADER_SIZE + n));
    return b;
}
