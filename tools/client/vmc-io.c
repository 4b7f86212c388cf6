/* vmc-io.c — sockets, pumps and waits for the client library (see vmc-io.h). */
#include "tools/client/vmc-io.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gunixsocketaddress.h>

#define READ_BUF 65536

/* ---- addresses ---- */

static GSocketAddress *
parse_address(const char *spec, gboolean for_listen, GError **error)
{
    if (g_str_has_prefix(spec, "unix:")) {
        const char *path = spec + 5;
        if (!*path) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "\"%s\": empty socket path", spec);
            return NULL;
        }
        return g_unix_socket_address_new(path);
    }
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1]) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "\"%s\" is not HOST:PORT or unix:PATH", spec);
        return NULL;
    }
    char *end = NULL;
    guint64 port = g_ascii_strtoull(colon + 1, &end, 10);
    if (!end || *end || port > 65535 || (port == 0 && !for_listen)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "\"%s\": bad port \"%s\"",
                    spec, colon + 1);
        return NULL;
    }
    g_autofree char *host = g_strndup(spec, (gsize)(colon - spec));
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        char *inner = g_strndup(host + 1, strlen(host) - 2);
        g_free(host);
        host = inner;
    }
    GInetAddress *ia = g_inet_address_new_from_string(host);
    if (!ia) {
        /* a name: resolve synchronously (localhost and friends) */
        g_autoptr(GResolver) resolver = g_resolver_get_default();
        GList *addrs = g_resolver_lookup_by_name(resolver, host, NULL, error);
        if (!addrs) {
            g_prefix_error(error, "\"%s\": ", spec);
            return NULL;
        }
        ia = g_object_ref(addrs->data);
        g_resolver_free_addresses(addrs);
    }
    GSocketAddress *sa = g_inet_socket_address_new(ia, (guint16)port);
    g_object_unref(ia);
    return sa;
}

GSocket *
vmc_io_connect(const char *spec, guint timeout_ms, GError **error)
{
    g_autoptr(GSocketAddress) sa = parse_address(spec, FALSE, error);
    if (!sa)
        return NULL;
    GSocketFamily family = g_socket_address_get_family(sa);
    g_autoptr(GSocket) sock = g_socket_new(family, G_SOCKET_TYPE_STREAM,
                                           G_SOCKET_PROTOCOL_DEFAULT, error);
    if (!sock)
        return NULL;
    g_socket_set_blocking(sock, FALSE);
    GError *local = NULL;
    if (!g_socket_connect(sock, sa, NULL, &local)) {
        if (!g_error_matches(local, G_IO_ERROR, G_IO_ERROR_PENDING)) {
            g_propagate_prefixed_error(error, local, "%s: ", spec);
            return NULL;
        }
        g_clear_error(&local);
        if (!g_socket_condition_timed_wait(sock, G_IO_OUT, (gint64)timeout_ms * 1000, NULL,
                                           &local)) {
            g_propagate_prefixed_error(error, local, "%s: connect: ", spec);
            return NULL;
        }
        if (!g_socket_check_connect_result(sock, &local)) {
            g_propagate_prefixed_error(error, local, "%s: ", spec);
            return NULL;
        }
    }
    if (family != G_SOCKET_FAMILY_UNIX)
        g_socket_set_option(sock, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
    return g_steal_pointer(&sock);
}

GSocket *
vmc_io_listen(const char *spec, GError **error)
{
    g_autoptr(GSocketAddress) sa = parse_address(spec, TRUE, error);
    if (!sa)
        return NULL;
    GSocketFamily family = g_socket_address_get_family(sa);
    if (family == G_SOCKET_FAMILY_UNIX) {
        const char *path = spec + 5;
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path);
    }
    g_autoptr(GSocket) sock = g_socket_new(family, G_SOCKET_TYPE_STREAM,
                                           G_SOCKET_PROTOCOL_DEFAULT, error);
    if (!sock)
        return NULL;
    if (!g_socket_bind(sock, sa, family != G_SOCKET_FAMILY_UNIX, error) ||
        !g_socket_listen(sock, error)) {
        g_prefix_error(error, "%s: ", spec);
        return NULL;
    }
    g_socket_set_blocking(sock, FALSE);
    return g_steal_pointer(&sock);
}

