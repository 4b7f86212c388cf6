/* vmc-runtime.c — VmcServer: the native runtime on a caller-supplied GMainContext.
 *
 * Wires sockets to the sans-I/O parts: listeners accept client connections, each with a
 * VmcSession (link, ticket, main channel); the guest port (vmc-guest.h) feeds the
 * VmcMux. Every handler (client readable/writable, guest event, accept, timer) ends in
 * service(), which writes what is queued:
 *   - guest: vmc_mux_guest_output_vec() -> one writev() of up to 64 chunks, repeated
 *     until the port would block; write interest only while output remains;
 *   - clients marked by the mux's notify callback (or by their own input): the
 *     session's framed output -> one sendmsg() per <= 128 KiB, until EAGAIN;
 *   - the deadline timer: min(mux, sessions).
 * Input is read in 256 KiB gulps (many SPICE messages or chunks per read()).
 * No threads on the protocol path, no blocking calls, no SIGPIPE (MSG_NOSIGNAL).
 */
#define _GNU_SOURCE
#include "server/vmc-runtime.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/vmc-guest.h"
#include "server/vmc-listener.h"
#include "server/vmc-record.h"
#include "server/vmc-session.h"
#include "server/vmc-ticket.h"

#define READ_BUF_SIZE (256u * 1024u)
#define READS_PER_DISPATCH 4
#define GUEST_VEC_MAX 64
#define MAX_CONNECTIONS 1024 /* handshaking ones included: a bound on fds */
#define ACCEPT_PAUSE_MS 200  /* after EMFILE and friends */
#define DEFAULT_KEY_POOL 4
#define SERVICE_ROUNDS 8
#define KEY_WARM_MS 20 /* one key warmed (~0.4 ms of CPU) per tick until all are */

typedef struct {
    VmcServer *srv;
    int fd;
    VmcWatch *watch;
    gboolean is_unix; /* an AF_UNIX listening socket whose file we remove */
    char *path;
    char *address;
} Listener;

typedef struct {
    VmcServer *srv;
    int fd;
    VmcWatch *watch;
    VmcSession *session;
    char *peer;
    guint32 client_id; /* once admitted */
    gboolean announced;
    gboolean dirty; /* may have output to write */
    gboolean dead;  /* closed; reaped at the end of service() */
} Conn;

struct _VmcServer {
    GMainContext *context;
    gboolean started;
    gboolean in_service;

    /* configuration */
    GPtrArray *listen_specs; /* char* */
    char *guest_spec;
    char *password;
    char *name;
    VmcMuxConfig mux_cfg;
    VmcSessionConfig sess_cfg;
    guint max_clients;
    guint key_pool_size;
    char *record_path;

    VmcServerEventFunc event_func;
    gpointer event_data;

    /* run time */
    VmcMux *mux;
    VmcTicketPool *keys;
    VmcRecorder *recorder;
    GPtrArray *listeners; /* Listener* */
    GPtrArray *conns;     /* Conn* */
    GHashTable *by_client; /* client id -> Conn* */
    VmcGuestPort *guest;
    gboolean guest_dirty;
    char *guest_reason; /* why we dropped the agent, for the next CLOSED */
    guint8 *rbuf;
    GSource *timer;
    GSource *accept_pause;
    GSource *key_warm; /* warms pool keys on this thread in idle time */
};

static void service(VmcServer *srv);
static void conn_close(Conn *c, const char *reason);
static void conn_check(Conn *c);
static void kick_key_warm(VmcServer *srv);

/* ------------------------------------------------------------------------------------
 * helpers
 * ------------------------------------------------------------------------------------ */

static void
emit(VmcServer *srv, VmcServerEvent ev, guint32 client_id, const char *detail)
{
    if (srv->recorder != NULL) {
        static const VmcRecordEvent map[] = {
            [VMC_SERVER_EVENT_CLIENT_CONNECTED] = VMC_RECORD_CLIENT_CONNECTED,
            [VMC_SERVER_EVENT_CLIENT_DISCONNECTED] = VMC_RECORD_CLIENT_DISCONNECTED,
            [VMC_SERVER_EVENT_AGENT_CONNECTED] = VMC_RECORD_AGENT_CONNECTED,
            [VMC_SERVER_EVENT_AGENT_DISCONNECTED] = VMC_RECORD_AGENT_DISCONNECTED,
        };
        if (ev != VMC_SERVER_EVENT_CLIENT_REFUSED)
            vmc_recorder_event(srv->recorder, map[ev], client_id, detail);
    }
    if (srv->event_func != NULL)
        srv->event_func(srv, ev, client_id, detail, srv->event_data);
}

static gint64
now_us(void)
{
    return g_get_monotonic_time();
}

/* ------------------------------------------------------------------------------------
 * configuration
 * ------------------------------------------------------------------------------------ */

/**
 * vmc_server_new:
 * @context: (nullable): the context to run on; NULL: the thread-default one
 *
 * Returns: (transfer full): a server, not started
 */
