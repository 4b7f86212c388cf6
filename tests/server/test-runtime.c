/* test-runtime.c — VmcServer (the native runtime) over real loopback sockets and
 * socketpairs on a private GMainContext: a minimal raw SPICE client in the test links,
 * authenticates with RSA-OAEP, talks to a fake agent on the guest port. */
#define _GNU_SOURCE
#include "server/vmc-runtime.h"
#include "server/vmc-ticket.h"
#include "server-test-util.h"

#include <fcntl.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spice/enums.h>
#include <spice/protocol.h>
#include <spice/vd_agent.h>
#include <sys/socket.h>
#include <sys/un.h>

#define WAIT_MS VMC_TEST_TIMEOUT_MS
#define TYPE_OPAQUE 0x1234u /* an agent message type the server forwards untouched */

/* ---------------------------------------------------------------------------------- */
/* a peer socket driven from the same context */

typedef struct {
    GMainContext *ctx;
    int fd;
    GSource *src;
    GByteArray *in;
    gboolean eof;
} Peer;

static gboolean
peer_readable(gint fd, GIOCondition cond, gpointer data)
{
    Peer *p = data;
    guint8 buf[65536];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            g_byte_array_append(p->in, buf, (guint)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return G_SOURCE_CONTINUE;
        p->eof = TRUE;
        g_source_unref(p->src);
        p->src = NULL;
        return G_SOURCE_REMOVE;
    }
}

static Peer *
peer_new(GMainContext *ctx, int fd)
{
    Peer *p = g_new0(Peer, 1);

    p->ctx = ctx;
    p->fd = fd;
    p->in = g_byte_array_new();
    g_assert_true(g_unix_set_fd_nonblocking(fd, TRUE, NULL));
    p->src = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(p->src, (GSourceFunc)(void (*)(void))peer_readable, p, NULL);
    g_source_attach(p->src, ctx);
    return p;
}

static void
peer_free(Peer *p)
{
    if (p == NULL)
        return;
    if (p->src != NULL) {
        g_source_destroy(p->src);
        g_source_unref(p->src);
    }
    if (p->fd >= 0)
        close(p->fd);
    g_byte_array_unref(p->in);
    g_free(p);
}

static void
peer_send(Peer *p, const void *data, gsize len)
{
    const guint8 *d = data;
    gint64 deadline = g_get_monotonic_time() + WAIT_MS * 1000;

    while (len > 0) {
        ssize_t n = send(p->fd, d, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            d += n;
            len -= (gsize)n;
            continue;
        }
        g_assert_true(n < 0 && (errno == EAGAIN || errno == EINTR));
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_main_context_iteration(p->ctx, TRUE); /* let the server read */
    }
}

typedef struct {
    Peer *p;
    gsize n;
} PeerWait;

static gboolean
peer_has(gpointer data)
{
    PeerWait *w = data;
    return w->p->in->len >= w->n || w->p->eof;
}

static void
peer_take(Peer *p, gsize n, guint8 *dst)
{
    PeerWait w = {p, n};

    vmc_test_wait(p->ctx, peer_has, &w, WAIT_MS);
    g_assert_cmpuint(p->in->len, >=, n);
    if (dst != NULL)
        memcpy(dst, p->in->data, n);
    g_byte_array_remove_range(p->in, 0, (guint)n);
}

static gboolean
peer_eof_cond(gpointer data)
{
    return ((Peer *)data)->eof;
}

static void
peer_expect_eof(Peer *p)
{
    g_assert_true(vmc_test_wait(p->ctx, peer_eof_cond, p, WAIT_MS));
    g_assert_cmpuint(p->in->len, ==, 0);
}

static guint32
rd32(const guint8 *b)
{
    return (guint32)b[0] | ((guint32)b[1] << 8) | ((guint32)b[2] << 16) | ((guint32)b[3] << 24);
}

static void
wr32(guint8 *b, guint32 v)
{
    b[0] = v & 0xff;
    b[1] = (v >> 8) & 0xff;
    b[2] = (v >> 16) & 0xff;
    b[3] = v >> 24;
}

/* ---------------------------------------------------------------------------------- */
/* the SPICE client side */

static guint32
spice_link_result(Peer *p, const char *password, guint32 common, guint32 main_caps)
{
    guint8 link[16 + 18 + 8];
    guint8 reply[16 + 186];
    guint8 ticket[128];
    gsize tlen;
    guint8 r[4];

    memcpy(link, "REDQ", 4);
    wr32(link + 4, 2);
    wr32(link + 8, 2);
    wr32(link + 12, 26);
    wr32(link + 16, 0);
    link[20] = SPICE_CHANNEL_MAIN;
    link[21] = 0;
    wr32(link + 22, 1);
    wr32(link + 26, 1);
    wr32(link + 30, 18);
    wr32(link + 34, common);
    wr32(link + 38, main_caps);
    peer_send(p, link, sizeof(link));
    peer_take(p, sizeof(reply), reply);
    g_assert_cmpmem(reply, 4, "REDQ", 4);
    g_assert_cmpuint(rd32(reply + 16), ==, 0);
    if (common & (1u << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION)) {
        guint8 mech[4];
        wr32(mech, SPICE_COMMON_CAP_AUTH_SPICE);
        peer_send(p, mech, 4);
    }
    g_assert_true(vmc_ticket_encrypt(reply + 20, 162, (const guint8 *)password,
                                     strlen(password) + 1, ticket, &tlen));
    peer_send(p, ticket, tlen);
    peer_take(p, 4, r);
    return rd32(r);
}