GSocket *
vmc_io_accept(GSocket *listener, guint timeout_ms, GError **error)
{
    if (!g_socket_condition_timed_wait(listener, G_IO_IN, (gint64)timeout_ms * 1000, NULL, error))
        return NULL;
    GSocket *s = g_socket_accept(listener, NULL, error);
    if (s)
        g_socket_set_blocking(s, FALSE);
    return s;
}

char *
vmc_io_format_size(guint64 bytes)
{
    if (bytes < 1024)
        return g_strdup_printf("%" G_GUINT64_FORMAT " B", bytes);
    if (bytes < 1024 * 1024)
        return g_strdup_printf("%.1f KiB", (double)bytes / 1024.0);
    if (bytes < (guint64)1024 * 1024 * 1024)
        return g_strdup_printf("%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return g_strdup_printf("%.2f GiB", (double)bytes / (1024.0 * 1024.0 * 1024.0));
}

/* ---- the pump ---- */

struct _VmcIoConn {
    GSocket *sock;
    GMainContext *ctx;
    GSource *in_src;
    GSource *out_src;
    VmcIoReadFunc read_func;
    gpointer read_data;
    VmcIoPeekFunc peek;
    VmcIoConsumeFunc consume;
    gpointer out_data;
    gboolean closed;
    gboolean paused;
    guint dispatching;
    gboolean free_pending;
    guint64 bytes_in;
    guint64 bytes_out;
    guint8 *buf;
};

static void
destroy_source(GSource **src)
{
    if (*src) {
        g_source_destroy(*src);
        g_source_unref(*src);
        *src = NULL;
    }
}

static void really_free(VmcIoConn *conn);

static void
conn_closed(VmcIoConn *conn, const GError *error)
{
    if (conn->closed)
        return;
    vmc_io_conn_close(conn);
    if (conn->read_func)
        conn->read_func(conn, NULL, 0, error, conn->read_data);
}

static gboolean
on_readable(GSocket *sock, GIOCondition cond, gpointer user_data)
{
    VmcIoConn *conn = user_data;
    GError *error = NULL;
    gboolean keep = TRUE;

    conn->dispatching++;
    gssize n = g_socket_receive(sock, (gchar *)conn->buf, READ_BUF, NULL, &error);
    if (n > 0) {
        conn->bytes_in += (guint64)n;
        if (conn->read_func)
            conn->read_func(conn, conn->buf, (gsize)n, NULL, conn->read_data);
    } else if (n == 0) {
        conn_closed(conn, NULL);
    } else if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
        conn_closed(conn, error);
    }
    g_clear_error(&error);
    conn->dispatching--;
    if (conn->closed || conn->paused)
        keep = FALSE;
    if (conn->free_pending && conn->dispatching == 0) {
        really_free(conn);
        return G_SOURCE_REMOVE;
    }
    return keep;
}

static void
arm_read(VmcIoConn *conn)
{
    if (conn->in_src || conn->closed || conn->paused)
        return;
    conn->in_src = g_socket_create_source(conn->sock, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
    g_source_set_callback(conn->in_src, G_SOURCE_FUNC(on_readable), conn, NULL);
    g_source_attach(conn->in_src, conn->ctx);
}

/* Writes as much as the socket takes. FALSE when the connection broke. */
static gboolean
write_some(VmcIoConn *conn, gboolean *would_block)
{
    *would_block = FALSE;
    while (!conn->closed && conn->peek) {
        gsize len;
        const guint8 *p = conn->peek(conn->out_data, &len);
        if (len == 0)
            return TRUE;
        GError *error = NULL;
        gssize n = g_socket_send(conn->sock, (const gchar *)p, len, NULL, &error);
        if (n < 0) {
            if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
                g_error_free(error);
                *would_block = TRUE;
                return TRUE;
            }
            conn_closed(conn, error);
            g_error_free(error);
            return FALSE;
        }
        conn->bytes_out += (guint64)n;
        conn->consume(conn->out_data, (gsize)n);
    }
    return !conn->closed;
}