VmcServer *
vmc_server_new(GMainContext *context)
{
    VmcServer *srv = g_new0(VmcServer, 1);

    srv->context = context ? g_main_context_ref(context) : g_main_context_ref_thread_default();
    srv->listen_specs = g_ptr_array_new_with_free_func(g_free);
    vmc_mux_config_init(&srv->mux_cfg);
    vmc_session_config_init(&srv->sess_cfg);
    srv->max_clients = 1;
    srv->key_pool_size = DEFAULT_KEY_POOL;
    srv->listeners = g_ptr_array_new();
    srv->conns = g_ptr_array_new();
    srv->by_client = g_hash_table_new(g_direct_hash, g_direct_equal);
    return srv;
}

static void
listener_free(Listener *l)
{
    vmc_watch_free(l->watch);
    if (l->fd >= 0)
        close(l->fd);
    if (l->is_unix && l->path != NULL)
        unlink(l->path);
    g_free(l->path);
    g_free(l->address);
    g_free(l);
}

static void
conn_destroy(Conn *c)
{
    vmc_watch_free(c->watch);
    vmc_session_free(c->session);
    if (c->fd >= 0)
        close(c->fd);
    g_free(c->peer);
    g_free(c);
}

void
vmc_server_free(VmcServer *server)
{
    VmcServer *srv = server;

    if (srv == NULL)
        return;
    for (guint i = 0; i < srv->conns->len; i++) {
        Conn *c = g_ptr_array_index(srv->conns, i);
        if (!c->dead)
            conn_close(c, "server shutting down");
    }
    /* tell the agent that the clients left, if it can take it right now */
    if (srv->guest != NULL && srv->mux != NULL && vmc_guest_port_is_open(srv->guest)) {
        GOutputVector v[GUEST_VEC_MAX];
        guint n = vmc_mux_guest_output_vec(srv->mux, v, GUEST_VEC_MAX);
        if (n > 0) {
            gssize w = vmc_guest_port_writev(srv->guest, v, n);
            if (w > 0)
                vmc_mux_guest_output_advance(srv->mux, (gsize)w);
        }
    }
    for (guint i = 0; i < srv->conns->len; i++)
        conn_destroy(g_ptr_array_index(srv->conns, i));
    g_ptr_array_unref(srv->conns);
    g_hash_table_unref(srv->by_client);
    for (guint i = 0; i < srv->listeners->len; i++)
        listener_free(g_ptr_array_index(srv->listeners, i));
    g_ptr_array_unref(srv->listeners);
    vmc_guest_port_free(srv->guest);
    if (srv->timer != NULL) {
        g_source_destroy(srv->timer);
        g_source_unref(srv->timer);
    }
    if (srv->accept_pause != NULL) {
        g_source_destroy(srv->accept_pause);
        g_source_unref(srv->accept_pause);
    }
    if (srv->key_warm != NULL) {
        g_source_destroy(srv->key_warm);
        g_source_unref(srv->key_warm);
    }
    vmc_ticket_pool_free(srv->keys);
    vmc_mux_free(srv->mux);
    vmc_recorder_free(srv->recorder);
    g_ptr_array_unref(srv->listen_specs);
    g_free(srv->guest_spec);
    if (srv->password != NULL)
        memset(srv->password, 0, strlen(srv->password));
    g_free(srv->password);
    g_free(srv->name);
    g_free(srv->record_path);
    g_free(srv->guest_reason);
    g_free(srv->rbuf);
    g_main_context_unref(srv->context);
    g_free(srv);
}

gboolean
vmc_server_add_listen(VmcServer *server, const char *address, GError **error)
{
    g_return_val_if_fail(server != NULL, FALSE);
    g_return_val_if_fail(address != NULL, FALSE);
    g_return_val_if_fail(!server->started, FALSE);

    if (g_str_has_prefix(address, "unix:") ? address[5] == '\0'
                                           : strrchr(address, ':') == NULL) {
        g_set_error(error, VMC_ERROR, VMC_ERROR_INVALID_ARGUMENT,
                    "bad listen address '%s' (use HOST:PORT or unix:PATH)", address);
        return FALSE;
    }
    g_ptr_array_add(server->listen_specs, g_strdup(address));
    return TRUE;
}

gboolean
vmc_server_set_guest(VmcServer *server, const char *spec, GError **error)
{
    VmcGuestPort *probe;

    g_return_val_if_fail(server != NULL, FALSE);
    g_return_val_if_fail(spec != NULL, FALSE);
    g_return_val_if_fail(!server->started, FALSE);

    probe = vmc_guest_port_new(spec, server->context, error); /* validates the spec */
    if (probe == NULL)
        return FALSE;
    vmc_guest_port_free(probe);
    g_free(server->guest_spec);
    server->guest_spec = g_strdup(spec);
    return TRUE;
}

