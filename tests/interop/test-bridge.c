/* test-bridge.c — VmcSpiceHost and VmcSpiceBridge in-process, with a raw socket as
 * the guest: option errors, listen addresses, char-device attach/detach as the guest
 * opens and closes, recovery after a guest protocol error (no remove_interface
 * assertion), and the traffic tap on guest chunks. Clients are covered by the interop
 * suite (spice-gtk); here libspice-server reads the guest side with no client (it
 * discards), which is enough to watch the port side.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/sockios.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "protocol/vmc-agent.h"
#include "server/vmc-bridge.h"

#define WAIT_US (10 * G_USEC_PER_SEC)

typedef struct {
    GMainContext *ctx;
    char *dir;
    char *guest;
    VmcServerOptions opts;
} Fixture;

/* libspice-server reports guest protocol errors with g_warning ("invalid port"): that
 * is the library under test's own logging, not ours. */
static gboolean allow_spice_warnings(const gchar *domain, GLogLevelFlags level,
                                     const gchar *message, gpointer user_data)
{
    return !(domain != NULL && strcmp(domain, "Spice") == 0 &&
             (level & G_LOG_LEVEL_MASK) == G_LOG_LEVEL_WARNING);
}

static void spice_log_handler(const gchar *domain, GLogLevelFlags level, const gchar *message,
                              gpointer user_data)
{
    if ((level & G_LOG_LEVEL_MASK) == G_LOG_LEVEL_WARNING) {
        g_test_message("libspice-server warning: %s", message);
        return;
    }
    g_log_default_handler(domain, level, message, user_data);
}

static void fixture_setup(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *sock = NULL;

    fx->ctx = g_main_context_new();
    g_main_context_push_thread_default(fx->ctx);
    fx->dir = g_dir_make_tmp("vmc-bridge-XXXXXX", &error);
    g_assert_no_error(error);
    sock = g_build_filename(fx->dir, "guest.sock", NULL);
    fx->guest = g_strdup_printf("unix:%s", sock);
    fx->opts.backend = VMC_BACKEND_SPICE_SERVER;
    fx->opts.listen = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(fx->opts.listen, g_strdup("127.0.0.1:0"));
    fx->opts.guest = fx->guest;
    fx->opts.password = (char *) "pw";
    fx->opts.agent_window = 10;
    fx->opts.copy_paste = TRUE;
    fx->opts.file_xfer = TRUE;
    fx->opts.max_clients = 1;
    g_test_log_set_fatal_handler(allow_spice_warnings, NULL);
    g_log_set_handler("Spice", G_LOG_LEVEL_WARNING | G_LOG_FLAG_FATAL, spice_log_handler, NULL);
}

static void fixture_teardown(Fixture *fx, gconstpointer data)
{
    g_autoptr(GDir) d = g_dir_open(fx->dir, 0, NULL);
    const char *n;

    while (g_main_context_iteration(fx->ctx, FALSE)) {
    }
    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(fx->dir, n, NULL);

        g_unlink(p);
    }
    g_rmdir(fx->dir);
    g_ptr_array_unref(fx->opts.listen);
    g_free(fx->guest);
    g_free(fx->dir);
    g_main_context_pop_thread_default(fx->ctx);
    g_main_context_unref(fx->ctx);
}

typedef gboolean (*Cond)(gpointer data);

static gboolean on_tick(gpointer data)
{
    return G_SOURCE_REMOVE;
}

static gboolean wait_until(Fixture *fx, Cond cond, gpointer data)
{
    gint64 end = g_get_monotonic_time() + WAIT_US;

    while (!cond(data)) {
        if (g_get_monotonic_time() > end) {
            return FALSE;
        }
        /* Our own sockets are not on the context: bound each wait to 10 ms. */
        if (!g_main_context_iteration(fx->ctx, FALSE)) {
            GSource *t = g_timeout_source_new(10);

            g_source_set_callback(t, on_tick, NULL, NULL);
            g_source_attach(t, fx->ctx);
            g_main_context_iteration(fx->ctx, TRUE);
            g_source_destroy(t);
            g_source_unref(t);
        }
    }
    return TRUE;
}

static void expect_error(Fixture *fx, gint code, const char *needle)
{
    g_autoptr(GError) error = NULL;
    VmcSpiceHost *h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);

    g_assert_null(h);
    g_assert_error(error, G_IO_ERROR, code);
    g_assert_nonnull(strstr(error->message, needle));
}