static gboolean
on_writable(GSocket *sock, GIOCondition cond, gpointer user_data)
{
    VmcIoConn *conn = user_data;
    gboolean would_block;

    conn->dispatching++;
    gboolean ok = write_some(conn, &would_block);
    conn->dispatching--;
    if (conn->free_pending && conn->dispatching == 0) {
        really_free(conn);
        return G_SOURCE_REMOVE;
    }
    if (!ok || !would_block) {
        if (conn->out_src) {
            g_source_unref(conn->out_src);
            conn->out_src = NULL;
        }
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

VmcIoConn *
vmc_io_conn_new(GSocket *sock, GMainContext *context)
{
    VmcIoConn *conn = g_new0(VmcIoConn, 1);
    conn->sock = g_object_ref(sock);
    conn->ctx = context ? g_main_context_ref(context) : g_main_context_ref_thread_default();
    conn->buf = g_malloc(READ_BUF);
    g_socket_set_blocking(sock, FALSE);
    arm_read(conn);
    return conn;
}

static void
really_free(VmcIoConn *conn)
{
    destroy_source(&conn->in_src);
    destroy_source(&conn->out_src);
    if (!conn->closed)
        g_socket_close(conn->sock, NULL);
    g_object_unref(conn->sock);
    g_main_context_unref(conn->ctx);
    g_free(conn->buf);
    g_free(conn);
}

void
vmc_io_conn_free(VmcIoConn *conn)
{
    if (!conn)
        return;
    conn->read_func = NULL;
    conn->peek = NULL;
    if (conn->dispatching > 0) {
        /* freed from inside one of its callbacks: finish when the dispatch returns */
        vmc_io_conn_close(conn);
        conn->free_pending = TRUE;
        return;
    }
    really_free(conn);
}

void
vmc_io_conn_set_read_func(VmcIoConn *conn, VmcIoReadFunc func, gpointer user_data)
{
    conn->read_func = func;
    conn->read_data = user_data;
}

void
vmc_io_conn_set_output(VmcIoConn *conn, VmcIoPeekFunc peek, VmcIoConsumeFunc consume,
                       gpointer user_data)
{
    conn->peek = peek;
    conn->consume = consume;
    conn->out_data = user_data;
}

void
vmc_io_conn_output_ready(VmcIoConn *conn)
{
    if (conn->out_src || conn->closed || conn->free_pending)
        return;
    conn->out_src = g_socket_create_source(conn->sock, G_IO_OUT | G_IO_HUP | G_IO_ERR, NULL);
    g_source_set_callback(conn->out_src, G_SOURCE_FUNC(on_writable), conn, NULL);
    g_source_attach(conn->out_src, conn->ctx);
}

void
vmc_io_conn_pause_read(VmcIoConn *conn, gboolean paused)
{
    conn->paused = paused;
    if (paused) {
        if (conn->dispatching == 0)
            destroy_source(&conn->in_src);
        else if (conn->in_src) {
            /* inside on_readable: it returns FALSE and the source goes away */
            g_source_unref(conn->in_src);
            conn->in_src = NULL;
        }
    } else {
        arm_read(conn);
    }
}

void
vmc_io_conn_flush_now(VmcIoConn *conn)
{
    gboolean would_block;
    if (!conn->closed)
        write_some(conn, &would_block);
}

gboolean
vmc_io_conn_is_closed(VmcIoConn *conn)
{
    return conn->closed;
}

void
vmc_io_conn_close(VmcIoConn *conn)
{
    if (conn->closed)
        return;
    conn->closed = TRUE;
    if (conn->dispatching == 0) {
        destroy_source(&conn->in_src);
        destroy_source(&conn->out_src);
    } else {
        /* A source may be the one dispatching now: detach without touching its return. */
        if (conn->in_src) {
            g_source_destroy(conn->in_src);
            g_source_unref(conn->in_src);
            conn->in_src = NULL;
        }
        if (conn->out_src) {
            g_source_destroy(conn->out_src);
            g_source_unref(conn->out_src);
            conn->out_src = NULL;
        }
    }
    g_socket_shutdown(conn->sock, TRUE, TRUE, NULL);
    g_socket_close(conn->sock, NULL);
}

guint64
vmc_io_conn_bytes_in(VmcIoConn *conn)
{
    return conn->bytes_in;
}

guint64
vmc_io_conn_bytes_out(VmcIoConn *conn)
{
    return conn->bytes_out;
}

gsize
vmc_io_conn_output_pending(VmcIoConn *conn)
{
    gsize len = 0;
    if (conn->peek)
        conn->peek(conn->out_data, &len);
    return len;
}

/* ---- waits ---- */

static gboolean
wake_up(gpointer user_data)
{
    *(gboolean *)user_data = TRUE;
    return G_SOURCE_REMOVE;
}

gboolean
vmc_io_wait(GMainContext *context, VmcIoCondFunc cond, gpointer user_data, guint timeout_ms)
{
    gboolean expired = FALSE;
    GSource *timer;

    if (cond && cond(user_data))
        return TRUE;
    timer = g_timeout_source_new(timeout_ms);
    g_source_set_callback(timer, wake_up, &expired, NULL);
    g_source_attach(timer, context);
    for (;;) {
        g_main_context_iteration(context, TRUE);
        if (cond && cond(user_data))
            break;
        if (expired)
            break;
    }
    g_source_destroy(timer);
    g_source_unref(timer);
    return cond ? cond(user_data) : TRUE;
}

/* ---- client on a socket ---- */

struct _VmcClientConn {
    VmcClient *client;
    VmcIoConn *io;
    GMainContext *ctx;
    VmcClientEventFunc func;
    gpointer func_data;
    gboolean closed;
};

static void
client_dispatch(VmcClientConn *cc)
{
    VmcClientEvent ev;

    if (!cc->func)
        return;
    while (vmc_client_next_event(cc->client, &ev)) {
        cc->func(cc, &ev, cc->func_data);
        vmc_client_event_clear(&ev);
    }
}

static void
client_on_read(VmcIoConn *conn, const guint8 *buf, gsize len, const GError *error,
               gpointer user_data)
{
    VmcClientConn *cc = user_data;

    if (len > 0) {
        vmc_client_feed(cc->client, buf, len);
    } else {
        if (error)
            g_debug("client: connection error: %s", error->message);
        vmc_client_feed_eof(cc->client);
        cc->closed = TRUE;
    }
    client_dispatch(cc);
}

static const guint8 *
client_peek(gpointer user_data, gsize *len)
{
    VmcClientConn *cc = user_data;
    return vmc_client_output(cc->client, len);
}

static void
client_consume(gpointer user_data, gsize n)
{
    VmcClientConn *cc = user_data;
    vmc_client_output_consume(cc->client, n);
}

static void
client_notify(gpointer user_data)
{
    VmcClientConn *cc = user_data;
    if (cc->io)
        vmc_io_conn_output_ready(cc->io);
}

VmcClientConn *
vmc_client_conn_new_for_socket(GSocket *sock, const VmcClientConfig *cfg, GMainContext *context)
{
    VmcClientConn *cc = g_new0(VmcClientConn, 1);
    cc->ctx = g_main_context_ref(context);
    cc->client = vmc_client_new(cfg);
    cc->io = vmc_io_conn_new(sock, context);
    vmc_io_conn_set_read_func(cc->io, client_on_read, cc);
    vmc_io_conn_set_output(cc->io, client_peek, client_consume, cc);
    vmc_client_set_output_notify(cc->client, client_notify, cc);
    vmc_io_conn_output_ready(cc->io);
    return cc;
}

VmcClientConn *
vmc_client_conn_new(const char *spec, const VmcClientConfig *cfg, GMainContext *context,
                    guint timeout_ms, GError **error)
{
    g_autoptr(GSocket) sock = vmc_io_connect(spec, timeout_ms, error);
    if (!sock)
        return NULL;
    return vmc_client_conn_new_for_socket(sock, cfg, context);
}

void
vmc_client_conn_free(VmcClientConn *cc)
{
    if (!cc)
        return;
    vmc_io_conn_free(cc->io);
    vmc_client_free(cc->client);
    g_main_context_unref(cc->ctx);
    g_free(cc);
}

void
vmc_client_conn_set_event_func(VmcClientConn *cc, VmcClientEventFunc func, gpointer user_data)
{
    cc->func = func;
    cc->func_data = user_data;
    client_dispatch(cc);
}

VmcClient *
vmc_client_conn_get_client(VmcClientConn *cc)
{
    return cc->client;
}

VmcIoConn *
vmc_client_conn_get_io(VmcClientConn *cc)
{
    return cc->io;
}

GMainContext *
vmc_client_conn_get_context(VmcClientConn *cc)
{
    return cc->ctx;
}

gboolean
vmc_client_conn_is_closed(VmcClientConn *cc)
{
    return cc->closed;
}

static gboolean
link_done(gpointer user_data)
{
    VmcClientConn *cc = user_data;
    VmcClientState s = vmc_client_get_state(cc->client);
    return cc->closed || s == VMC_CLIENT_STATE_CONNECTED || s == VMC_CLIENT_STATE_FAILED;
}

gboolean
vmc_client_conn_wait_linked(VmcClientConn *cc, guint timeout_ms, GError **error)
{
    if (!vmc_io_wait(cc->ctx, link_done, cc, timeout_ms)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "no link reply from the server within %u ms", timeout_ms);
        return FALSE;
    }
    VmcClientState s = vmc_client_get_state(cc->client);
    if (s == VMC_CLIENT_STATE_CONNECTED)
        return TRUE;
    const char *why = vmc_client_get_last_error(cc->client);
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED, "%s",
                why ? why : "the server closed the connection during the link");
    return FALSE;
}