gboolean
vmc_server_set_password(VmcServer *server, const char *password, guint lifetime_s,
                        GError **error)
{
    g_return_val_if_fail(server != NULL, FALSE);

    if (password != NULL && strlen(password) > VMC_TICKET_MAX_PASSWORD) {
        g_set_error(error, VMC_ERROR, VMC_ERROR_INVALID_ARGUMENT,
                    "the password is longer than %u bytes (a SPICE ticket limit)",
                    VMC_TICKET_MAX_PASSWORD);
        return FALSE;
    }
    if (server->password != NULL)
        memset(server->password, 0, strlen(server->password));
    g_free(server->password);
    server->password = g_strdup(password);
    server->sess_cfg.password = server->password;
    server->sess_cfg.password_expiry_us =
        (password != NULL && lifetime_s > 0) ? now_us() + (gint64)lifetime_s * G_USEC_PER_SEC
                                             : 0;
    return TRUE;
}

void
vmc_server_set_ticketing(VmcServer *server, gboolean enabled)
{
    g_return_if_fail(server != NULL);
    server->sess_cfg.ticketing = !!enabled;
}

void
vmc_server_set_agent_window(VmcServer *server, guint32 tokens)
{
    VmcMuxConfig def;

    g_return_if_fail(server != NULL);
    g_return_if_fail(!server->started);
    vmc_mux_config_init(&def);
    server->mux_cfg.agent_window = tokens ? tokens : def.agent_window;
}

void
vmc_server_set_copy_paste(VmcServer *server, gboolean enabled)
{
    g_return_if_fail(server != NULL);
    server->mux_cfg.copy_paste = !!enabled;
    if (server->mux != NULL)
        vmc_mux_set_copy_paste(server->mux, enabled);
}

void
vmc_server_set_file_xfer(VmcServer *server, gboolean enabled)
{
    g_return_if_fail(server != NULL);
    server->mux_cfg.file_xfer = !!enabled;
    if (server->mux != NULL)
        vmc_mux_set_file_xfer(server->mux, enabled);
}

void
vmc_server_set_max_clients(VmcServer *server, guint max_clients)
{
    g_return_if_fail(server != NULL);
    g_return_if_fail(!server->started);
    server->max_clients = MAX(max_clients, 1u);
    server->mux_cfg.max_clients = server->max_clients;
}

void
vmc_server_set_name(VmcServer *server, const char *name)
{
    g_return_if_fail(server != NULL);
    g_free(server->name);
    server->name = g_strdup(name);
    server->sess_cfg.name = server->name;
}

void
vmc_server_set_uuid(VmcServer *server, const guint8 *uuid16)
{
    g_return_if_fail(server != NULL);
    server->sess_cfg.have_uuid = uuid16 != NULL;
    if (uuid16 != NULL)
        memcpy(server->sess_cfg.uuid, uuid16, 16);
}

gboolean
vmc_server_set_record(VmcServer *server, const char *path, GError **error)
{
    g_return_val_if_fail(server != NULL, FALSE);
    g_return_val_if_fail(!server->started, FALSE);
    g_free(server->record_path);
    server->record_path = g_strdup(path);
    return TRUE;
}

void
vmc_server_set_event_func(VmcServer *server, VmcServerEventFunc func, gpointer user_data)
{
    g_return_if_fail(server != NULL);
    server->event_func = func;
    server->event_data = user_data;
}

void
vmc_server_set_key_pool_size(VmcServer *server, guint keys)
{
    g_return_if_fail(server != NULL);
    g_return_if_fail(!server->started);
    server->key_pool_size = MAX(keys, 1u);
}

gboolean
vmc_server_fill_key_pool(VmcServer *server, GError **error)
{
    g_return_val_if_fail(server != NULL && server->keys != NULL, FALSE);
    if (!vmc_ticket_pool_fill(server->keys, error))
        return FALSE;
    while (vmc_ticket_pool_warm_one(server->keys))
        ;
    return TRUE;
}

/* ------------------------------------------------------------------------------------
 * ticket keys: made by the pool's worker threads, warmed here (the thread that
 * decrypts tickets) at low priority, so a link finds a ready, warm key; a link that
 * finds none waits for the workers (on_keys_ready), never for a key made here
 * ------------------------------------------------------------------------------------ */

static gboolean
on_key_warm(gpointer user_data)
{
    VmcServer *srv = user_data;

    vmc_ticket_pool_warm_one(srv->keys);
    if (!vmc_ticket_pool_is_warm(srv->keys))
        return G_SOURCE_CONTINUE; /* the worker is still making keys */
    g_source_unref(srv->key_warm);
    srv->key_warm = NULL;
    return G_SOURCE_REMOVE;
}

/* The pool's workers made keys while links waited: those links reply now, oldest
 * connection first, until the pool is dry again. */
static void
on_keys_ready(gpointer user_data)
{
    VmcServer *srv = user_data;

    for (guint i = 0; i < srv->conns->len; i++) {
        Conn *c = g_ptr_array_index(srv->conns, i);
        if (c->dead || !vmc_session_waits_for_key(c->session))
            continue;
        c->dirty = TRUE;
        if (!vmc_session_retry_key(c->session))
            break;
        conn_check(c);
    }
    service(srv);
}