static void test_option_errors(Fixture *fx, gconstpointer data)
{
    fx->opts.max_clients = 2;
    expect_error(fx, G_IO_ERROR_NOT_SUPPORTED, "--max-clients");
    fx->opts.max_clients = 1;

    fx->opts.agent_window = 64;
    expect_error(fx, G_IO_ERROR_NOT_SUPPORTED, "--agent-window");
    fx->opts.agent_window = 10;

    g_ptr_array_add(fx->opts.listen, g_strdup("127.0.0.1:0"));
    expect_error(fx, G_IO_ERROR_NOT_SUPPORTED, "one --listen");
    g_ptr_array_remove_index(fx->opts.listen, 1);

    fx->opts.password = NULL;
    expect_error(fx, G_IO_ERROR_INVALID_ARGUMENT, "password");
    fx->opts.password = (char *) "0123456789012345678901234567890123456789012345678901234567890";
    expect_error(fx, G_IO_ERROR_NOT_SUPPORTED, "60 bytes");
    fx->opts.password = (char *) "pw";

    g_free(g_ptr_array_index(fx->opts.listen, 0));
    g_ptr_array_index(fx->opts.listen, 0) = g_strdup("no-port-here");
    expect_error(fx, G_IO_ERROR_INVALID_ARGUMENT, "no-port-here");

    fx->opts.guest = (char *) "bogus:spec";
    g_free(g_ptr_array_index(fx->opts.listen, 0));
    g_ptr_array_index(fx->opts.listen, 0) = g_strdup("127.0.0.1:0");
    {
        g_autoptr(GError) error = NULL;
        VmcSpiceHost *h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);

        g_assert_null(h);
        g_assert_nonnull(error);
    }
}

static void test_busy_port(Fixture *fx, gconstpointer data)
{
    g_autoptr(GSocket) s = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                        G_SOCKET_PROTOCOL_TCP, NULL);
    g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) a = g_inet_socket_address_new(lo, 0);
    g_autoptr(GSocketAddress) bound = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *spec = NULL;
    VmcSpiceHost *h;

    g_assert_true(g_socket_bind(s, a, TRUE, NULL));
    g_assert_true(g_socket_listen(s, NULL));
    bound = g_socket_get_local_address(s, NULL);
    spec = g_strdup_printf("127.0.0.1:%u",
                           g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound)));
    g_free(g_ptr_array_index(fx->opts.listen, 0));
    g_ptr_array_index(fx->opts.listen, 0) = g_strdup(spec);
    h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);
    g_assert_null(h);
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE);
    g_assert_nonnull(strstr(error->message, spec));
}

static int connect_unix(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(strlen(path), <, sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, strlen(path) + 1);
    g_assert_cmpint(connect(fd, (struct sockaddr *) &sun, sizeof(sun)), ==, 0);
    return fd;
}

static gboolean cond_attached(gpointer data)
{
    return vmc_spice_bridge_is_attached(data);
}

static gboolean cond_detached(gpointer data)
{
    return !vmc_spice_bridge_is_attached(data);
}

static void test_listen_tcp(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmcSpiceHost) h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);
    g_autoptr(GSocketClient) c = g_socket_client_new();
    g_autoptr(GSocketConnection) conn = NULL;
    const char *desc;

    g_assert_no_error(error);
    desc = vmc_spice_host_describe(h);
    g_assert_true(g_str_has_prefix(desc, "127.0.0.1:"));
    g_assert_cmpstr(desc, !=, "127.0.0.1:0");
    conn = g_socket_client_connect_to_host(c, desc, 0, NULL, &error);
    g_assert_no_error(error);
    g_assert_nonnull(vmc_spice_host_get_server(h));
    g_assert_nonnull(vmc_spice_host_get_guest_port(h));

    /* one host per process */
    {
        g_autoptr(GError) e2 = NULL;

        g_assert_null(vmc_spice_host_new(&fx->opts, fx->ctx, &e2));
        g_assert_error(e2, G_IO_ERROR, G_IO_ERROR_EXISTS);
    }
}