/* ---- agent on the port ---- */

struct _VmcAgentConn {
    char *path;
    gboolean listen_mode;
    GSocket *listener;
    GSource *accept_src;
    GMainContext *ctx;
    VmcAgentPeer *peer;
    VmcIoConn *io;
    VmcAgentEventFunc func;
    gpointer func_data;
    VmcAgentStateFunc state_func;
    gpointer state_data;
    guint opens;
};

static void
agent_dispatch(VmcAgentConn *ac)
{
    VmcAgentPeerEvent ev;

    if (!ac->func)
        return;
    while (vmc_agent_peer_next_event(ac->peer, &ev)) {
        ac->func(ac, &ev, ac->func_data);
        vmc_agent_peer_event_clear(&ev);
    }
}

static void
agent_discard_output(VmcAgentConn *ac)
{
    gsize len;
    vmc_agent_peer_output(ac->peer, &len);
    vmc_agent_peer_output_consume(ac->peer, len);
}

static void
agent_on_read(VmcIoConn *conn, const guint8 *buf, gsize len, const GError *error,
              gpointer user_data)
{
    VmcAgentConn *ac = user_data;

    if (len > 0) {
        vmc_agent_peer_feed(ac->peer, buf, len);
        agent_dispatch(ac);
        return;
    }
    if (error)
        g_debug("agent: port error: %s", error->message);
    agent_dispatch(ac);
    vmc_io_conn_free(ac->io);
    ac->io = NULL;
    agent_discard_output(ac);
    if (ac->state_func)
        ac->state_func(ac, FALSE, ac->state_data);
}