static void
kick_key_warm(VmcServer *srv)
{
    if (srv->key_warm != NULL || srv->keys == NULL)
        return;
    srv->key_warm = g_timeout_source_new(KEY_WARM_MS);
    g_source_set_priority(srv->key_warm, G_PRIORITY_LOW);
    g_source_set_static_name(srv->key_warm, "vmc-key-warm");
    g_source_set_callback(srv->key_warm, on_key_warm, srv, NULL);
    g_source_attach(srv->key_warm, srv->context);
}

void
vmc_server_set_ping(VmcServer *server, gint64 interval_us, gint64 timeout_us)
{
    g_return_if_fail(server != NULL);
    server->sess_cfg.ping_interval_us = interval_us;
    server->sess_cfg.ping_timeout_us = timeout_us;
}

VmcMux *
vmc_server_get_mux(VmcServer *server)
{
    g_return_val_if_fail(server != NULL, NULL);
    return server->mux;
}

/* ------------------------------------------------------------------------------------
 * deadlines
 * ------------------------------------------------------------------------------------ */

static void
update_timer(VmcServer *srv)
{
    gint64 next = vmc_mux_next_deadline(srv->mux);
    gint64 cur;

    for (guint i = 0; i < srv->conns->len; i++) {
        Conn *c = g_ptr_array_index(srv->conns, i);
        gint64 t;
        if (c->dead)
            continue;
        t = vmc_session_next_deadline(c->session);
        if (t >= 0 && (next < 0 || t < next))
            next = t;
    }
    /* Only ever move the timer earlier: every change wakes the context up (a syscall),
     * and keepalive deadlines move with each byte received. A timer that fires early
     * recomputes and re-arms. */
    cur = g_source_get_ready_time(srv->timer);
    if (next >= 0 && (cur < 0 || next < cur))
        g_source_set_ready_time(srv->timer, next);
}