static void
spice_recv(Peer *p, guint16 *type, GBytes **body)
{
    guint8 h[6];
    guint32 size;
    guint8 *b;

    peer_take(p, 6, h);
    *type = (guint16)(h[0] | (h[1] << 8));
    size = rd32(h + 2);
    b = g_malloc(size ? size : 1);
    peer_take(p, size, b);
    *body = g_bytes_new_take(b, size);
}

static GBytes *
spice_expect(Peer *p, guint16 type)
{
    guint16 t;
    GBytes *b;

    /* token returns may come at any time; a real client takes them in passing */
    for (;;) {
        spice_recv(p, &t, &b);
        if (t != SPICE_MSG_MAIN_AGENT_TOKEN || type == SPICE_MSG_MAIN_AGENT_TOKEN)
            break;
        g_bytes_unref(b);
    }
    g_assert_cmpuint(t, ==, type);
    return b;
}

/* Links as spice-gtk does; returns INIT.agent_connected and the window. */
static void
spice_connect(Peer *p, const char *password, guint32 *agent_connected, guint32 *tokens)
{
    g_autoptr(GBytes) init = NULL;
    const guint8 *d;

    g_assert_cmpuint(spice_link_result(p, password, 0x0D, 0x0F), ==, 0);
    init = spice_expect(p, SPICE_MSG_MAIN_INIT);
    d = g_bytes_get_data(init, NULL);
    g_assert_cmpuint(rd32(d), !=, 0);
    if (agent_connected)
        *agent_connected = rd32(d + 16);
    if (tokens)
        *tokens = rd32(d + 20);
}

static void
spice_send(Peer *p, guint16 type, const void *body, gsize len)
{
    guint8 h[6];

    h[0] = type & 0xff;
    h[1] = type >> 8;
    wr32(h + 2, (guint32)len);
    peer_send(p, h, 6);
    if (len > 0)
        peer_send(p, body, len);
}

static void
spice_send_u32(Peer *p, guint16 type, guint32 v)
{
    guint8 b[4];
    wr32(b, v);
    spice_send(p, type, b, 4);
}