static const guint8 *
agent_peek(gpointer user_data, gsize *len)
{
    VmcAgentConn *ac = user_data;
    return vmc_agent_peer_output(ac->peer, len);
}

static void
agent_consume(gpointer user_data, gsize n)
{
    VmcAgentConn *ac = user_data;
    vmc_agent_peer_output_consume(ac->peer, n);
}

static void
agent_notify(gpointer user_data)
{
    VmcAgentConn *ac = user_data;
    if (ac->io)
        vmc_io_conn_output_ready(ac->io);
}

static void
agent_open(VmcAgentConn *ac, GSocket *sock)
{
    if (ac->io) {
        vmc_io_conn_free(ac->io);
        ac->io = NULL;
        if (ac->state_func)
            ac->state_func(ac, FALSE, ac->state_data);
    }
    vmc_agent_peer_reset(ac->peer);
    agent_discard_output(ac);
    ac->io = vmc_io_conn_new(sock, ac->ctx);
    vmc_io_conn_set_read_func(ac->io, agent_on_read, ac);
    vmc_io_conn_set_output(ac->io, agent_peek, agent_consume, ac);
    ac->opens++;
    if (ac->state_func)
        ac->state_func(ac, TRUE, ac->state_data);
    vmc_io_conn_output_ready(ac->io);
}

static gboolean
on_accept(GSocket *listener, GIOCondition cond, gpointer user_data)
{
    VmcAgentConn *ac = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocket) s = g_socket_accept(listener, NULL, &error);

    if (s) {
        g_socket_set_blocking(s, FALSE);
        agent_open(ac, s);
    } else if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
        g_debug("agent: accept: %s", error->message);
    }
    return G_SOURCE_CONTINUE;
}