static gboolean
timer_dispatch(GSource *source, GSourceFunc cb, gpointer user_data)
{
    VmcServer *srv = user_data;
    gint64 now = now_us();

    g_source_set_ready_time(source, -1);
    vmc_mux_tick(srv->mux, now);
    for (guint i = 0; i < srv->conns->len; i++) {
        Conn *c = g_ptr_array_index(srv->conns, i);
        if (!c->dead) {
            vmc_session_tick(c->session, now);
            c->dirty = TRUE;
        }
    }
    service(srv);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs timer_funcs = {
    .dispatch = timer_dispatch,
};

/* ------------------------------------------------------------------------------------
 * clients
 * ------------------------------------------------------------------------------------ */

static void
conn_update_interest(Conn *c)
{
    vmc_watch_set_events(c->watch,
                         G_IO_IN | (vmc_session_wants_write(c->session) ? G_IO_OUT : 0));
}

static void
conn_close(Conn *c, const char *reason)
{
    VmcServer *srv = c->srv;
    g_autofree char *detail = NULL;
    gboolean silent;

    if (c->dead)
        return;
    c->dead = TRUE;
    /* a connection that closed before any link error (a port probe, a health check)
     * is not worth an event */
    silent = !c->announced && vmc_session_get_state(c->session) == VMC_SESSION_LINK &&
             vmc_session_get_error(c->session) == NULL;
    if (c->client_id != 0)
        g_hash_table_remove(srv->by_client, GUINT_TO_POINTER(c->client_id));
    vmc_watch_free(g_steal_pointer(&c->watch));
    close(c->fd);
    c->fd = -1;
    detail = g_strdup_printf("%s: %s", c->peer, reason);
    g_debug("client %u %s closed: %s", c->client_id, c->peer, reason);
    /* the mux tells the agent (CLIENT_DISCONNECTED) when the last client leaves */
    vmc_session_free(g_steal_pointer(&c->session));
    srv->guest_dirty = TRUE;
    if (c->announced)
        emit(srv, VMC_SERVER_EVENT_CLIENT_DISCONNECTED, c->client_id, detail);
    else if (!silent)
        emit(srv, VMC_SERVER_EVENT_CLIENT_REFUSED, 0, detail);
}

static const char *
session_reason(Conn *c, const char *fallback)
{
    const GError *e = vmc_session_get_error(c->session);
    return e != NULL ? e->message : fallback;
}

/* After input or a tick: notices admission and the end of the session. */
static void
conn_check(Conn *c)
{
    VmcServer *srv = c->srv;

    if (c->dead)
        return;
    if (!c->announced && vmc_session_get_state(c->session) == VMC_SESSION_ACTIVE) {
        c->announced = TRUE;
        c->client_id = vmc_session_get_client_id(c->session);
        g_hash_table_insert(srv->by_client, GUINT_TO_POINTER(c->client_id), c);
        emit(srv, VMC_SERVER_EVENT_CLIENT_CONNECTED, c->client_id, c->peer);
    }
    if (vmc_session_is_done(c->session))
        conn_close(c, session_reason(c, "session ended"));
}

/* Writes the session's output until it is empty or the socket would block. */
static void
conn_flush(Conn *c)
{
    GOutputVector v[4];
    guint n;

    c->dirty = FALSE;
    if (c->dead)
        return;
    while ((n = vmc_session_output_vec(c->session, v, G_N_ELEMENTS(v))) > 0) {
        gsize total = 0;
        gssize w;

        for (guint i = 0; i < n; i++)
            total += v[i].size;
        w = vmc_fd_writev(c->fd, TRUE, v, n);
        if (w < 0) {
            g_autofree char *why = g_strdup_printf("write failed: %s", g_strerror(errno));
            conn_close(c, why);
            return;
        }
        vmc_session_output_advance(c->session, (gsize)w);
        if ((gsize)w < total)
            break; /* the socket is full: wait for POLLOUT rather than try again */
    }
    conn_check(c);
    if (!c->dead)
        conn_update_interest(c);
}

static void
on_conn_ready(gpointer user_data, GIOCondition revents)
{
    Conn *c = user_data;
    VmcServer *srv = c->srv;

    if (revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
        gint64 now = now_us();

        vmc_mux_tick(srv->mux, now);
        vmc_session_tick(c->session, now);
        for (int i = 0; i < READS_PER_DISPATCH && !c->dead; i++) {
            gssize n = vmc_fd_read(c->fd, srv->rbuf, READ_BUF_SIZE);
            if (n < 0) {
                g_autofree char *why =
                    errno == 0 ? g_strdup("the client closed the connection")
                               : g_strdup_printf("read failed: %s", g_strerror(errno));
                /* a reply still queued (a link error) cannot be delivered any more */
                conn_close(c, vmc_session_get_error(c->session) ? session_reason(c, why) : why);
                break;
            }
            if (n == 0)
                break;
            if (!vmc_session_feed(c->session, srv->rbuf, (gsize)n)) {
                conn_check(c);
                break; /* CLOSING: flush the last reply, then close */
            }
            conn_check(c);
            if ((gsize)n < READ_BUF_SIZE)
                break;
        }
    }
    if (!c->dead)
        c->dirty = TRUE;
    service(srv);
}

static Conn *
conn_new(VmcServer *srv, int fd, gboolean skip_auth)
{
    Conn *c = g_new0(Conn, 1);
    gboolean is_unix = vmc_socket_is_unix(fd);
    int one = 1;

    c->srv = srv;
    c->fd = fd;
    c->peer = vmc_socket_describe(fd, TRUE);
    if (is_unix && g_str_equal(c->peer, "unix:")) {
        g_free(c->peer);
        c->peer = g_strdup_printf("unix:fd%d", fd);
    }
    if (!is_unix) {
        int idle = 600;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    }
    c->session = vmc_session_new(&srv->sess_cfg, !is_unix, now_us());
    if (skip_auth)
        vmc_session_set_skip_auth(c->session, TRUE);
    c->watch = vmc_watch_new(srv->context, fd, G_IO_IN, on_conn_ready, c);
    g_ptr_array_add(srv->conns, c);
    kick_key_warm(srv); /* this link takes a key: warm its replacement later */
    g_debug("connection from %s", c->peer);
    return c;
}

static guint
count_clients(VmcServer *srv)
{
    guint n = 0;

    for (guint i = 0; i < srv->conns->len; i++) {
        Conn *c = g_ptr_array_index(srv->conns, i);
        if (!c->dead && c->announced)
            n++;
    }
    return n;
}

guint
vmc_server_get_n_clients(VmcServer *server)
{
    g_return_val_if_fail(server != NULL, 0);
    return count_clients(server);
}

/* The session's admission hook (called inside that session's feed). */
static gboolean
admit(gpointer user_data, VmcSession *session, char **reason)
{
    VmcServer *srv = user_data;

    if (srv->max_clients == 1) {
        /* as libspice-server: the newly authenticated client replaces the old one */
        for (guint i = 0; i < srv->conns->len; i++) {
            Conn *c = g_ptr_array_index(srv->conns, i);
            if (!c->dead && c->announced && c->session != session)
                conn_close(c, "replaced by a new client");
        }
        return TRUE;
    }
    if (count_clients(srv) >= srv->max_clients) {
        *reason = g_strdup_printf("vmcmux: server full, %u clients connected (--max-clients %u)",
                                  srv->max_clients, srv->max_clients);
        return FALSE;
    }
    return TRUE;
}

static void
on_tokens(gpointer user_data, VmcSession *session, gboolean from_client, const char *what,
          guint32 tokens)
{
    VmcServer *srv = user_data;

    if (srv->recorder != NULL)
        vmc_recorder_tokens(srv->recorder,
                            from_client ? VMC_MUX_DIR_CLIENT_AGENT : VMC_MUX_DIR_AGENT_CLIENT,
                            vmc_session_get_client_id(session), what, tokens);
}

static void
resume_accepting(VmcServer *srv)
{
    for (guint i = 0; i < srv->listeners->len; i++) {
        Listener *l = g_ptr_array_index(srv->listeners, i);
        vmc_watch_set_paused(l->watch, FALSE);
    }
}

static gboolean
on_accept_pause_done(gpointer user_data)
{
    VmcServer *srv = user_data;

    g_source_unref(srv->accept_pause);
    srv->accept_pause = NULL;
    resume_accepting(srv);
    return G_SOURCE_REMOVE;
}

static void
pause_accepting(VmcServer *srv)
{
    if (srv->accept_pause != NULL)
        return;
    for (guint i = 0; i < srv->listeners->len; i++) {
        Listener *l = g_ptr_array_index(srv->listeners, i);
        vmc_watch_set_paused(l->watch, TRUE);
    }
    srv->accept_pause = g_timeout_source_new(ACCEPT_PAUSE_MS);
    g_source_set_callback(srv->accept_pause, on_accept_pause_done, srv, NULL);
    g_source_attach(srv->accept_pause, srv->context);
}

static void
on_listener_ready(gpointer user_data, GIOCondition revents)
{
    Listener *l = user_data;
    VmcServer *srv = l->srv;

    for (int i = 0; i < 64; i++) {
        int fd = vmc_accept(l->fd);
        if (fd < 0) {
            if (errno != EAGAIN) {
                g_debug("accept on %s: %s", l->address, g_strerror(errno));
                pause_accepting(srv);
            }
            break;
        }
        if (srv->conns->len >= MAX_CONNECTIONS) {
            g_debug("too many connections (%u): closing a new one", srv->conns->len);
            close(fd);
            continue;
        }
        conn_new(srv, fd, FALSE);
    }
    service(srv);
}

gboolean
vmc_server_add_client_fd(VmcServer *server, int fd, gboolean skip_auth, GError **error)
{
    g_return_val_if_fail(server != NULL, FALSE);
    g_return_val_if_fail(server->started, FALSE);

    if (fd < 0 || !vmc_fd_is_socket(fd)) {
        if (fd >= 0)
            close(fd);
        g_set_error(error, VMC_ERROR, VMC_ERROR_INVALID_ARGUMENT,
                    "fd %d is not a connected socket", fd);
        return FALSE;
    }
    if (!vmc_fd_set_nonblocking(fd, error)) {
        close(fd);
        return FALSE;
    }
    conn_new(server, fd, skip_auth);
    service(server);
    return TRUE;
}

/* ------------------------------------------------------------------------------------
 * guest
 * ------------------------------------------------------------------------------------ */

static void
guest_read(VmcServer *srv)
{
    GError *error = NULL;

    vmc_mux_tick(srv->mux, now_us());
    for (int i = 0; i < READS_PER_DISPATCH && vmc_mux_guest_wants_input(srv->mux); i++) {
        gssize n = vmc_guest_port_read(srv->guest, srv->rbuf, READ_BUF_SIZE);
        if (n <= 0)
            break; /* 0: drained; -1: closed, a CLOSED event follows */
        if (!vmc_mux_feed_guest(srv->mux, srv->rbuf, (gsize)n, &error)) {
            g_debug("guest protocol error: %s", error->message);
            g_free(srv->guest_reason);
            srv->guest_reason = g_strdup_printf("protocol error: %s", error->message);
            g_clear_error(&error);
            vmc_guest_port_drop(srv->guest); /* CLOSED follows from the main loop */
            break;
        }
        if ((gsize)n < READ_BUF_SIZE)
            break;
    }
}

static void
on_guest_event(VmcGuestPort *port, VmcGuestEvent event, gpointer user_data)
{
    VmcServer *srv = user_data;

    switch (event) {
    case VMC_GUEST_EVENT_OPENED:
        vmc_mux_tick(srv->mux, now_us());
        vmc_mux_guest_connected(srv->mux);
        emit(srv, VMC_SERVER_EVENT_AGENT_CONNECTED, 0, vmc_guest_port_describe(port));
        break;
    case VMC_GUEST_EVENT_CLOSED: {
        g_autofree char *detail = g_strdup_printf(
            "%s: %s", vmc_guest_port_describe(port),
            srv->guest_reason ? srv->guest_reason : "the agent side closed the port");
        g_clear_pointer(&srv->guest_reason, g_free);
        vmc_mux_tick(srv->mux, now_us());
        if (vmc_mux_guest_is_connected(srv->mux))
            vmc_mux_guest_disconnected(srv->mux);
        emit(srv, VMC_SERVER_EVENT_AGENT_DISCONNECTED, 0, detail);
        break;
    }
    case VMC_GUEST_EVENT_READABLE:
        guest_read(srv);
        break;
    case VMC_GUEST_EVENT_WRITABLE:
        break;
    }
    srv->guest_dirty = TRUE;
    service(srv);
}

/* Writes queued guest output until it is empty or the port would block. */
static void
guest_flush(VmcServer *srv)
{
    GOutputVector v[GUEST_VEC_MAX];
    gboolean open = srv->guest != NULL && vmc_guest_port_is_open(srv->guest);

    srv->guest_dirty = FALSE;
    if (srv->guest == NULL)
        return;
    while (open && vmc_mux_guest_output_size(srv->mux) > 0) {
        guint n = vmc_mux_guest_output_vec(srv->mux, v, GUEST_VEC_MAX);
        gsize total = 0;
        gssize w;

        if (n == 0)
            break;
        for (guint i = 0; i < n; i++)
            total += v[i].size;
        w = vmc_guest_port_writev(srv->guest, v, n);
        if (w < 0) {
            open = FALSE; /* CLOSED follows */
            break;
        }
        if (w > 0)
            vmc_mux_guest_output_advance(srv->mux, (gsize)w);
        if ((gsize)w < total)
            break;
    }
    vmc_guest_port_want_write(srv->guest, open && vmc_mux_guest_output_size(srv->mux) > 0);
    vmc_guest_port_want_read(srv->guest, open && vmc_mux_guest_wants_input(srv->mux));
}

/* ------------------------------------------------------------------------------------
 * service
 * ------------------------------------------------------------------------------------ */

/* The mux's notify callback: only marks; service() does the work. */
static void
on_mux_notify(gpointer user_data, guint32 client_id)
{
    VmcServer *srv = user_data;
    Conn *c;

    if (client_id == 0) {
        srv->guest_dirty = TRUE;
        return;
    }
    c = g_hash_table_lookup(srv->by_client, GUINT_TO_POINTER(client_id));
    if (c != NULL)
        c->dirty = TRUE;
}

static gboolean
any_dirty(VmcServer *srv)
{
    if (srv->guest_dirty)
        return TRUE;
    for (guint i = 0; i < srv->conns->len; i++) {
        Conn *c = g_ptr_array_index(srv->conns, i);
        if (c->dirty && !c->dead)
            return TRUE;
    }
    return FALSE;
}

static void
service(VmcServer *srv)
{
    if (srv->in_service || !srv->started)
        return;
    srv->in_service = TRUE;
    for (int round = 0; round < SERVICE_ROUNDS && any_dirty(srv); round++) {
        /* guest first: writing returns tokens, which queue AGENT_TOKEN for clients */
        if (srv->guest_dirty)
            guest_flush(srv);
        for (guint i = 0; i < srv->conns->len; i++) {
            Conn *c = g_ptr_array_index(srv->conns, i);
            if (c->dirty)
                conn_flush(c);
        }
    }
    /* reap */
    for (guint i = 0; i < srv->conns->len;) {
        Conn *c = g_ptr_array_index(srv->conns, i);
        if (c->dead) {
            g_ptr_array_remove_index(srv->conns, i);
            conn_destroy(c);
        } else {
            i++;
        }
    }
    update_timer(srv);
    srv->in_service = FALSE;
}

/* ------------------------------------------------------------------------------------
 * start
 * ------------------------------------------------------------------------------------ */

static gboolean
add_listener(VmcServer *srv, const char *spec, GError **error)
{
    if (g_str_has_prefix(spec, "unix:")) {
        Listener *l;
        int fd = vmc_listen_unix(spec + 5, error);
        if (fd < 0)
            return FALSE;
        l = g_new0(Listener, 1);
        l->srv = srv;
        l->fd = fd;
        l->is_unix = TRUE;
        l->path = g_strdup(spec + 5);
        l->address = g_strdup(spec);
        l->watch = vmc_watch_new(srv->context, fd, G_IO_IN, on_listener_ready, l);
        g_ptr_array_add(srv->listeners, l);
        return TRUE;
    } else {
        g_autoptr(GArray) fds = vmc_listen_tcp(spec, error);
        if (fds == NULL)
            return FALSE;
        for (guint i = 0; i < fds->len; i++) {
            Listener *l = g_new0(Listener, 1);
            l->srv = srv;
            l->fd = g_array_index(fds, int, i);
            l->address = vmc_socket_describe(l->fd, FALSE);
            l->watch = vmc_watch_new(srv->context, l->fd, G_IO_IN, on_listener_ready, l);
            g_ptr_array_add(srv->listeners, l);
        }
        return TRUE;
    }
}

gboolean
vmc_server_start(VmcServer *server, GError **error)
{
    VmcServer *srv = server;

    g_return_val_if_fail(server != NULL, FALSE);
    g_return_val_if_fail(!server->started, FALSE);

    if (srv->record_path != NULL) {
        srv->recorder = vmc_recorder_new(srv->record_path, error);
        if (srv->recorder == NULL)
            return FALSE;
    }
    srv->mux = vmc_mux_new(&srv->mux_cfg);
    vmc_mux_set_notify_func(srv->mux, on_mux_notify, srv);
    if (srv->recorder != NULL)
        vmc_mux_set_tap_func(srv->mux, vmc_recorder_tap, srv->recorder);
    vmc_mux_tick(srv->mux, now_us());
    srv->keys = vmc_ticket_pool_new(srv->key_pool_size, TRUE);
    /* a link that finds the pool dry waits for the workers (no key made here) */
    vmc_ticket_pool_attach(srv->keys, srv->context, on_keys_ready, srv);
    srv->sess_cfg.mux = srv->mux;
    srv->sess_cfg.keys = srv->keys;
    srv->sess_cfg.admit = admit;
    srv->sess_cfg.admit_data = srv;
    if (srv->recorder != NULL) {
        srv->sess_cfg.tokens = on_tokens;
        srv->sess_cfg.tokens_data = srv;
    }
    srv->rbuf = g_malloc(READ_BUF_SIZE);

    srv->timer = g_source_new(&timer_funcs, sizeof(GSource));
    g_source_set_static_name(srv->timer, "vmc-server-timer");
    g_source_set_callback(srv->timer, NULL, srv, NULL);
    g_source_set_ready_time(srv->timer, -1);
    g_source_attach(srv->timer, srv->context);

    if (srv->listen_specs->len == 0)
        g_ptr_array_add(srv->listen_specs, g_strdup("127.0.0.1:5930"));
    for (guint i = 0; i < srv->listen_specs->len; i++)
        if (!add_listener(srv, g_ptr_array_index(srv->listen_specs, i), error))
            goto fail;

    if (srv->guest_spec != NULL) {
        srv->guest = vmc_guest_port_new(srv->guest_spec, srv->context, error);
        if (srv->guest == NULL)
            goto fail;
        vmc_guest_port_set_event_func(srv->guest, on_guest_event, srv);
        vmc_guest_port_want_read(srv->guest, TRUE);
        if (!vmc_guest_port_start(srv->guest, error))
            goto fail;
    }
    srv->started = TRUE;
    kick_key_warm(srv);
    return TRUE;

fail:
    /* leave the server as unstarted; vmc_server_free() cleans up */
    for (guint i = 0; i < srv->listeners->len; i++)
        listener_free(g_ptr_array_index(srv->listeners, i));
    g_ptr_array_set_size(srv->listeners, 0);
    g_clear_pointer(&srv->guest, vmc_guest_port_free);
    return FALSE;
}

/* ------------------------------------------------------------------------------------
 * push guest, observation
 * ------------------------------------------------------------------------------------ */

static gboolean
is_push(VmcServer *srv)
{
    return srv->guest != NULL && srv->guest_spec != NULL && g_str_equal(srv->guest_spec, "push");
}

void
vmc_server_guest_push_open(VmcServer *server, gboolean open)
{
    g_return_if_fail(server != NULL && is_push(server));
    vmc_guest_port_push_open(server->guest, open);
}

gsize
vmc_server_guest_push_bytes(VmcServer *server, const guint8 *data, gsize len)
{
    g_return_val_if_fail(server != NULL && is_push(server), 0);
    return vmc_guest_port_push_bytes(server->guest, data, len);
}

void
vmc_server_guest_push_set_funcs(VmcServer *server, VmcServerGuestWriteFunc write_func,
                                VmcServerGuestSpaceFunc space_func, gpointer user_data)
{
    g_return_if_fail(server != NULL && is_push(server));
    vmc_guest_port_push_set_funcs(server->guest, write_func, space_func, user_data);
}

void
vmc_server_guest_push_writable(VmcServer *server)
{
    g_return_if_fail(server != NULL && is_push(server));
    vmc_guest_port_push_writable(server->guest);
}

char **
vmc_server_dup_listen_addresses(VmcServer *server)
{
    GPtrArray *a;

    g_return_val_if_fail(server != NULL, NULL);
    a = g_ptr_array_new();
    for (guint i = 0; i < server->listeners->len; i++) {
        Listener *l = g_ptr_array_index(server->listeners, i);
        g_ptr_array_add(a, g_strdup(l->address));
    }
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
}

const char *
vmc_server_get_guest_description(VmcServer *server)
{
    g_return_val_if_fail(server != NULL, NULL);
    return server->guest ? vmc_guest_port_describe(server->guest) : NULL;
}

gboolean
vmc_server_is_agent_connected(VmcServer *server)
{
    g_return_val_if_fail(server != NULL, FALSE);
    return server->mux != NULL && vmc_mux_guest_is_connected(server->mux);
}

/* ------------------------------------------------------------------------------------
 * options
 * ------------------------------------------------------------------------------------ */

VmcServer *
vmc_server_new_from_options(const VmcServerOptions *opts, GMainContext *context,
                            GError **error)
{
    g_autoptr(VmcServer) srv = NULL;

    g_return_val_if_fail(opts != NULL, NULL);

    srv = vmc_server_new(context);
    if (opts->listen != NULL)
        for (guint i = 0; i < opts->listen->len; i++)
            if (!vmc_server_add_listen(srv, g_ptr_array_index(opts->listen, i), error))
                return NULL;
    if (opts->guest != NULL && !vmc_server_set_guest(srv, opts->guest, error))
        return NULL;
    vmc_server_set_ticketing(srv, !opts->disable_ticketing);
    if (opts->password != NULL && !vmc_server_set_password(srv, opts->password, 0, error))
        return NULL;
    vmc_server_set_agent_window(srv, opts->agent_window);
    vmc_server_set_copy_paste(srv, opts->copy_paste);
    vmc_server_set_file_xfer(srv, opts->file_xfer);
    vmc_server_set_max_clients(srv, opts->max_clients);
    vmc_server_set_name(srv, opts->name);
    vmc_server_set_uuid(srv, opts->have_uuid ? opts->uuid : NULL);
    if (opts->record_path != NULL && !vmc_server_set_record(srv, opts->record_path, error))
        return NULL;
    return g_steal_pointer(&srv);
}