static void test_listen_unix(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *path = g_build_filename(fx->dir, "spice.sock", NULL);
    g_autofree char *spec = g_strdup_printf("unix:%s", path);
    VmcSpiceHost *h;
    int fd;

    g_free(g_ptr_array_index(fx->opts.listen, 0));
    g_ptr_array_index(fx->opts.listen, 0) = g_strdup(spec);
    h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(vmc_spice_host_describe(h), ==, spec);
    fd = connect_unix(path);
    close(fd);
    vmc_spice_host_free(h);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));

    /* a stale socket file (nobody listening) is replaced */
    {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        memcpy(sun.sun_path, path, strlen(path) + 1);
        g_assert_cmpint(bind(s, (struct sockaddr *) &sun, sizeof(sun)), ==, 0);
        close(s);
    }
    h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);
    g_assert_no_error(error);
    vmc_spice_host_free(h);
}

static void test_attach_detach(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmcSpiceHost) h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);
    VmcSpiceBridge *b;
    int fd;

    g_assert_no_error(error);
    b = vmc_spice_host_get_bridge(h);
    g_assert_false(vmc_spice_bridge_is_attached(b));
    for (int round = 0; round < 3; round++) {
        fd = connect_unix(fx->guest + 5);
        g_assert_true(wait_until(fx, cond_attached, b));
        close(fd);
        g_assert_true(wait_until(fx, cond_detached, b));
    }
}