VmcAgentConn *
vmc_agent_conn_new(const char *spec, GMainContext *context, guint timeout_ms, GError **error)
{
    gboolean listen_mode;
    const char *path;

    if (g_str_has_prefix(spec, "unix:")) {
        listen_mode = FALSE;
        path = spec + 5;
    } else if (g_str_has_prefix(spec, "connect:")) {
        listen_mode = TRUE;
        path = spec + 8;
    } else if (g_str_has_prefix(spec, "listen:")) {
        listen_mode = TRUE;
        path = spec + 7;
    } else {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "guest port \"%s\": expected unix:PATH (the server listens) or "
                    "connect:PATH (the server connects)", spec);
        return NULL;
    }
    if (!*path) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "guest port \"%s\": empty path", spec);
        return NULL;
    }
    VmcAgentConn *ac = g_new0(VmcAgentConn, 1);
    ac->path = g_strdup(path);
    ac->listen_mode = listen_mode;
    ac->ctx = g_main_context_ref(context);
    ac->peer = vmc_agent_peer_new();
    vmc_agent_peer_set_output_notify(ac->peer, agent_notify, ac);
    if (listen_mode) {
        g_autofree char *lspec = g_strdup_printf("unix:%s", path);
        ac->listener = vmc_io_listen(lspec, error);
        if (!ac->listener) {
            vmc_agent_conn_free(ac);
            return NULL;
        }
        ac->accept_src = g_socket_create_source(ac->listener, G_IO_IN, NULL);
        g_source_set_callback(ac->accept_src, G_SOURCE_FUNC(on_accept), ac, NULL);
        g_source_attach(ac->accept_src, context);
        return ac;
    }
    if (!vmc_agent_conn_reconnect(ac, timeout_ms, error)) {
        vmc_agent_conn_free(ac);
        return NULL;
    }
    return ac;
}

gboolean
vmc_agent_conn_reconnect(VmcAgentConn *ac, guint timeout_ms, GError **error)
{
    g_autofree char *spec = g_strdup_printf("unix:%s", ac->path);
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    if (ac->listen_mode)
        return TRUE;
    for (;;) {
        GError *local = NULL;
        g_autoptr(GSocket) s = vmc_io_connect(spec, timeout_ms, &local);
        if (s) {
            agent_open(ac, s);
            return TRUE;
        }
        gboolean retry = g_error_matches(local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
                         g_error_matches(local, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
        if (!retry || g_get_monotonic_time() >= deadline) {
            g_propagate_error(error, local);
            return FALSE;
        }
        g_error_free(local);
        /* the server is not listening yet: poll again shortly */
        vmc_io_wait(ac->ctx, NULL, NULL, 20);
    }
}

void
vmc_agent_conn_free(VmcAgentConn *ac)
{
    if (!ac)
        return;
    vmc_io_conn_free(ac->io);
    destroy_source(&ac->accept_src);
    if (ac->listener) {
        g_socket_close(ac->listener, NULL);
        g_object_unref(ac->listener);
        unlink(ac->path);
    }
    vmc_agent_peer_free(ac->peer);
    g_main_context_unref(ac->ctx);
    g_free(ac->path);
    g_free(ac);
}

void
vmc_agent_conn_set_event_func(VmcAgentConn *ac, VmcAgentEventFunc func, gpointer user_data)
{
    ac->func = func;
    ac->func_data = user_data;
    agent_dispatch(ac);
}

void
vmc_agent_conn_set_state_func(VmcAgentConn *ac, VmcAgentStateFunc func, gpointer user_data)
{
    ac->state_func = func;
    ac->state_data = user_data;
}

VmcAgentPeer *
vmc_agent_conn_get_peer(VmcAgentConn *ac)
{
    return ac->peer;
}

VmcIoConn *
vmc_agent_conn_get_io(VmcAgentConn *ac)
{
    return ac->io;
}

gboolean
vmc_agent_conn_is_open(VmcAgentConn *ac)
{
    return ac->io != NULL && !vmc_io_conn_is_closed(ac->io);
}

guint
vmc_agent_conn_opens(VmcAgentConn *ac)
{
    return ac->opens;
}

void
vmc_agent_conn_drop(VmcAgentConn *ac)
{
    if (!ac->io)
        return;
    vmc_io_conn_free(ac->io);
    ac->io = NULL;
    agent_discard_output(ac);
    if (ac->state_func)
        ac->state_func(ac, FALSE, ac->state_data);
}