/* Round trip: everything sent before has been processed by the server. */
static void
spice_sync(Peer *p)
{
    spice_send(p, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    g_bytes_unref(spice_expect(p, SPICE_MSG_MAIN_CHANNELS_LIST));
}

/* An agent message header. */
static void
agent_header(guint8 *h, guint32 type, guint32 size)
{
    memset(h, 0, 20);
    wr32(h, 1);
    wr32(h + 4, type);
    wr32(h + 16, size);
}

/* ---------------------------------------------------------------------------------- */
/* the agent side: reads chunks */

static void
agent_recv_chunk(Peer *a, guint32 *port, GBytes **data)
{
    guint8 h[8];
    guint32 size;
    guint8 *b;

    peer_take(a, 8, h);
    *port = rd32(h);
    size = rd32(h + 4);
    g_assert_cmpuint(size, <=, 2048); /* never a chunk over 2048 to the guest */
    b = g_malloc(size ? size : 1);
    peer_take(a, size, b);
    *data = g_bytes_new_take(b, size);
}

static void
agent_send_chunk(Peer *a, guint32 port, const void *data, gsize len)
{
    guint8 h[8];

    wr32(h, port);
    wr32(h + 4, (guint32)len);
    peer_send(a, h, 8);
    peer_send(a, data, len);
}

/* ---------------------------------------------------------------------------------- */
/* fixture */

typedef struct {
    GMainContext *ctx;
    char *dir;
    char *guest_path;
    VmcServer *srv;
    guint fds_before;
    GPtrArray *events; /* char*: "client-connected 1" ... */
    guint n_agent_connected;
    guint n_agent_disconnected;
    guint n_client_connected;
    guint n_client_disconnected;
} F;

static void
on_event(VmcServer *srv, VmcServerEvent ev, guint32 id, const char *detail, gpointer data)
{
    F *f = data;
    static const char *names[] = {"client-connected", "client-disconnected", "client-refused",
                                  "agent-connected", "agent-disconnected"};

    g_ptr_array_add(f->events, g_strdup_printf("%s %u %s", names[ev], id, detail));
    switch (ev) {
    case VMC_SERVER_EVENT_AGENT_CONNECTED:
        f->n_agent_connected++;
        break;
    case VMC_SERVER_EVENT_AGENT_DISCONNECTED:
        f->n_agent_disconnected++;
        break;
    case VMC_SERVER_EVENT_CLIENT_CONNECTED:
        f->n_client_connected++;
        break;
    case VMC_SERVER_EVENT_CLIENT_DISCONNECTED:
        f->n_client_disconnected++;
        break;
    default:
        break;
    }
}

static void
setup(F *f, gconstpointer data)
{
    f->fds_before = vmc_test_count_fds();
    f->ctx = g_main_context_new();
    f->dir = g_dir_make_tmp("vmc-rt-XXXXXX", NULL);
    f->guest_path = g_build_filename(f->dir, "guest.sock", NULL);
    f->events = g_ptr_array_new_with_free_func(g_free);
}

static void
teardown(F *f, gconstpointer data)
{
    g_clear_pointer(&f->srv, vmc_server_free);
    vmc_test_spin(f->ctx);
    g_main_context_unref(f->ctx);
    g_rmdir(f->dir);
    g_free(f->dir);
    g_free(f->guest_path);
    g_ptr_array_unref(f->events);
    /* no fd left behind: sockets, the guest port, the key pool, the timers */
    g_assert_cmpuint(vmc_test_count_fds(), ==, f->fds_before);
}

/* A started server: TCP on an ephemeral loopback port (or `listen`), guest unix:. */
static void
start_server(F *f, const char *listen, guint max_clients, const char *guest)
{
    g_autofree char *g = g_strdup_printf("unix:%s", f->guest_path);
    GError *error = NULL;

    f->srv = vmc_server_new(f->ctx);
    vmc_server_set_event_func(f->srv, on_event, f);
    g_assert_true(vmc_server_add_listen(f->srv, listen ? listen : "127.0.0.1:0", &error));
    g_assert_true(vmc_server_set_guest(f->srv, guest ? guest : g, &error));
    g_assert_true(vmc_server_set_password(f->srv, "pw", 0, &error));
    vmc_server_set_max_clients(f->srv, max_clients);
    vmc_server_set_key_pool_size(f->srv, 4);
    g_assert_true(vmc_server_start(f->srv, &error));
    g_assert_no_error(error);
}

static int
connect_tcp(F *f)
{
    g_auto(GStrv) addrs = vmc_server_dup_listen_addresses(f->srv);
    const char *colon = strrchr(addrs[0], ':');
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    g_assert_true(g_str_has_prefix(addrs[0], "127.0.0.1:"));
    sin.sin_port = htons((guint16)atoi(colon + 1));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int
connect_unix_path(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
    return fd;
}

static Peer *
new_client(F *f)
{
    return peer_new(f->ctx, connect_tcp(f));
}

static gboolean
agent_connected_cond(gpointer data)
{
    F *f = data;
    return vmc_server_is_agent_connected(f->srv);
}

static Peer *
new_agent(F *f)
{
    Peer *a = peer_new(f->ctx, connect_unix_path(f->guest_path));
    g_assert_true(vmc_test_wait(f->ctx, agent_connected_cond, f, WAIT_MS));
    return a;
}

typedef struct {
    guint *counter;
    guint want;
} CountCond;

static gboolean
count_reached(gpointer data)
{
    CountCond *c = data;
    return *c->counter >= c->want;
}

static void
wait_count(F *f, guint *counter, guint want)
{
    CountCond c = {counter, want};
    g_assert_true(vmc_test_wait(f->ctx, count_reached, &c, WAIT_MS));
}

/* ==================================================================================
 * tests
 * ================================================================================== */

static void
test_link_and_agent(F *f, gconstpointer data)
{
    Peer *agent, *client;
    guint32 connected, tokens, port;
    guint8 msg[20 + 4];
    guint8 reply[20 + 5];
    g_autoptr(GBytes) chunk = NULL;
    g_autoptr(GBytes) d = NULL;

    start_server(f, NULL, 1, NULL);
    agent = new_agent(f);
    g_assert_cmpuint(f->n_agent_connected, ==, 1);
    client = new_client(f);
    spice_connect(client, "pw", &connected, &tokens);
    g_assert_cmpuint(connected, ==, 1);
    g_assert_cmpuint(tokens, ==, vmc_mux_get_agent_window(vmc_server_get_mux(f->srv)));
    g_assert_cmpuint(vmc_server_get_n_clients(f->srv), ==, 1);
    wait_count(f, &f->n_client_connected, 1);

    /* client -> agent: AGENT_START + AGENT_DATA arrive as one chunk {1, 24} */
    spice_send_u32(client, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF);
    agent_header(msg, VD_AGENT_MAX_CLIPBOARD, 4);
    wr32(msg + 20, 1000000);
    spice_send(client, SPICE_MSGC_MAIN_AGENT_DATA, msg, sizeof(msg));
    agent_recv_chunk(agent, &port, &chunk);
    g_assert_cmpuint(port, ==, 1);
    g_assert_cmpmem(g_bytes_get_data(chunk, NULL), g_bytes_get_size(chunk), msg, sizeof(msg));

    /* agent -> client: a chunk arrives as AGENT_DATA */
    agent_header(reply, TYPE_OPAQUE, 5);
    memcpy(reply + 20, "hello", 5);
    agent_send_chunk(agent, 1, reply, sizeof(reply));
    d = spice_expect(client, SPICE_MSG_MAIN_AGENT_DATA);
    g_assert_cmpmem(g_bytes_get_data(d, NULL), g_bytes_get_size(d), reply, sizeof(reply));

    /* ATTACH_CHANNELS: an empty list */
    spice_send(client, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    g_bytes_unref(spice_expect(client, SPICE_MSG_MAIN_CHANNELS_LIST));

    /* the client leaves: the agent hears CLIENT_DISCONNECTED on port 2 */
    peer_free(client);
    g_clear_pointer(&chunk, g_bytes_unref);
    agent_recv_chunk(agent, &port, &chunk);
    g_assert_cmpuint(port, ==, 2);
    g_assert_cmpuint(g_bytes_get_size(chunk), ==, 20);
    g_assert_cmpuint(rd32((const guint8 *)g_bytes_get_data(chunk, NULL) + 4), ==,
                     VD_AGENT_CLIENT_DISCONNECTED);
    wait_count(f, &f->n_client_disconnected, 1);
    peer_free(agent);
    wait_count(f, &f->n_agent_disconnected, 1);
}

static void
test_agent_reconnect(F *f, gconstpointer data)
{
    Peer *agent, *client;
    guint32 connected, port;
    g_autoptr(GBytes) b = NULL;
    guint8 msg[24];

    start_server(f, NULL, 1, NULL);
    client = new_client(f);
    spice_connect(client, "pw", &connected, NULL);
    g_assert_cmpuint(connected, ==, 0);

    agent = new_agent(f);
    b = spice_expect(client, SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS);
    g_assert_cmpuint(rd32(g_bytes_get_data(b, NULL)), ==,
                     vmc_mux_get_agent_window(vmc_server_get_mux(f->srv)));
    spice_send_u32(client, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF);

    /* the agent goes away: AGENT_DISCONNECTED(0) */
    peer_free(agent);
    g_clear_pointer(&b, g_bytes_unref);
    b = spice_expect(client, SPICE_MSG_MAIN_AGENT_DISCONNECTED);
    g_assert_cmpuint(rd32(g_bytes_get_data(b, NULL)), ==, 0);
    g_assert_false(vmc_server_is_agent_connected(f->srv));

    /* and comes back on the same socket path: data flows again */
    agent = new_agent(f);
    g_clear_pointer(&b, g_bytes_unref);
    b = spice_expect(client, SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS);
    spice_send_u32(client, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF);
    agent_header(msg, VD_AGENT_MAX_CLIPBOARD, 4);
    wr32(msg + 20, 7);
    spice_send(client, SPICE_MSGC_MAIN_AGENT_DATA, msg, sizeof(msg));
    g_clear_pointer(&b, g_bytes_unref);
    agent_recv_chunk(agent, &port, &b);
    g_assert_cmpuint(port, ==, 1);
    g_assert_cmpuint(f->n_agent_connected, ==, 2);
    g_assert_cmpuint(f->n_agent_disconnected, ==, 1);

    /* a guest protocol error (port 3): the agent is dropped, the client told */
    {
        guint8 bad[8] = {3, 0, 0, 0, 0, 0, 0, 0};
        peer_send(agent, bad, sizeof(bad));
        g_clear_pointer(&b, g_bytes_unref);
        b = spice_expect(client, SPICE_MSG_MAIN_AGENT_DISCONNECTED);
        peer_expect_eof(agent);
        wait_count(f, &f->n_agent_disconnected, 2);
    }
    peer_free(agent);
    peer_free(client);
}

static void
test_client_replaced(F *f, gconstpointer data)
{
    Peer *agent, *a, *b;
    guint32 port;
    g_autoptr(GBytes) chunk = NULL;

    start_server(f, NULL, 1, NULL);
    agent = new_agent(f);
    a = new_client(f);
    spice_connect(a, "pw", NULL, NULL);
    /* an unauthenticated link does not replace anybody */
    b = new_client(f);
    g_assert_cmpuint(spice_link_result(b, "nope", 0x0D, 0x0F), ==,
                     SPICE_LINK_ERR_PERMISSION_DENIED);
    peer_expect_eof(b);
    peer_free(b);
    g_assert_cmpuint(vmc_server_get_n_clients(f->srv), ==, 1);
    /* an authenticated one does */
    b = new_client(f);
    spice_connect(b, "pw", NULL, NULL);
    peer_expect_eof(a);
    agent_recv_chunk(agent, &port, &chunk);
    g_assert_cmpuint(port, ==, 2);
    g_assert_cmpuint(rd32((const guint8 *)g_bytes_get_data(chunk, NULL) + 4), ==,
                     VD_AGENT_CLIENT_DISCONNECTED);
    g_assert_cmpuint(vmc_server_get_n_clients(f->srv), ==, 1);
    wait_count(f, &f->n_client_disconnected, 1);
    peer_free(a);
    peer_free(b);
    peer_free(agent);
}

static void
test_max_clients(F *f, gconstpointer data)
{
    Peer *a, *b, *c;
    g_autoptr(GBytes) n = NULL;
    const guint8 *d;

    start_server(f, NULL, 2, NULL);
    a = new_client(f);
    spice_connect(a, "pw", NULL, NULL);
    b = new_client(f);
    spice_connect(b, "pw", NULL, NULL);
    c = new_client(f);
    g_assert_cmpuint(spice_link_result(c, "pw", 0x0D, 0x0F), ==, 0);
    n = spice_expect(c, SPICE_MSG_NOTIFY);
    d = g_bytes_get_data(n, NULL);
    g_assert_cmpuint(rd32(d + 8), ==, SPICE_NOTIFY_SEVERITY_ERROR);
    g_assert_nonnull(strstr((const char *)d + 24, "--max-clients 2"));
    peer_expect_eof(c);
    g_assert_cmpuint(vmc_server_get_n_clients(f->srv), ==, 2);
    /* the first two are untouched */
    spice_send(a, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    g_bytes_unref(spice_expect(a, SPICE_MSG_MAIN_CHANNELS_LIST));
    spice_send(b, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    g_bytes_unref(spice_expect(b, SPICE_MSG_MAIN_CHANNELS_LIST));
    peer_free(a);
    peer_free(b);
    peer_free(c);
}

/* Links that find the key pool dry wait for its workers (no key made on the protocol
 * thread) and all complete; the loop keeps serving a connected client meanwhile. */
static void
test_link_storm(F *f, gconstpointer data)
{
    enum { N = 12 };
    Peer *p[N], *first;
    guint8 link[16 + 18 + 8];

    start_server(f, NULL, N + 1, NULL);
    first = new_client(f);
    spice_connect(first, "pw", NULL, NULL);
    memcpy(link, "REDQ", 4);
    wr32(link + 4, 2);
    wr32(link + 8, 2);
    wr32(link + 12, 26);
    wr32(link + 16, 0);
    link[20] = SPICE_CHANNEL_MAIN;
    link[21] = 0;
    wr32(link + 22, 1);
    wr32(link + 26, 1);
    wr32(link + 30, 18);
    wr32(link + 34, 0x0D);
    wr32(link + 38, 0x0F);
    /* all links at once: more than the pool holds (4) */
    for (guint i = 0; i < N; i++) {
        p[i] = new_client(f);
        peer_send(p[i], link, sizeof(link));
    }
    /* the connected client is answered while links wait for keys */
    spice_send(first, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    g_bytes_unref(spice_expect(first, SPICE_MSG_MAIN_CHANNELS_LIST));
    for (guint i = 0; i < N; i++) {
        guint8 reply[16 + 186], ticket[128], mech[4], r[4];
        gsize tlen;

        peer_take(p[i], sizeof(reply), reply);
        g_assert_cmpmem(reply, 4, "REDQ", 4);
        g_assert_cmpuint(rd32(reply + 16), ==, 0);
        wr32(mech, SPICE_COMMON_CAP_AUTH_SPICE);
        peer_send(p[i], mech, 4);
        g_assert_true(vmc_ticket_encrypt(reply + 20, 162, (const guint8 *)"pw", 3, ticket,
                                         &tlen));
        peer_send(p[i], ticket, tlen);
        peer_take(p[i], 4, r);
        g_assert_cmpuint(rd32(r), ==, 0);
        g_bytes_unref(spice_expect(p[i], SPICE_MSG_MAIN_INIT));
    }
    g_assert_cmpuint(vmc_server_get_n_clients(f->srv), ==, N + 1);
    for (guint i = 0; i < N; i++)
        peer_free(p[i]);
    peer_free(first);
}

static void
test_bad_links(F *f, gconstpointer data)
{
    Peer *c;
    guint8 r[16 + 178];
    guint8 link[16 + 18];

    start_server(f, NULL, 1, NULL);
    /* bad magic: the error reply, then EOF */
    c = new_client(f);
    peer_send(c, "GET / HTTP/1.1\r\n\r\n", 18);
    peer_take(c, sizeof(r), r);
    g_assert_cmpuint(rd32(r + 16), ==, SPICE_LINK_ERR_INVALID_MAGIC);
    peer_expect_eof(c);
    peer_free(c);
    /* a display channel: CHANNEL_NOT_AVAILABLE, then EOF (never a hang) */
    c = new_client(f);
    memcpy(link, "REDQ", 4);
    wr32(link + 4, 2);
    wr32(link + 8, 2);
    wr32(link + 12, 18);
    memset(link + 16, 0, 18);
    link[20] = SPICE_CHANNEL_DISPLAY;
    peer_send(c, link, sizeof(link));
    peer_take(c, sizeof(r), r);
    g_assert_cmpuint(rd32(r + 16), ==, SPICE_LINK_ERR_CHANNEL_NOT_AVAILABLE);
    peer_expect_eof(c);
    peer_free(c);
    /* wrong password: result 7, then EOF */
    c = new_client(f);
    g_assert_cmpuint(spice_link_result(c, "wrong", 0x0D, 0x0F), ==, 7);
    peer_expect_eof(c);
    peer_free(c);
    /* an oversized message closes that client only */
    c = new_client(f);
    spice_connect(c, "pw", NULL, NULL);
    {
        guint8 h[6] = {SPICE_MSGC_MAIN_AGENT_DATA, 0, 0xF8, 0xFF, 0xFF, 0xFF};
        peer_send(c, h, 6);
    }
    peer_expect_eof(c);
    peer_free(c);
    g_assert_cmpuint(f->n_client_connected, ==, 1);
    g_assert_cmpuint(f->n_client_disconnected, ==, 1);
}

static void
test_unix_listen(F *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "spice.sock", NULL);
    g_autofree char *spec = g_strdup_printf("unix:%s", path);
    g_auto(GStrv) addrs = NULL;
    Peer *c;

    start_server(f, spec, 1, NULL);
    vmc_server_set_ping(f->srv, 10 * 1000, 100 * 1000);
    addrs = vmc_server_dup_listen_addresses(f->srv);
    g_assert_cmpstr(addrs[0], ==, spec);
    c = peer_new(f->ctx, connect_unix_path(path));
    spice_connect(c, "pw", NULL, NULL);
    /* no PING on UNIX sockets, even with a tiny interval */
    vmc_test_run_for(f->ctx, 50);
    g_assert_cmpuint(c->in->len, ==, 0);
    peer_free(c);
    g_clear_pointer(&f->srv, vmc_server_free);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

static void
test_keepalive_tcp(F *f, gconstpointer data)
{
    Peer *c;
    g_autoptr(GBytes) ping = NULL;

    f->srv = NULL;
    {
        GError *error = NULL;
        f->srv = vmc_server_new(f->ctx);
        vmc_server_add_listen(f->srv, "127.0.0.1:0", NULL);
        vmc_server_set_ticketing(f->srv, FALSE);
        vmc_server_set_ping(f->srv, 20 * 1000, 100 * 1000);
        g_assert_true(vmc_server_start(f->srv, &error));
    }
    c = new_client(f);
    spice_connect(c, "x", NULL, NULL);
    ping = spice_expect(c, SPICE_MSG_PING);
    g_assert_cmpuint(g_bytes_get_size(ping), ==, 12);
    /* never answered: the dead client is closed */
    peer_expect_eof(c);
    peer_free(c);
}

static void
test_fd_handover(F *f, gconstpointer data)
{
    int sv[2];
    Peer *c;
    GError *error = NULL;

    start_server(f, NULL, 1, NULL);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    /* skip_auth: the VMM authenticated the client; any ticket that decrypts works */
    g_assert_true(vmc_server_add_client_fd(f->srv, sv[0], TRUE, &error));
    g_assert_no_error(error);
    c = peer_new(f->ctx, sv[1]);
    spice_connect(c, "not the password", NULL, NULL);
    g_assert_cmpuint(vmc_server_get_n_clients(f->srv), ==, 1);
    peer_free(c);
    /* not a socket: refused, and the fd is closed anyway */
    {
        int fds[2];
        g_assert_cmpint(pipe2(fds, O_CLOEXEC), ==, 0);
        g_assert_false(vmc_server_add_client_fd(f->srv, fds[0], FALSE, &error));
        g_assert_error(error, VMC_ERROR, VMC_ERROR_INVALID_ARGUMENT);
        g_clear_error(&error);
        g_assert_cmpint(fcntl(fds[0], F_GETFD), ==, -1);
        close(fds[1]);
    }
}

static void
test_busy_port(F *f, gconstpointer data)
{
    g_auto(GStrv) addrs = NULL;
    g_autoptr(VmcServer) other = NULL;
    GError *error = NULL;

    start_server(f, NULL, 1, NULL);
    addrs = vmc_server_dup_listen_addresses(f->srv);
    other = vmc_server_new(f->ctx);
    g_assert_true(vmc_server_add_listen(other, addrs[0], NULL));
    g_assert_false(vmc_server_start(other, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE);
    g_clear_error(&error);
    /* the busy guest socket too */
    g_clear_pointer(&other, vmc_server_free);
    other = vmc_server_new(f->ctx);
    g_assert_true(vmc_server_add_listen(other, "127.0.0.1:0", NULL));
    {
        g_autofree char *g = g_strdup_printf("unix:%s", f->guest_path);
        g_assert_true(vmc_server_set_guest(other, g, NULL));
    }
    g_assert_false(vmc_server_start(other, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE);
    g_clear_error(&error);
    /* bad specs */
    g_assert_false(vmc_server_add_listen(other, "nonsense", &error));
    g_clear_error(&error);
    g_assert_false(vmc_server_set_guest(other, "tcp:1", &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&error);
    g_assert_false(vmc_server_set_password(other, "0123456789012345678901234567890123456789"
                                                  "012345678901234567890",
                                           0, &error));
    g_assert_error(error, VMC_ERROR, VMC_ERROR_INVALID_ARGUMENT);
    g_clear_error(&error);
}

/* ---- bulk both ways ---- */

static void
test_bulk(F *f, gconstpointer data)
{
    const gsize total = 1024 * 1024;
    g_autofree guint8 *payload = g_malloc(total);
    g_autoptr(GByteArray) at_agent = g_byte_array_new();
    g_autoptr(GByteArray) at_client = g_byte_array_new();
    Peer *agent, *client;
    guint32 tokens, used = 0;
    gsize off = 0;
    guint8 piece[2048];

    for (gsize i = 0; i < total; i++)
        payload[i] = (guint8)(i * 7 + (i >> 11));
    start_server(f, NULL, 1, NULL);
    agent = new_agent(f);
    client = new_client(f);
    spice_connect(client, "pw", NULL, &tokens);
    spice_send_u32(client, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF);

    /* client -> agent: one 1 MiB message in 2 KiB AGENT_DATA, within the token grant */
    agent_header(piece, TYPE_OPAQUE, (guint32)total);
    memcpy(piece + 20, payload, 2048 - 20);
    off = 2048 - 20;
    spice_send(client, SPICE_MSGC_MAIN_AGENT_DATA, piece, 2048);
    used = 1;
    while (off < total) {
        gsize n = MIN(total - off, (gsize)2048);
        while (used >= tokens) {
            /* wait for AGENT_TOKEN, meanwhile the agent reads */
            guint16 t;
            GBytes *b;
            if (agent->in->len > 0) {
                g_byte_array_append(at_agent, agent->in->data, agent->in->len);
                g_byte_array_set_size(agent->in, 0);
            }
            spice_recv(client, &t, &b);
            g_assert_cmpuint(t, ==, SPICE_MSG_MAIN_AGENT_TOKEN);
            used -= rd32(g_bytes_get_data(b, NULL));
            g_bytes_unref(b);
        }
        spice_send(client, SPICE_MSGC_MAIN_AGENT_DATA, payload + off, n);
        used++;
        off += n;
    }
    /* the agent gets chunks of <= 2048 payload bytes carrying exactly the message */
    {
        g_autoptr(GByteArray) msg = g_byte_array_new();
        PeerWait w = {agent, 0};
        gsize want = total + 20, p = 0;

        g_byte_array_append(at_agent, agent->in->data, agent->in->len);
        g_byte_array_set_size(agent->in, 0);
        while (TRUE) {
            /* parse what we have */
            while (at_agent->len - p >= 8) {
                guint32 size = rd32(at_agent->data + p + 4);
                g_assert_cmpuint(rd32(at_agent->data + p), ==, 1);
                g_assert_cmpuint(size, <=, 2048);
                if (at_agent->len - p < 8 + size)
                    break;
                g_byte_array_append(msg, at_agent->data + p + 8, size);
                p += 8 + size;
            }
            if (msg->len >= want)
                break;
            w.n = 1;
            g_assert_true(vmc_test_wait(f->ctx, peer_has, &w, WAIT_MS));
            g_byte_array_append(at_agent, agent->in->data, agent->in->len);
            g_byte_array_set_size(agent->in, 0);
        }
        g_assert_cmpuint(msg->len, ==, want);
        g_assert_cmpmem(msg->data + 20, total, payload, total);
    }

    /* agent -> client: one 1 MiB chunk (as spice-vdagentd writes), AGENT_DATA <= 2048 */
    {
        guint8 h[8 + 20];
        wr32(h, 1);
        wr32(h + 4, (guint32)(total + 20));
        agent_header(h + 8, TYPE_OPAQUE, (guint32)total);
        peer_send(agent, h, sizeof(h));
        peer_send(agent, payload, total);
    }
    while (at_client->len < total + 20) {
        guint16 t;
        GBytes *b;
        spice_recv(client, &t, &b);
        if (t == SPICE_MSG_MAIN_AGENT_TOKEN) {
            g_bytes_unref(b);
            continue;
        }
        g_assert_cmpuint(t, ==, SPICE_MSG_MAIN_AGENT_DATA);
        g_assert_cmpuint(g_bytes_get_size(b), <=, 2048);
        g_byte_array_append(at_client, g_bytes_get_data(b, NULL), (guint)g_bytes_get_size(b));
        g_bytes_unref(b);
    }
    g_assert_cmpuint(at_client->len, ==, total + 20);
    g_assert_cmpmem(at_client->data + 20, total, payload, total);
    peer_free(client);
    peer_free(agent);
}

/* ---- push guest ---- */

typedef struct {
    GByteArray *to_guest;
} Vmm;

static gsize
vmm_write(gpointer user_data, const guint8 *data, gsize len)
{
    Vmm *v = user_data;
    g_byte_array_append(v->to_guest, data, (guint)len);
    return len;
}

static void
vmm_space(gpointer user_data)
{
}

static gboolean
vmm_has(gpointer data)
{
    return ((Vmm *)data)->to_guest->len >= 8 + 24;
}

static void
test_push_guest(F *f, gconstpointer data)
{
    Vmm vmm = {g_byte_array_new()};
    Peer *client;
    guint32 connected;
    guint8 chunk[8 + 25];
    guint8 msg[24];
    g_autoptr(GBytes) d = NULL;

    start_server(f, NULL, 1, "push");
    g_assert_cmpstr(vmc_server_get_guest_description(f->srv), ==, "push");
    vmc_server_guest_push_set_funcs(f->srv, vmm_write, vmm_space, &vmm);
    vmc_server_guest_push_open(f->srv, TRUE);
    g_assert_true(vmc_test_wait(f->ctx, agent_connected_cond, f, WAIT_MS));
    client = new_client(f);
    spice_connect(client, "pw", &connected, NULL);
    g_assert_cmpuint(connected, ==, 1);
    spice_send_u32(client, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF);
    spice_sync(client); /* agent data before AGENT_START would be dropped */

    /* guest -> client */
    wr32(chunk, 1);
    wr32(chunk + 4, 25);
    agent_header(chunk + 8, TYPE_OPAQUE, 5);
    memcpy(chunk + 28, "vmm!!", 5);
    g_assert_cmpuint(vmc_server_guest_push_bytes(f->srv, chunk, sizeof(chunk)), ==,
                     sizeof(chunk));
    d = spice_expect(client, SPICE_MSG_MAIN_AGENT_DATA);
    g_assert_cmpmem(g_bytes_get_data(d, NULL), g_bytes_get_size(d), chunk + 8, 25);

    /* client -> guest through the write function */
    agent_header(msg, VD_AGENT_MAX_CLIPBOARD, 4);
    wr32(msg + 20, 99);
    spice_send(client, SPICE_MSGC_MAIN_AGENT_DATA, msg, sizeof(msg));
    g_assert_true(vmc_test_wait(f->ctx, vmm_has, &vmm, WAIT_MS));
    g_assert_cmpuint(rd32(vmm.to_guest->data), ==, 1);
    g_assert_cmpmem(vmm.to_guest->data + 8, 24, msg, 24);

    vmc_server_guest_push_open(f->srv, FALSE);
    g_clear_pointer(&d, g_bytes_unref);
    d = spice_expect(client, SPICE_MSG_MAIN_AGENT_DISCONNECTED);
    peer_free(client);
    g_byte_array_unref(vmm.to_guest);
}

static void
test_record(F *f, gconstpointer data)
{
    g_autofree char *trace = g_build_filename(f->dir, "trace.jsonl", NULL);
    g_autofree char *g = g_strdup_printf("unix:%s", f->guest_path);
    g_autofree char *text = NULL;
    Peer *agent, *client;
    guint8 msg[24];
    guint32 port;
    g_autoptr(GBytes) chunk = NULL;

    f->srv = vmc_server_new(f->ctx);
    vmc_server_set_event_func(f->srv, on_event, f);
    vmc_server_add_listen(f->srv, "127.0.0.1:0", NULL);
    vmc_server_set_guest(f->srv, g, NULL);
    vmc_server_set_ticketing(f->srv, FALSE);
    g_assert_true(vmc_server_set_record(f->srv, trace, NULL));
    g_assert_true(vmc_server_start(f->srv, NULL));
    agent = new_agent(f);
    client = new_client(f);
    spice_connect(client, "", NULL, NULL);
    spice_send_u32(client, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF);
    agent_header(msg, VD_AGENT_MAX_CLIPBOARD, 4);
    spice_send(client, SPICE_MSGC_MAIN_AGENT_DATA, msg, sizeof(msg));
    agent_recv_chunk(agent, &port, &chunk);
    peer_free(client);
    peer_free(agent);
    wait_count(f, &f->n_agent_disconnected, 1);
    g_clear_pointer(&f->srv, vmc_server_free);
    g_assert_true(g_file_get_contents(trace, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "client-agent"));
    g_assert_nonnull(strstr(text, "MAX_CLIPBOARD"));
    g_assert_nonnull(strstr(text, "\"AGENT_START\""));
    g_assert_nonnull(strstr(text, "\"INIT\""));
    g_unlink(trace);
}

static void
test_link_time(F *f, gconstpointer data)
{
    const int rounds = 20;
    gint64 total = 0;

    start_server(f, NULL, 1, NULL);
    for (int i = 0; i < rounds; i++) {
        Peer *c;
        gint64 t0;

        /* keys are made in the background; wait for a full pool so each link
         * measures the normal case, not a burst */
        g_assert_true(vmc_server_fill_key_pool(f->srv, NULL));
        t0 = g_get_monotonic_time();
        c = new_client(f);
        spice_connect(c, "pw", NULL, NULL);
        total += g_get_monotonic_time() - t0;
        peer_free(c);
    }
    g_test_message("link + ticket + INIT over TCP loopback (client included): %.3f ms",
                   total / 1000.0 / rounds);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("VmcServer over loopback sockets: link, ticket, agent traffic both ways");

#define ADD(path, fn) g_test_add(path, F, NULL, setup, fn, teardown)
    ADD("/runtime/link-and-agent", test_link_and_agent);
    ADD("/runtime/agent-reconnect", test_agent_reconnect);
    ADD("/runtime/client-replaced", test_client_replaced);
    ADD("/runtime/max-clients", test_max_clients);
    ADD("/runtime/link-storm", test_link_storm);
    ADD("/runtime/bad-links", test_bad_links);
    ADD("/runtime/unix-listen", test_unix_listen);
    ADD("/runtime/keepalive-tcp", test_keepalive_tcp);
    ADD("/runtime/fd-handover", test_fd_handover);
    ADD("/runtime/busy", test_busy_port);
    ADD("/runtime/bulk", test_bulk);
    ADD("/runtime/push-guest", test_push_guest);
    ADD("/runtime/record", test_record);
    ADD("/runtime/link-time", test_link_time);
#undef ADD
    return g_test_run();
}