static gboolean cond_fd_eof(gpointer data)
{
    guint8 buf[64];
    ssize_t n = recv(GPOINTER_TO_INT(data), buf, sizeof(buf), MSG_DONTWAIT);

    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void test_protocol_error(Fixture *fx, gconstpointer data)
{
    /* chunk {port 3, size 20} + an agent header */
    static const guint8 bad[] = { 3, 0, 0, 0, 20, 0, 0, 0,
                                  1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(VmcSpiceHost) h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);
    VmcSpiceBridge *b;

    g_assert_no_error(error);
    b = vmc_spice_host_get_bridge(h);
    for (int round = 0; round < 2; round++) {
        int fd = connect_unix(fx->guest + 5);

        g_assert_true(wait_until(fx, cond_attached, b));
        g_assert_cmpint(write(fd, bad, sizeof(bad)), ==, (ssize_t) sizeof(bad));
        /* libspice-server gives the agent up; the bridge drops the connection and
         * never calls remove_interface for it (that would be a CRITICAL: fatal here). */
        g_assert_true(wait_until(fx, cond_fd_eof, GINT_TO_POINTER(fd)));
        g_assert_true(wait_until(fx, cond_detached, b));
        close(fd);
    }
    /* and a well-behaved agent attaches again */
    {
        int fd = connect_unix(fx->guest + 5);

        g_assert_true(wait_until(fx, cond_attached, b));
        close(fd);
        g_assert_true(wait_until(fx, cond_detached, b));
    }
}

typedef struct {
    VmcMuxDirection dir;
    guint32 client;
    guint32 port;
    GByteArray *bytes;
    guint flags;
} TapEvent;

typedef struct {
    GPtrArray *events;
    gsize total;
    gsize want;
} Tap;

static void tap_event_free(gpointer p)
{
    TapEvent *e = p;

    g_byte_array_unref(e->bytes);
    g_free(e);
}

static void tap_func(gpointer user_data, VmcMuxDirection dir, guint32 client_id, guint32 port,
                     const guint8 *data, gsize len, guint span_flags)
{
    Tap *t = user_data;
    TapEvent *e = g_new0(TapEvent, 1);

    e->dir = dir;
    e->client = client_id;
    e->port = port;
    e->bytes = g_byte_array_new();
    g_byte_array_append(e->bytes, data, (guint) len);
    e->flags = span_flags;
    g_ptr_array_add(t->events, e);
    t->total += len;
}

static gboolean cond_tap_total(gpointer data)
{
    Tap *t = data;

    return t->total >= t->want;
}

static gsize put_chunk(guint8 *out, guint32 port, const guint8 *payload, gsize len)
{
    guint32 p = GUINT32_TO_LE(port);
    guint32 s = GUINT32_TO_LE((guint32) len);

    memcpy(out, &p, 4);
    memcpy(out + 4, &s, 4);
    memcpy(out + 8, payload, len);
    return 8 + len;
}

static gsize put_msg(guint8 *out, guint32 type, const guint8 *payload, guint32 len)
{
    VmcAgentHeader h = { VMC_AGENT_PROTOCOL, type, 0, len };

    vmc_agent_header_encode(&h, out);
    memcpy(out + VMC_AGENT_HEADER_SIZE, payload, len);
    return VMC_AGENT_HEADER_SIZE + len;
}

/* Guest chunks come back through the tap as agent-message spans: a port-1 message
 * split over two chunks is AGENT_CLIENT (START, then END), a port-2 message is
 * AGENT_SERVER; bytes are exactly what the guest sent. */
static void test_tap(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmcSpiceHost) h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);
    g_autofree guint8 *msg1 = g_malloc(VMC_AGENT_HEADER_SIZE + 4000);
    g_autofree guint8 *wire = g_malloc(16384);
    guint8 caps[8] = { 0, 0, 0, 0, 0xe7, 0x8d, 0x03, 0x00 };
    guint8 msg2[VMC_AGENT_HEADER_SIZE + 8];
    guint8 payload[4000 - 8];
    Tap t = { g_ptr_array_new_with_free_func(tap_event_free), 0, 0 };
    gsize off = 0;
    gsize len1;
    int fd;

    g_assert_no_error(error);
    for (gsize i = 0; i < sizeof(payload); i++) {
        payload[i] = (guint8) (i * 7);
    }
    vmc_spice_bridge_set_tap_func(vmc_spice_host_get_bridge(h), tap_func, &t);
    /* CLIPBOARD-sized message of 3992 bytes, port 1, in chunks of 1000 and the rest */
    len1 = put_msg(msg1, VD_AGENT_CLIPBOARD, payload, sizeof(payload));
    off += put_chunk(wire + off, 1, msg1, 1000);
    off += put_chunk(wire + off, 1, msg1 + 1000, len1 - 1000);
    /* caps on port 2 */
    put_msg(msg2, VD_AGENT_ANNOUNCE_CAPABILITIES, caps, sizeof(caps));
    off += put_chunk(wire + off, 2, msg2, sizeof(msg2));

    t.want = len1 + sizeof(msg2);

    fd = connect_unix(fx->guest + 5);
    g_assert_true(wait_until(fx, cond_attached, vmc_spice_host_get_bridge(h)));
    g_assert_cmpint(write(fd, wire, off), ==, (ssize_t) off);
    g_assert_true(wait_until(fx, cond_tap_total, &t));
    close(fd);

    {
        g_autoptr(GByteArray) p1 = g_byte_array_new();
        g_autoptr(GByteArray) p2 = g_byte_array_new();
        guint starts1 = 0;
        guint ends1 = 0;

        for (guint i = 0; i < t.events->len; i++) {
            TapEvent *e = g_ptr_array_index(t.events, i);

            g_assert_cmpuint(e->client, ==, 0);
            if (e->port == 1) {
                g_assert_cmpint(e->dir, ==, VMC_MUX_DIR_AGENT_CLIENT);
                g_byte_array_append(p1, e->bytes->data, e->bytes->len);
                starts1 += !!(e->flags & VMC_AGENT_SPAN_START);
                ends1 += !!(e->flags & VMC_AGENT_SPAN_END);
            } else {
                g_assert_cmpuint(e->port, ==, 2);
                g_assert_cmpint(e->dir, ==, VMC_MUX_DIR_AGENT_SERVER);
                g_byte_array_append(p2, e->bytes->data, e->bytes->len);
            }
        }
        g_assert_cmpuint(starts1, ==, 1);
        g_assert_cmpuint(ends1, ==, 1);
        g_assert_cmpmem(p1->data, p1->len, msg1, len1);
        g_assert_cmpmem(p2->data, p2->len, msg2, sizeof(msg2));
    }
    vmc_spice_bridge_set_tap_func(vmc_spice_host_get_bridge(h), NULL, NULL);
    g_ptr_array_unref(t.events);
}

static gboolean cond_fd_sent(gpointer data)
{
    int unread = -1;

    return ioctl(GPOINTER_TO_INT(data), SIOCOUTQ, &unread) == 0 && unread == 0;
}

/* The guest writes one byte at a time and each byte is taken before the next: the chunk
 * header reaches libspice-server in short reads. It ends its read pass after a short
 * header read without asking again, so the bridge must keep read interest armed while
 * its buffer is empty, or the message never completes. */
static void test_split_header(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmcSpiceHost) h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);
    guint8 payload[30];
    guint8 msg[VMC_AGENT_HEADER_SIZE + sizeof(payload)];
    guint8 wire[8 + sizeof(msg)];
    Tap t = { g_ptr_array_new_with_free_func(tap_event_free), 0, sizeof(msg) };
    gsize len;
    int fd;

    g_assert_no_error(error);
    for (guint i = 0; i < sizeof(payload); i++) {
        payload[i] = (guint8) i;
    }
    len = put_msg(msg, 105, payload, sizeof(payload));
    len = put_chunk(wire, 1, msg, len);
    vmc_spice_bridge_set_tap_func(vmc_spice_host_get_bridge(h), tap_func, &t);
    fd = connect_unix(fx->guest + 5);
    g_assert_true(wait_until(fx, cond_attached, vmc_spice_host_get_bridge(h)));
    for (gsize i = 0; i < len; i++) {
        g_assert_cmpint(write(fd, wire + i, 1), ==, 1);
        g_assert_true(wait_until(fx, cond_fd_sent, GINT_TO_POINTER(fd)));
    }
    g_assert_true(wait_until(fx, cond_tap_total, &t));
    close(fd);
    vmc_spice_bridge_set_tap_func(vmc_spice_host_get_bridge(h), NULL, NULL);
    g_ptr_array_unref(t.events);
}

/* The "push" backend (a VMM with its own virtio-serial model): open, bytes pushed in
 * pieces reach libspice-server, close detaches. */
static void test_push_backend(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmcSpiceHost) h = NULL;
    guint8 payload[3000];
    guint8 msg[VMC_AGENT_HEADER_SIZE + sizeof(payload)];
    guint8 wire[8 + sizeof(msg)];
    Tap t = { g_ptr_array_new_with_free_func(tap_event_free), 0, sizeof(msg) };
    VmcGuestPort *port;
    VmcSpiceBridge *b;
    gsize len;
    gsize off = 0;

    fx->opts.guest = (char *) "push";
    h = vmc_spice_host_new(&fx->opts, fx->ctx, &error);
    g_assert_no_error(error);
    port = vmc_spice_host_get_guest_port(h);
    b = vmc_spice_host_get_bridge(h);
    for (guint i = 0; i < sizeof(payload); i++) {
        payload[i] = (guint8) (i * 13);
    }
    len = put_msg(msg, VD_AGENT_CLIPBOARD, payload, sizeof(payload));
    len = put_chunk(wire, 1, msg, len);
    vmc_spice_bridge_set_tap_func(b, tap_func, &t);

    g_assert_false(vmc_spice_bridge_is_attached(b));
    vmc_guest_port_push_open(port, TRUE);
    g_assert_true(wait_until(fx, cond_attached, b));
    while (off < len) {
        gsize piece = MIN((gsize) 700, len - off);

        off += vmc_guest_port_push_bytes(port, wire + off, piece);
        g_main_context_iteration(fx->ctx, FALSE);
    }
    g_assert_true(wait_until(fx, cond_tap_total, &t));
    vmc_guest_port_push_open(port, FALSE);
    g_assert_true(wait_until(fx, cond_detached, b));
    vmc_spice_bridge_set_tap_func(b, NULL, NULL);
    g_ptr_array_unref(t.events);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("libspice-server host and vdagent bridge, with a raw guest socket");

    g_test_add("/bridge/options/errors", Fixture, NULL, fixture_setup, test_option_errors,
               fixture_teardown);
    g_test_add("/bridge/listen/busy", Fixture, NULL, fixture_setup, test_busy_port,
               fixture_teardown);
    g_test_add("/bridge/listen/tcp", Fixture, NULL, fixture_setup, test_listen_tcp,
               fixture_teardown);
    g_test_add("/bridge/listen/unix", Fixture, NULL, fixture_setup, test_listen_unix,
               fixture_teardown);
    g_test_add("/bridge/guest/attach-detach", Fixture, NULL, fixture_setup, test_attach_detach,
               fixture_teardown);
    g_test_add("/bridge/guest/protocol-error", Fixture, NULL, fixture_setup,
               test_protocol_error, fixture_teardown);
    g_test_add("/bridge/guest/tap", Fixture, NULL, fixture_setup, test_tap, fixture_teardown);
    g_test_add("/bridge/guest/split-header", Fixture, NULL, fixture_setup, test_split_header,
               fixture_teardown);
    g_test_add("/bridge/guest/push", Fixture, NULL, fixture_setup, test_push_backend,
               fixture_teardown);
    return g_test_run();
}
