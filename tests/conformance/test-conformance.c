/* test-conformance.c — black-box conformance of vmcmux-server against the
 * observable behaviour of libspice-server 0.15.1 (agent-protocol.md §9.1).
 *
 * Every case starts its own server process (private directory, UNIX socket or a free
 * TCP port) and talks to it only through sockets: the main channel with libvmc-client
 * and the guest port with a scripted agent. Cases run once per backend
 * (`--backend native` and `--backend spice-server`); where the native backend differs
 * on purpose, the case carries both expectations (expect_native / expect_reference)
 * and asserts the one for the backend at hand, so the table documents every
 * divergence (`test-conformance --markdown` prints it; docs/conformance.md). Hostile
 * inputs that crash or hang libspice-server run on the native backend only, and must
 * leave it healthy: a new client and the agent still work afterwards.
 *
 * "Nothing happened" is never checked by sleeping: a barrier message whose answer
 * must come first proves the server processed everything sent before it
 * (ATTACH_CHANNELS -> CHANNELS_LIST on the main channel, a marker agent message on
 * the agent path).
 */
#include <string.h>
#include <glib.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <spice/enums.h>
#include <spice/protocol.h>
#include <spice/vd_agent.h>

#include "protocol/vmc-agent.h"
#include "protocol/vmc-chunk.h"
#include "protocol/vmc-header.h"
#include "protocol/vmc-link.h"
#include "protocol/vmc-main.h"
#include "tests/client/vmc-test-harness.h"

#define T VMC_TEST_TIMEOUT
#define MARKER_TYPE 0x7e57u /* an agent message type nobody knows: forwarded as is */

enum { B_NATIVE = 1 << 0, B_REFERENCE = 1 << 1, B_BOTH = B_NATIVE | B_REFERENCE };

typedef struct _Fx Fx;

typedef struct {
    const char *name;
    const char *refs;             /* agent-protocol.md §9.1 items, security.md ids */
    guint backends;
    gboolean tcp;
    const char *const *args;      /* extra vmcmux-server arguments */
    const char *expect_native;
    const char *expect_reference; /* NULL: as native */
    void (*run)(Fx *fx);
} ConfCase;

struct _Fx {
    const ConfCase *cc;
    const char *backend;
    gboolean native;
    GMainContext *ctx;
    VmcTestServer *srv;
    guint32 marker;
    const char *password; /* from the case's --password, for the default clients */
};

/* ---- checks that show the server log on failure ---- */

static void
dump(Fx *fx)
{
    if (!fx->srv)
        return;
    g_autofree char *tail = vmc_test_server_log_tail(fx->srv, 3000);
    g_autofree char *st = vmc_test_server_describe_status(fx->srv);
    g_test_message("server (%s) is %s; log tail:", fx->backend, st);
    g_auto(GStrv) lines = g_strsplit(tail, "\n", -1);
    for (guint i = 0; lines[i]; i++)
        g_test_message("  %s", lines[i]);
}

#define CHECK(fx, cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            dump(fx);                                                                              \
            g_assertion_message_expr(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, #cond);          \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(fx, a, b)                                                                         \
    do {                                                                                           \
        guint64 a_ = (guint64)(a), b_ = (guint64)(b);                                              \
        if (a_ != b_) {                                                                            \
            dump(fx);                                                                              \
            g_assertion_message_cmpnum(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC,                \
                                       #a " == " #b, (long double)a_, "==", (long double)b_, 'i'); \
        }                                                                                          \
    } while (0)

/* Native value or reference value, by backend. */
#define BK(fx, native_value, reference_value) ((fx)->native ? (native_value) : (reference_value))

/* ---- building blocks ---- */

static VmcTestClient *
client_cfg(Fx *fx, const VmcClientConfig *cfg)
{
    g_autoptr(GError) error = NULL;
    VmcTestClient *tc = vmc_test_client_new(fx->ctx, fx->srv->listen, cfg, &error);
    if (!tc)
        g_test_message("connect: %s", error->message);
    CHECK(fx, tc != NULL);
    return tc;
}

/* A linked client with the default config (AGENT_START automatic). */
static VmcTestClient *
client(Fx *fx)
{
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.password = fx->password;
    VmcTestClient *tc = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(tc, T));
    return tc;
}

static VmcTestClient *
client_manual(Fx *fx)
{
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.auto_agent_start = FALSE;
    cfg.password = fx->password;
    VmcTestClient *tc = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(tc, T));
    return tc;
}

static VmcTestAgent *
agent_quiet(Fx *fx)
{
    g_autoptr(GError) error = NULL;
    VmcTestAgent *ta = vmc_test_agent_new(fx->ctx, fx->srv->guest, &error);
    if (!ta)
        g_test_message("agent: %s", error->message);
    CHECK(fx, ta != NULL);
    vmc_agent_peer_set_record_chunks(ta->peer, TRUE);
    return ta;
}

/* An agent that announces itself like spice-vdagentd when the port opens. */
static VmcTestAgent *
agent(Fx *fx)
{
    VmcTestAgent *ta = agent_quiet(fx);
    vmc_agent_peer_announce_caps(ta->peer, TRUE, VMC_AGENT_PEER_DEFAULT_CAPS);
    CHECK(fx, vmc_test_agent_flush(ta, T));
    return ta;
}

static void wait_started(Fx *fx, VmcTestClient *tc);
static VmcTestClient *client(Fx *fx);

/* An agent the server has surely attached: a throw-away client saw it, and its
 * CLIENT_DISCONNECTED has been consumed. */
static VmcTestAgent *
agent_attached(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    vmc_test_client_free(tc);
    VmcAgentPeerEvent ev;
    CHECK(fx, vmc_test_agent_wait_msg(ta, 2, VD_AGENT_CLIENT_DISCONNECTED, &ev, T));
    vmc_agent_peer_event_clear(&ev);
    return ta;
}

/* Waits until the client sees the agent and has started it. */
static void
wait_started(Fx *fx, VmcTestClient *tc)
{
    CHECK(fx, vmc_test_client_wait_agent_started(tc, T));
}

/* Client barrier: ATTACH_CHANNELS, then everything up to CHANNELS_LIST. Returns the
 * main-channel message types that came before it (agent messages included). */
static GArray *
client_barrier(Fx *fx, VmcTestClient *tc)
{
    GArray *before = g_array_new(FALSE, FALSE, sizeof(guint16));
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    for (;;) {
        VmcClientEvent ev;
        gboolean got = vmc_test_client_next(tc, &ev, T);
        CHECK(fx, got);
        if (ev.type == VMC_CLIENT_EV_MESSAGE) {
            if (ev.msg_type == SPICE_MSG_MAIN_CHANNELS_LIST) {
                vmc_client_event_clear(&ev);
                break;
            }
            g_array_append_val(before, ev.msg_type);
        }
        vmc_client_event_clear(&ev);
    }
    return before;
}

static guint
count_type(GArray *types, guint16 type)
{
    guint n = 0;
    for (guint i = 0; i < types->len; i++)
        n += g_array_index(types, guint16, i) == type;
    return n;
}

/* Agent barrier: the client sends a marker message; returns every agent event up to
 * it (the marker itself excluded) as VmcAgentPeerEvent*. */
static void
peer_event_free(gpointer p)
{
    vmc_agent_peer_event_clear(p);
    g_free(p);
}

static GPtrArray *
agent_barrier(Fx *fx, VmcTestClient *tc, VmcTestAgent *ta)
{
    guint8 m[4];
    guint32 id = ++fx->marker;
    vmc_put_u32le(m, id);
    vmc_client_send_agent_message(tc->c, MARKER_TYPE, 0, m, sizeof(m));
    GPtrArray *before = g_ptr_array_new_with_free_func(peer_event_free);
    for (;;) {
        VmcAgentPeerEvent ev;
        gboolean got = vmc_test_agent_next(ta, &ev, T);
        CHECK(fx, got);
        if (ev.type == VMC_AGENT_PEER_EV_MESSAGE && ev.header.type == MARKER_TYPE &&
            g_bytes_get_size(ev.body) == 4 &&
            vmc_get_u32le(g_bytes_get_data(ev.body, NULL)) == id) {
            vmc_agent_peer_event_clear(&ev);
            break;
        }
        VmcAgentPeerEvent *copy = g_new(VmcAgentPeerEvent, 1);
        *copy = ev;
        g_ptr_array_add(before, copy);
    }
    return before;
}

static guint
count_agent_msgs(GPtrArray *events, guint32 port, guint32 type)
{
    guint n = 0;
    for (guint i = 0; i < events->len; i++) {
        VmcAgentPeerEvent *e = events->pdata[i];
        n += e->type == VMC_AGENT_PEER_EV_MESSAGE && (port == 0 || e->port == port) &&
             (type == G_MAXUINT32 || e->header.type == type);
    }
    return n;
}

/* Agent->client barrier: the agent sends a marker; returns the client's agent
 * messages before it (VmcClientEvent*). */
static void
client_event_free(gpointer p)
{
    vmc_client_event_clear(p);
    g_free(p);
}

static GPtrArray *
to_client_barrier(Fx *fx, VmcTestClient *tc, VmcTestAgent *ta)
{
    guint8 m[4];
    guint32 id = ++fx->marker;
    vmc_put_u32le(m, id);
    vmc_agent_peer_send(ta->peer, 1, MARKER_TYPE, 0, m, sizeof(m));
    GPtrArray *before = g_ptr_array_new_with_free_func(client_event_free);
    for (;;) {
        VmcClientEvent ev;
        gboolean got = vmc_test_client_next(tc, &ev, T);
        CHECK(fx, got);
        if (ev.type == VMC_CLIENT_EV_AGENT_MESSAGE && ev.agent.type == MARKER_TYPE &&
            g_bytes_get_size(ev.body) == 4 &&
            vmc_get_u32le(g_bytes_get_data(ev.body, NULL)) == id) {
            vmc_client_event_clear(&ev);
            break;
        }
        VmcClientEvent *copy = g_new(VmcClientEvent, 1);
        *copy = ev;
        g_ptr_array_add(before, copy);
    }
    return before;
}

static guint
count_client_agent_msgs(GPtrArray *events, guint32 type)
{
    guint n = 0;
    for (guint i = 0; i < events->len; i++) {
        VmcClientEvent *e = events->pdata[i];
        n += e->type == VMC_CLIENT_EV_AGENT_MESSAGE && (type == G_MAXUINT32 || e->agent.type == type);
    }
    return n;
}

static guint
count_client_msgs(GPtrArray *events, guint16 type)
{
    guint n = 0;
    for (guint i = 0; i < events->len; i++) {
        VmcClientEvent *e = events->pdata[i];
        n += e->type == VMC_CLIENT_EV_MESSAGE && e->msg_type == type;
    }
    return n;
}

/* Both directions work: a round trip through the agent path. */
static void
check_agent_path(Fx *fx, VmcTestClient *tc, VmcTestAgent *ta)
{
    g_autoptr(GPtrArray) a = agent_barrier(fx, tc, ta);
    g_autoptr(GPtrArray) b = to_client_barrier(fx, tc, ta);
}

/* After a hostile input: the server runs, a new client links, the agent path works. */
static void
check_healthy(Fx *fx)
{
    CHECK(fx, vmc_test_server_alive(fx->srv));
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    check_agent_path(fx, tc, ta);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
    CHECK(fx, vmc_test_server_alive(fx->srv));
}

/* ---- raw link helpers ---- */

static GSocket *
raw(Fx *fx)
{
    g_autoptr(GError) error = NULL;
    GSocket *s = vmc_test_raw_connect(fx->srv->listen, &error);
    CHECK(fx, s != NULL);
    return s;
}

/* Reads a link reply: header + body. Returns FALSE on EOF before a header. */
static gboolean
read_link_reply(Fx *fx, GSocket *s, VmcLinkHeader *h, VmcLinkReply *r, gsize *got)
{
    guint8 hdr[VMC_LINK_HEADER_SIZE];
    if (!vmc_test_raw_read(s, hdr, sizeof(hdr), T, got))
        return FALSE;
    CHECK_EQ(fx, vmc_link_header_decode(hdr, sizeof(hdr), FALSE, h, NULL), VMC_DECODE_OK);
    CHECK(fx, h->size >= VMC_LINK_REPLY_SIZE && h->size < 65536);
    g_autofree guint8 *body = g_malloc(h->size);
    CHECK(fx, vmc_test_raw_read(s, body, h->size, T, NULL));
    CHECK_EQ(fx, vmc_link_reply_decode(body, h->size, r, NULL), VMC_DECODE_OK);
    return TRUE;
}

/* Sends `link` and expects a link error reply with `error`, then EOF. */
static void
expect_link_error(Fx *fx, const guint8 *link, gsize len, guint32 error)
{
    g_autoptr(GSocket) s = raw(fx);
    VmcLinkHeader h;
    VmcLinkReply r;
    CHECK(fx, vmc_test_raw_send(s, link, len));
    CHECK(fx, read_link_reply(fx, s, &h, &r, NULL));
    CHECK_EQ(fx, h.magic, VMC_LINK_MAGIC);
    CHECK_EQ(fx, h.major_version, 2);
    CHECK_EQ(fx, h.minor_version, 2);
    CHECK_EQ(fx, r.error, error);
    CHECK(fx, vmc_test_raw_wait_eof(s, T, NULL));
}

/* Sends `link` and expects the connection to close without a single byte. */
static void
expect_silent_close(Fx *fx, const guint8 *link, gsize len)
{
    g_autoptr(GSocket) s = raw(fx);
    gsize extra = 0;
    CHECK(fx, vmc_test_raw_send(s, link, len));
    CHECK(fx, vmc_test_raw_wait_eof(s, T, &extra));
    CHECK_EQ(fx, extra, 0);
}

/* A link header announcing `size`, then `body_len` zero bytes. */
static GByteArray *
link_with_size(guint32 size, gsize body_len)
{
    GByteArray *b = g_byte_array_new();
    guint8 hdr[VMC_LINK_HEADER_SIZE];
    VmcLinkHeader h = {VMC_LINK_MAGIC, 2, 2, size};
    vmc_link_header_encode(&h, hdr);
    g_byte_array_append(b, hdr, sizeof(hdr));
    g_autofree guint8 *zeros = g_malloc0(body_len + 1);
    g_byte_array_append(b, zeros, (guint)body_len);
    return b;
}

/* ================================================================================ */
/* Link */

static void
case_link_reply(Fx *fx)
{
    g_autoptr(GSocket) s = raw(fx);
    g_autoptr(GByteArray) link = vmc_test_link_message(VMC_LINK_MAGIC, 2, 2, SPICE_CHANNEL_MAIN, 0,
                                                       0xB, 0xF);
    VmcLinkHeader h;
    VmcLinkReply r;

    CHECK(fx, vmc_test_raw_send(s, link->data, link->len));
    CHECK(fx, read_link_reply(fx, s, &h, &r, NULL));
    CHECK_EQ(fx, h.magic, VMC_LINK_MAGIC);
    CHECK_EQ(fx, h.major_version, 2);
    CHECK_EQ(fx, h.minor_version, 2);
    CHECK_EQ(fx, h.size, 186);
    CHECK_EQ(fx, r.error, 0);
    CHECK_EQ(fx, r.num_common_caps, 1);
    CHECK_EQ(fx, r.num_channel_caps, 1);
    CHECK_EQ(fx, r.caps_offset, 178);
    CHECK_EQ(fx, r.common_caps[0], 0xB);
    /* native: NAME_AND_UUID and AGENT_CONNECTED_TOKENS, no migration */
    CHECK_EQ(fx, r.channel_caps[0], BK(fx, 0x6, 0xF));
    /* a DER SubjectPublicKeyInfo of an RSA-1024 key with e = 65537 */
    const unsigned char *p = r.pub_key;
    EVP_PKEY *key = d2i_PUBKEY(NULL, &p, VMC_TICKET_PUBKEY_BYTES);
    CHECK(fx, key != NULL);
    CHECK_EQ(fx, p - r.pub_key, VMC_TICKET_PUBKEY_BYTES);
    CHECK_EQ(fx, EVP_PKEY_get_base_id(key), EVP_PKEY_RSA);
    CHECK_EQ(fx, EVP_PKEY_get_bits(key), 1024);
    BIGNUM *e = NULL;
    CHECK(fx, EVP_PKEY_get_bn_param(key, "e", &e));
    CHECK_EQ(fx, BN_get_word(e), 65537);
    BN_free(e);
    EVP_PKEY_free(key);
}

static void
case_link_bad_magic(Fx *fx)
{
    g_autoptr(GByteArray) link = vmc_test_link_message(0x51444553 /* "SDQ"+1 */, 2, 2,
                                                       SPICE_CHANNEL_MAIN, 0, 0xB, 0xF);
    expect_link_error(fx, link->data, link->len, SPICE_LINK_ERR_INVALID_MAGIC);
}

static void
case_link_bad_version(Fx *fx)
{
    g_autoptr(GByteArray) v1 = vmc_test_link_message(VMC_LINK_MAGIC, 1, 2, SPICE_CHANNEL_MAIN, 0,
                                                     0xB, 0xF);
    g_autoptr(GByteArray) v3 = vmc_test_link_message(VMC_LINK_MAGIC, 3, 2, SPICE_CHANNEL_MAIN, 0,
                                                     0xB, 0xF);
    g_autoptr(GByteArray) v0 = vmc_test_link_message(VMC_LINK_MAGIC, 0, 2, SPICE_CHANNEL_MAIN, 0,
                                                     0xB, 0xF);
    expect_link_error(fx, v1->data, v1->len, SPICE_LINK_ERR_VERSION_MISMATCH);
    expect_link_error(fx, v3->data, v3->len, SPICE_LINK_ERR_VERSION_MISMATCH);
    expect_silent_close(fx, v0->data, v0->len);
}

static void
case_link_bad_size(Fx *fx)
{
    g_autoptr(GByteArray) s17 = link_with_size(17, 17);
    g_autoptr(GByteArray) s4097 = link_with_size(4097, 0);
    g_autoptr(GByteArray) huge = link_with_size(0xAAAAAAAAu, 0);
    expect_link_error(fx, s17->data, s17->len, SPICE_LINK_ERR_INVALID_DATA);
    expect_link_error(fx, s4097->data, s4097->len, SPICE_LINK_ERR_INVALID_DATA);
    expect_link_error(fx, huge->data, huge->len, SPICE_LINK_ERR_INVALID_DATA);
}

static void
case_link_bad_caps(Fx *fx)
{
    g_autoptr(GByteArray) link = vmc_test_link_message(VMC_LINK_MAGIC, 2, 2, SPICE_CHANNEL_MAIN, 0,
                                                       0xB, 0xF);
    /* caps_offset (bytes 14..17 of SpiceLinkMess) = 10 */
    vmc_put_u32le(link->data + VMC_LINK_HEADER_SIZE + 14, 10);
    expect_link_error(fx, link->data, link->len, SPICE_LINK_ERR_INVALID_DATA);
    /* 1025 common caps words */
    g_autoptr(GByteArray) many = vmc_test_link_message(VMC_LINK_MAGIC, 2, 2, SPICE_CHANNEL_MAIN, 0,
                                                       0xB, 0xF);
    vmc_put_u32le(many->data + VMC_LINK_HEADER_SIZE + 6, 1025);
    expect_link_error(fx, many->data, many->len, SPICE_LINK_ERR_INVALID_DATA);
    /* 0x80000000 + 0x80000000 caps: the sum overflows 32 bits */
    g_autoptr(GByteArray) wrap = vmc_test_link_message(VMC_LINK_MAGIC, 2, 2, SPICE_CHANNEL_MAIN, 0,
                                                       0xB, 0xF);
    vmc_put_u32le(wrap->data + VMC_LINK_HEADER_SIZE + 6, 0x80000000u);
    vmc_put_u32le(wrap->data + VMC_LINK_HEADER_SIZE + 10, 0x80000000u);
    expect_link_error(fx, wrap->data, wrap->len, SPICE_LINK_ERR_INVALID_DATA);
}

static void
case_link_minor(Fx *fx)
{
    g_autoptr(GSocket) s = raw(fx);
    g_autoptr(GByteArray) link = vmc_test_link_message(VMC_LINK_MAGIC, 2, 99, SPICE_CHANNEL_MAIN, 0,
                                                       0xB, 0xF);
    VmcLinkHeader h;
    VmcLinkReply r;
    CHECK(fx, vmc_test_raw_send(s, link->data, link->len));
    CHECK(fx, read_link_reply(fx, s, &h, &r, NULL));
    CHECK_EQ(fx, r.error, 0);
}

static void
case_link_unknown_channel(Fx *fx)
{
    g_autoptr(GByteArray) link = vmc_test_link_message(VMC_LINK_MAGIC, 2, 2, SPICE_CHANNEL_DISPLAY,
                                                       0, 0xB, 0);
    if (fx->native)
        expect_link_error(fx, link->data, link->len, SPICE_LINK_ERR_CHANNEL_NOT_AVAILABLE);
    else
        expect_silent_close(fx, link->data, link->len);
}

/* Links with `cfg` and returns the first link event (LINKED or LINK_FAILED). */
static VmcClientEvent
link_outcome(Fx *fx, const VmcClientConfig *cfg, VmcTestClient **out)
{
    VmcTestClient *tc = client_cfg(fx, cfg);
    VmcClientEvent ev;
    for (;;) {
        CHECK(fx, vmc_test_client_next(tc, &ev, T));
        if (ev.type == VMC_CLIENT_EV_LINKED || ev.type == VMC_CLIENT_EV_LINK_FAILED ||
            ev.type == VMC_CLIENT_EV_PROTOCOL_ERROR)
            break;
        vmc_client_event_clear(&ev);
    }
    if (out)
        *out = tc;
    else
        vmc_test_client_free(tc);
    return ev;
}

static const char *const args_password[] = {"--password", "secret", NULL};

static void
case_auth_denied(Fx *fx)
{
    VmcClientConfig cfg;
    guint8 garbage[VMC_TICKET_CIPHER_BYTES];
    VmcTestClient *tc;

    vmc_client_config_init(&cfg);
    cfg.password = "wrong";
    VmcClientEvent ev = link_outcome(fx, &cfg, &tc);
    CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_LINK_FAILED);
    CHECK_EQ(fx, ev.code, SPICE_LINK_ERR_PERMISSION_DENIED);
    vmc_client_event_clear(&ev);
    CHECK(fx, vmc_test_client_wait_closed(tc, T));
    vmc_test_client_free(tc);

    /* a ticket that does not decrypt */
    for (guint i = 0; i < sizeof(garbage); i++)
        garbage[i] = (guint8)(i * 7 + 1);
    vmc_client_config_init(&cfg);
    cfg.password = "secret";
    cfg.ticket = garbage;
    ev = link_outcome(fx, &cfg, NULL);
    CHECK_EQ(fx, ev.code, SPICE_LINK_ERR_PERMISSION_DENIED);
    vmc_client_event_clear(&ev);

    /* the right password under OAEP-SHA256 */
    vmc_client_config_init(&cfg);
    cfg.password = "secret";
    cfg.ticket_oaep_sha256 = TRUE;
    ev = link_outcome(fx, &cfg, NULL);
    CHECK_EQ(fx, ev.code, SPICE_LINK_ERR_PERMISSION_DENIED);
    vmc_client_event_clear(&ev);
    check_healthy(fx);
}

static void
case_auth_nul(Fx *fx)
{
    VmcClientConfig cfg;

    vmc_client_config_init(&cfg);
    cfg.password = "secret";
    VmcClientEvent ev = link_outcome(fx, &cfg, NULL);
    CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_LINKED);
    vmc_client_event_clear(&ev);
    cfg.ticket_without_nul = TRUE;
    ev = link_outcome(fx, &cfg, NULL);
    CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_LINKED);
    vmc_client_event_clear(&ev);
}

static void
case_auth_no_selection(Fx *fx)
{
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.password = "secret";
    cfg.common_caps &= ~(1u << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION);
    VmcClientEvent ev = link_outcome(fx, &cfg, NULL);
    CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_LINKED);
    vmc_client_event_clear(&ev);
}

static void
case_auth_bad_mechanism(Fx *fx)
{
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.auth_mechanism = 5;
    VmcClientEvent ev = link_outcome(fx, &cfg, NULL);
    CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_LINK_FAILED);
    CHECK_EQ(fx, ev.code, SPICE_LINK_ERR_INVALID_DATA);
    vmc_client_event_clear(&ev);
}

static void
case_link_other_channel(Fx *fx)
{
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.channel_type = SPICE_CHANNEL_INPUTS;
    cfg.channel_caps = 0;
    cfg.connection_id = 12345;
    VmcClientEvent ev = link_outcome(fx, &cfg, NULL);
    CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_LINK_FAILED);
    /* native serves only the main channel */
    CHECK_EQ(fx, ev.code, BK(fx, SPICE_LINK_ERR_CHANNEL_NOT_AVAILABLE,
                              SPICE_LINK_ERR_BAD_CONNECTION_ID));
    vmc_client_event_clear(&ev);
}

static void
case_link_connection_id(Fx *fx)
{
    VmcClientConfig cfg;
    VmcTestClient *tc;
    vmc_client_config_init(&cfg);
    cfg.connection_id = 777;
    VmcClientEvent ev = link_outcome(fx, &cfg, &tc);
    if (fx->native) {
        /* native: a new session as for id 0 (no migration support) */
        CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_LINKED);
        VmcClientEvent init;
        CHECK(fx, vmc_test_client_wait_msg(tc, SPICE_MSG_MAIN_INIT, &init, T));
        vmc_client_event_clear(&init);
    } else {
        CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_LINKED);
        /* a migration target: no INIT, not even after ATTACH_CHANNELS (nothing can
         * prove silence here but a bounded wait) */
        vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
        VmcClientEvent next;
        gboolean got = vmc_test_client_next(tc, &next, 300);
        CHECK(fx, !got || next.type != VMC_CLIENT_EV_MESSAGE);
        if (got)
            vmc_client_event_clear(&next);
    }
    vmc_client_event_clear(&ev);
    vmc_test_client_free(tc);
}

static void
case_link_second_client(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *a = client(fx);
    wait_started(fx, a);
    check_agent_path(fx, a, ta);
    VmcTestClient *b = client(fx);
    wait_started(fx, b);
    CHECK(fx, vmc_test_client_wait_closed(a, T));
    VmcAgentPeerEvent ev;
    CHECK(fx, vmc_test_agent_wait_msg(ta, 2, VD_AGENT_CLIENT_DISCONNECTED, &ev, T));
    vmc_agent_peer_event_clear(&ev);
    check_agent_path(fx, b, ta);
    vmc_test_client_free(a);
    vmc_test_client_free(b);
    vmc_test_agent_free(ta);
}

/* ================================================================================ */
/* Main channel */

static VmcMainInit
first_init(Fx *fx, VmcTestClient *tc)
{
    VmcClientEvent ev;
    VmcMainInit init;
    /* INIT is the first main-channel message */
    for (;;) {
        CHECK(fx, vmc_test_client_next(tc, &ev, T));
        if (ev.type == VMC_CLIENT_EV_MESSAGE)
            break;
        vmc_client_event_clear(&ev);
    }
    CHECK_EQ(fx, ev.msg_type, SPICE_MSG_MAIN_INIT);
    gsize len;
    const guint8 *p = g_bytes_get_data(ev.body, &len);
    CHECK_EQ(fx, len, VMC_MAIN_INIT_SIZE);
    CHECK_EQ(fx, vmc_main_init_decode(p, len, &init), VMC_DECODE_OK);
    vmc_client_event_clear(&ev);
    return init;
}

static void
case_main_init(Fx *fx)
{
    VmcTestClient *tc = client_manual(fx);
    VmcMainInit init = first_init(fx, tc);
    CHECK(fx, init.session_id != 0);
    CHECK_EQ(fx, init.display_channels_hint, 0);
    CHECK_EQ(fx, init.supported_mouse_modes, SPICE_MOUSE_MODE_SERVER);
    CHECK_EQ(fx, init.current_mouse_mode, SPICE_MOUSE_MODE_SERVER);
    CHECK_EQ(fx, init.agent_connected, 0);
    CHECK_EQ(fx, init.ram_hint, 0);
    /* native grants a wider window by default (--agent-window) */
    if (fx->native)
        CHECK(fx, init.agent_tokens >= 10);
    else
        CHECK_EQ(fx, init.agent_tokens, 10);
    /* no SET_ACK, NAME, UUID or PING before our barrier */
    g_autoptr(GArray) before = client_barrier(fx, tc);
    CHECK_EQ(fx, before->len, 0);
    vmc_test_client_free(tc);

    /* with an agent attached */
    VmcTestAgent *ta = agent_attached(fx);
    tc = client_manual(fx);
    init = first_init(fx, tc);
    CHECK_EQ(fx, init.agent_connected, 1);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static const char *const args_window10[] = {"--agent-window", "10", NULL};

static void
case_main_init_window(Fx *fx)
{
    VmcTestClient *tc = client_manual(fx);
    VmcMainInit init = first_init(fx, tc);
    CHECK_EQ(fx, init.agent_tokens, 10);
    vmc_test_client_free(tc);
}

static const char *const args_name_uuid[] = {"--name", "vm-conf",
                                             "--uuid", "01234567-89ab-cdef-0123-456789abcdef",
                                             NULL};

static void
case_main_name_uuid(Fx *fx)
{
    static const guint8 want_uuid[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                         0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    VmcTestClient *tc = client_manual(fx);
    first_init(fx, tc);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_next(tc, &ev, T));
    CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_MESSAGE);
    CHECK_EQ(fx, ev.msg_type, SPICE_MSG_MAIN_NAME);
    gsize len;
    const guint8 *p = g_bytes_get_data(ev.body, &len);
    CHECK_EQ(fx, len, 4 + 8);
    CHECK_EQ(fx, vmc_get_u32le(p), 8); /* length with the NUL */
    CHECK(fx, memcmp(p + 4, "vm-conf", 8) == 0);
    vmc_client_event_clear(&ev);
    CHECK(fx, vmc_test_client_next(tc, &ev, T));
    CHECK_EQ(fx, ev.msg_type, SPICE_MSG_MAIN_UUID);
    p = g_bytes_get_data(ev.body, &len);
    CHECK_EQ(fx, len, 16);
    CHECK(fx, memcmp(p, want_uuid, 16) == 0);
    vmc_client_event_clear(&ev);
    vmc_test_client_free(tc);

    /* a client without NAME_AND_UUID gets neither */
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.auto_agent_start = FALSE;
    cfg.channel_caps &= ~(1u << SPICE_MAIN_CAP_NAME_AND_UUID);
    tc = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(tc, T));
    first_init(fx, tc);
    g_autoptr(GArray) before = client_barrier(fx, tc);
    CHECK_EQ(fx, count_type(before, SPICE_MSG_MAIN_NAME), 0);
    CHECK_EQ(fx, count_type(before, SPICE_MSG_MAIN_UUID), 0);
    vmc_test_client_free(tc);
}

static void
case_main_full_headers(Fx *fx)
{
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.common_caps &= ~(1u << SPICE_COMMON_CAP_MINI_HEADER);
    cfg.auto_agent_start = FALSE;
    VmcTestClient *tc = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(tc, T));
    CHECK(fx, !vmc_client_uses_mini_header(tc->c));
    guint64 serial = 0;
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    for (;;) {
        VmcClientEvent ev;
        CHECK(fx, vmc_test_client_next(tc, &ev, T));
        if (ev.type == VMC_CLIENT_EV_MESSAGE) {
            CHECK_EQ(fx, ev.serial, serial + 1);
            serial = ev.serial;
            gboolean done = ev.msg_type == SPICE_MSG_MAIN_CHANNELS_LIST;
            vmc_client_event_clear(&ev);
            if (done)
                break;
            continue;
        }
        vmc_client_event_clear(&ev);
    }
    CHECK(fx, serial >= 2);
    vmc_test_client_free(tc);
}

static void
case_main_channels_list(Fx *fx)
{
    VmcTestClient *tc = client_manual(fx);
    first_init(fx, tc);
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_next(tc, &ev, T));
    CHECK_EQ(fx, ev.type, VMC_CLIENT_EV_MESSAGE);
    CHECK_EQ(fx, ev.msg_type, SPICE_MSG_MAIN_CHANNELS_LIST);
    gsize len;
    const guint8 *p = g_bytes_get_data(ev.body, &len);
    VmcChannelId ids[8];
    guint32 n = 0;
    CHECK_EQ(fx, vmc_main_channels_list_decode(p, len, ids, G_N_ELEMENTS(ids), &n), VMC_DECODE_OK);
    if (fx->native) {
        CHECK_EQ(fx, n, 0);
    } else {
        CHECK_EQ(fx, n, 1);
        CHECK_EQ(fx, ids[0].type, SPICE_CHANNEL_INPUTS);
        CHECK_EQ(fx, ids[0].id, 0);
    }
    vmc_client_event_clear(&ev);
    vmc_test_client_free(tc);
}

static void
case_main_ping_tcp(Fx *fx)
{
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.auto_agent_start = FALSE;
    VmcTestClient *tc = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(tc, T));
    first_init(fx, tc);
    if (!fx->native) {
        static const gsize sizes[] = {12, 12, 256012};
        for (guint i = 0; i < 3; i++) {
            VmcClientEvent ev;
            CHECK(fx, vmc_test_client_wait_msg(tc, SPICE_MSG_PING, &ev, T));
            VmcPing ping;
            gsize len;
            const guint8 *p = g_bytes_get_data(ev.body, &len);
            CHECK_EQ(fx, len, sizes[i]);
            CHECK_EQ(fx, vmc_ping_decode(p, len, &ping), VMC_DECODE_OK);
            CHECK_EQ(fx, ping.id, i + 1);
            vmc_client_event_clear(&ev);
        }
    } else {
        /* native: no network test; nothing but our answer before the barrier */
        g_autoptr(GArray) before = client_barrier(fx, tc);
        CHECK_EQ(fx, count_type(before, SPICE_MSG_PING), 0);
    }
    /* the client answered (auto PONG) and is still connected */
    g_autoptr(GArray) after = client_barrier(fx, tc);
    CHECK(fx, !vmc_test_client_closed(tc));
    vmc_test_client_free(tc);
}

static void
case_main_ignored(Fx *fx)
{
    VmcTestClient *tc = client_manual(fx);
    guint8 b[16] = {0};
    first_init(fx, tc);
    vmc_put_u32le(b, 1);
    vmc_client_send_message(tc->c, SPICE_MSGC_ACK_SYNC, b, 4);
    vmc_client_send_message(tc->c, SPICE_MSGC_ACK, NULL, 0);
    vmc_client_send_message(tc->c, SPICE_MSGC_DISCONNECTING, b, 12);
    vmc_put_u32le(b, 0xdead);
    vmc_client_send_message(tc->c, SPICE_MSGC_PONG, b, 12);
    vmc_put_u32le(b, 0);
    b[0] = SPICE_MOUSE_MODE_CLIENT;
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST, b, 2);
    b[0] = SPICE_MOUSE_MODE_SERVER;
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST, b, 2);
    g_autoptr(GArray) before = client_barrier(fx, tc);
    CHECK_EQ(fx, before->len, 0);
    CHECK(fx, !vmc_test_client_closed(tc));
    vmc_test_client_free(tc);
}

/* Sends one main-channel message (header says `size`, `len` body bytes follow) on a
 * fresh client and expects to be disconnected. */
static void
expect_refused(Fx *fx, guint16 type, guint32 size, gsize len)
{
    VmcTestClient *tc = client_manual(fx);
    g_autofree guint8 *body = g_malloc0(len + 1);
    first_init(fx, tc);
    vmc_client_send_header(tc->c, type, size);
    vmc_client_send_raw(tc->c, body, len);
    if (!vmc_test_client_wait_closed(tc, T)) {
        g_test_message("message type %u size %u was not refused", type, size);
        CHECK(fx, FALSE);
    }
    vmc_test_client_free(tc);
}

static void
case_main_refused(Fx *fx)
{
    expect_refused(fx, 113, 0, 0);                              /* unknown type */
    expect_refused(fx, SPICE_MSGC_MAIN_AGENT_START, 2, 2);      /* short AGENT_START */
    expect_refused(fx, SPICE_MSGC_MAIN_AGENT_DATA, 0, 0);       /* empty AGENT_DATA */
    expect_refused(fx, SPICE_MSGC_MAIN_ATTACH_CHANNELS, 26625, 26625);
    /* a huge declared body is refused at the header, without waiting for it */
    expect_refused(fx, SPICE_MSGC_MAIN_ATTACH_CHANNELS, 0x7FFFFFFFu, 16);
    expect_refused(fx, SPICE_MSGC_MAIN_CLIENT_INFO, 8, 8);
    expect_refused(fx, SPICE_MSGC_MAIN_QUALITY_INDICATOR, 1, 1);
    /* the largest accepted body */
    VmcTestClient *tc = client_manual(fx);
    g_autofree guint8 *big = g_malloc0(VMC_MAIN_RECV_BUF_SIZE);
    first_init(fx, tc);
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_ATTACH_CHANNELS, big, VMC_MAIN_RECV_BUF_SIZE);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_wait_msg(tc, SPICE_MSG_MAIN_CHANNELS_LIST, &ev, T));
    vmc_client_event_clear(&ev);
    vmc_test_client_free(tc);
}

static void
case_main_migrate(Fx *fx)
{
    VmcTestClient *tc = client_manual(fx);
    guint8 b[4];
    first_init(fx, tc);
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_MIGRATE_CONNECTED, NULL, 0);
    vmc_put_u32le(b, 2);
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS, b, 4);
    g_autoptr(GArray) before = client_barrier(fx, tc);
    CHECK_EQ(fx, count_type(before, SPICE_MSG_MAIN_MIGRATE_CANCEL), 1);
    CHECK_EQ(fx, count_type(before, SPICE_MSG_MAIN_MIGRATE_DST_SEAMLESS_NACK), 1);
    vmc_test_client_free(tc);
}

/* ================================================================================ */
/* Agent lifecycle */

static void
case_agent_attach(Fx *fx)
{
    /* a client with AGENT_CONNECTED_TOKENS sees the agent come and go */
    VmcTestClient *tc = client(fx);
    VmcClientEvent ev;
    VmcTestAgent *ta = agent(fx);
    CHECK(fx, vmc_test_client_wait_msg(tc, SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS, &ev, T));
    guint32 tokens = vmc_get_u32le(g_bytes_get_data(ev.body, NULL));
    vmc_client_event_clear(&ev);
    if (fx->native)
        CHECK(fx, tokens >= 10);
    else
        CHECK_EQ(fx, tokens, 10);
    vmc_test_agent_free(ta);
    CHECK(fx, vmc_test_client_wait_msg(tc, SPICE_MSG_MAIN_AGENT_DISCONNECTED, &ev, T));
    CHECK_EQ(fx, vmc_get_u32le(g_bytes_get_data(ev.body, NULL)), 0);
    vmc_client_event_clear(&ev);
    vmc_test_client_free(tc);

    /* without the cap: the empty AGENT_CONNECTED */
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.channel_caps &= ~(1u << SPICE_MAIN_CAP_AGENT_CONNECTED_TOKENS);
    tc = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(tc, T));
    first_init(fx, tc);
    ta = agent(fx);
    CHECK(fx, vmc_test_client_next(tc, &ev, T));
    while (ev.type != VMC_CLIENT_EV_MESSAGE) {
        vmc_client_event_clear(&ev);
        CHECK(fx, vmc_test_client_next(tc, &ev, T));
    }
    CHECK_EQ(fx, ev.msg_type, SPICE_MSG_MAIN_AGENT_CONNECTED);
    CHECK_EQ(fx, g_bytes_get_size(ev.body), 0);
    vmc_client_event_clear(&ev);
    wait_started(fx, tc);
    check_agent_path(fx, tc, ta);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

/* The exact CLIENT_DISCONNECTED chunk on port 2. */
static void
expect_client_disconnected_chunk(Fx *fx, VmcTestAgent *ta)
{
    static const guint8 want[20] = {1, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (;;) {
        VmcAgentPeerEvent ev;
        CHECK(fx, vmc_test_agent_next(ta, &ev, T));
        if (ev.type == VMC_AGENT_PEER_EV_CHUNK && ev.port == 2) {
            gsize len;
            const guint8 *p = g_bytes_get_data(ev.body, &len);
            if (len == 20 && vmc_get_u32le(p + 4) == VD_AGENT_CLIENT_DISCONNECTED) {
                CHECK(fx, memcmp(p, want, 20) == 0);
                vmc_agent_peer_event_clear(&ev);
                return;
            }
        }
        CHECK(fx, ev.type != VMC_AGENT_PEER_EV_VIOLATION);
        vmc_agent_peer_event_clear(&ev);
    }
}

static void
case_agent_client_disconnect(Fx *fx)
{
    VmcTestAgent *ta = agent_attached(fx);
    /* never started */
    VmcTestClient *tc = client_manual(fx);
    first_init(fx, tc);
    vmc_test_client_free(tc);
    expect_client_disconnected_chunk(fx, ta);
    /* started, in the middle of nothing */
    tc = client(fx);
    wait_started(fx, tc);
    check_agent_path(fx, tc, ta);
    vmc_test_client_free(tc);
    expect_client_disconnected_chunk(fx, ta);
    /* in the middle of a message: half of a 3000-byte message was written */
    tc = client(fx);
    wait_started(fx, tc);
    g_autofree guint8 *payload = g_malloc0(3000);
    vmc_client_send_agent_message_full(tc->c, 1, 99, 0, 3000, payload, 1000, 0);
    VmcAgentPeerEvent ev;
    for (;;) {
        CHECK(fx, vmc_test_agent_next(ta, &ev, T));
        gboolean chunk = ev.type == VMC_AGENT_PEER_EV_CHUNK && ev.port == 1 &&
                         g_bytes_get_size(ev.body) == 1020;
        vmc_agent_peer_event_clear(&ev);
        if (chunk)
            break;
    }
    vmc_test_client_free(tc);
    expect_client_disconnected_chunk(fx, ta);
    /* the next client's messages are intact */
    tc = client(fx);
    wait_started(fx, tc);
    check_agent_path(fx, tc, ta);
    CHECK_EQ(fx, vmc_agent_peer_violations(ta->peer), 0);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_agent_data_before_start(Fx *fx)
{
    VmcTestAgent *ta = agent_attached(fx);
    VmcTestClient *tc = client_manual(fx);
    first_init(fx, tc);
    /* the agent talks before the client's AGENT_START */
    guint8 early[4] = {0xee, 0xee, 0xee, 0xee};
    vmc_agent_peer_send(ta->peer, 1, 99, 0, early, 4);
    CHECK(fx, vmc_test_agent_flush(ta, T));
    /* make sure the server has read it: a client->agent round trip on port 2 would
     * need the agent started, so use the main-channel barrier */
    g_autoptr(GArray) b = client_barrier(fx, tc);
    vmc_client_send_agent_start(tc->c, VMC_AGENT_TOKENS_UNLIMITED);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    g_autoptr(GPtrArray) before = to_client_barrier(fx, tc, ta);
    guint early_seen = count_client_agent_msgs(before, 99);
    g_test_message("agent messages from before AGENT_START delivered: %u", early_seen);
    CHECK_EQ(fx, early_seen, 0);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

/* ================================================================================ */
/* Agent -> client */

static void
case_tokens_to_client(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.agent_grant = 2;
    VmcTestClient *tc = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(tc, T));
    wait_started(fx, tc);
    /* the agent knows the client started when the client's caps arrive */
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    for (guint i = 0; i < 4; i++) {
        guint8 p[4];
        vmc_put_u32le(p, i);
        vmc_agent_peer_send(ta->peer, 1, 99, 0, p, 4);
    }
    CHECK(fx, vmc_test_agent_flush(ta, T));
    /* exactly 2 arrive: the third is withheld until AGENT_TOKEN */
    VmcClientEvent ev;
    for (guint i = 0; i < 2; i++) {
        CHECK(fx, vmc_test_client_wait_agent_msg(tc, 99, &ev, T));
        CHECK_EQ(fx, vmc_get_u32le(g_bytes_get_data(ev.body, NULL)), i);
        vmc_client_event_clear(&ev);
    }
    g_autoptr(GArray) b1 = client_barrier(fx, tc);
    CHECK_EQ(fx, count_type(b1, SPICE_MSG_MAIN_AGENT_DATA), 0);
    CHECK_EQ(fx, vmc_client_get_grant_violations(tc->c), 0);
    vmc_client_send_agent_token(tc->c, 1);
    CHECK(fx, vmc_test_client_wait_agent_msg(tc, 99, &ev, T));
    CHECK_EQ(fx, vmc_get_u32le(g_bytes_get_data(ev.body, NULL)), 2);
    vmc_client_event_clear(&ev);
    g_autoptr(GArray) b2 = client_barrier(fx, tc);
    CHECK_EQ(fx, count_type(b2, SPICE_MSG_MAIN_AGENT_DATA), 0);
    vmc_client_send_agent_token(tc->c, 100);
    CHECK(fx, vmc_test_client_wait_agent_msg(tc, 99, &ev, T));
    CHECK_EQ(fx, vmc_get_u32le(g_bytes_get_data(ev.body, NULL)), 3);
    vmc_client_event_clear(&ev);
    CHECK_EQ(fx, vmc_client_get_grant_violations(tc->c), 0);
    vmc_test_client_free(tc);

    /* AGENT_START(0): nothing at all */
    vmc_client_config_init(&cfg);
    cfg.agent_grant = 0;
    tc = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(tc, T));
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync2 = agent_barrier(fx, tc, ta);
    vmc_agent_peer_send(ta->peer, 1, 99, 0, NULL, 0);
    CHECK(fx, vmc_test_agent_flush(ta, T));
    g_autoptr(GPtrArray) sync3 = agent_barrier(fx, tc, ta);
    g_autoptr(GArray) b3 = client_barrier(fx, tc);
    CHECK_EQ(fx, count_type(b3, SPICE_MSG_MAIN_AGENT_DATA), 0);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

/* The AGENT_DATA body sizes of the next agent message of `type`. */
static GArray *
body_sizes_of_next(Fx *fx, VmcTestClient *tc, guint32 type)
{
    GArray *sizes = g_array_new(FALSE, FALSE, sizeof(gsize));
    for (;;) {
        VmcClientEvent ev;
        CHECK(fx, vmc_test_client_next(tc, &ev, T));
        if (ev.type == VMC_CLIENT_EV_MESSAGE && ev.msg_type == SPICE_MSG_MAIN_AGENT_DATA) {
            gsize n = g_bytes_get_size(ev.body);
            g_array_append_val(sizes, n);
        }
        gboolean done = ev.type == VMC_CLIENT_EV_AGENT_MESSAGE && ev.agent.type == type;
        vmc_client_event_clear(&ev);
        if (done)
            return sizes;
    }
}

static void
case_chunks_to_client(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    g_autofree guint8 *payload = g_malloc(6000);
    for (guint i = 0; i < 6000; i++)
        payload[i] = (guint8)(i * 13);

    /* a 1020-byte chunk holding one message: one AGENT_DATA of 1020 */
    vmc_agent_peer_send_full(ta->peer, 1, 1, 101, 0, 1000, payload, 1000, 0);
    g_autoptr(GArray) s1 = body_sizes_of_next(fx, tc, 101);
    CHECK_EQ(fx, s1->len, 1);
    CHECK_EQ(fx, g_array_index(s1, gsize, 0), 1020);

    /* a 5000-byte chunk: 2048 + 2048 + 904 */
    vmc_agent_peer_send_full(ta->peer, 1, 1, 102, 0, 4980, payload, 4980, 0);
    VmcClientEvent ev;
    g_autoptr(GArray) s2 = body_sizes_of_next(fx, tc, 102);
    CHECK_EQ(fx, s2->len, 3);
    CHECK_EQ(fx, g_array_index(s2, gsize, 0), 2048);
    CHECK_EQ(fx, g_array_index(s2, gsize, 1), 2048);
    CHECK_EQ(fx, g_array_index(s2, gsize, 2), 904);

    /* a message over two chunks (1500 + 1500): two AGENT_DATA with those sizes */
    vmc_agent_peer_send_full(ta->peer, 1, 1, 103, 0, 2980, payload, 2980, 1500);
    g_autoptr(GArray) s3 = body_sizes_of_next(fx, tc, 103);
    if (fx->native) {
        /* native cuts the message stream itself: pieces <= 2048 adding up to 3000 */
        gsize sum = 0;
        for (guint i = 0; i < s3->len; i++) {
            CHECK(fx, g_array_index(s3, gsize, i) <= 2048);
            sum += g_array_index(s3, gsize, i);
        }
        CHECK_EQ(fx, sum, 3000);
    } else {
        CHECK_EQ(fx, s3->len, 2);
        CHECK_EQ(fx, g_array_index(s3, gsize, 0), 1500);
        CHECK_EQ(fx, g_array_index(s3, gsize, 1), 1500);
    }

    /* and the content is intact */
    vmc_agent_peer_send_full(ta->peer, 1, 1, 104, 7, 6000, payload, 6000, 0);
    CHECK(fx, vmc_test_client_wait_agent_msg(tc, 104, &ev, T));
    CHECK_EQ(fx, ev.agent.opaque, 7);
    CHECK(fx, g_bytes_get_size(ev.body) == 6000 &&
                  memcmp(g_bytes_get_data(ev.body, NULL), payload, 6000) == 0);
    vmc_client_event_clear(&ev);
    CHECK_EQ(fx, vmc_client_get_multi_message_bodies(tc->c), 0);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_chunks_port2(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    guint8 p[4] = {1, 2, 3, 4};
    vmc_agent_peer_send(ta->peer, 2, 99, 0, p, 4);
    g_autoptr(GPtrArray) before = to_client_barrier(fx, tc, ta);
    CHECK_EQ(fx, count_client_agent_msgs(before, 99), 0);
    CHECK_EQ(fx, count_client_msgs(before, SPICE_MSG_MAIN_AGENT_DISCONNECTED), 0);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

/* The agent breaks the framing with `bytes`: the client hears AGENT_DISCONNECTED, the
 * guest connection is dropped, and a new agent connection works. */
static void
expect_agent_dropped(Fx *fx, const guint8 *bytes, gsize len)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    vmc_agent_peer_send_raw(ta->peer, bytes, len);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_wait_msg(tc, SPICE_MSG_MAIN_AGENT_DISCONNECTED, &ev, T));
    vmc_client_event_clear(&ev);
    CHECK(fx, vmc_test_agent_wait_closed(ta, T));
    vmc_test_agent_free(ta);
    /* Let the server finish with the old connection before the agent comes back: a
     * main-channel round trip is at least one full pass of its main loop. (On the
     * spice-server backend an agent reconnecting within the same pass was seen to be
     * detached and attached once more, and libspice-server then aborted in
     * reds_on_main_agent_data on the client's next AGENT_DATA.) */
    g_autoptr(GArray) settle = client_barrier(fx, tc);
    ta = agent(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) there = agent_barrier(fx, tc, ta);
    g_autoptr(GPtrArray) back = to_client_barrier(fx, tc, ta);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_chunks_bad_port(Fx *fx)
{
    guint8 b[8 + 24];
    VmcAgentHeader h = {1, 99, 0, 4};
    vmc_chunk_header_encode(3, 24, b);
    vmc_agent_header_encode(&h, b + 8);
    memset(b + 28, 0, 4);
    expect_agent_dropped(fx, b, sizeof(b));
    vmc_chunk_header_encode(0, 24, b);
    expect_agent_dropped(fx, b, sizeof(b));
}

static void
case_chunks_protocol(Fx *fx)
{
    guint8 b[8 + 24];
    VmcAgentHeader h = {2, 99, 0, 4};
    vmc_chunk_header_encode(1, 24, b);
    vmc_agent_header_encode(&h, b + 8);
    memset(b + 28, 0, 4);
    expect_agent_dropped(fx, b, sizeof(b));
}

static void
case_chunks_two_messages(Fx *fx)
{
    guint8 b[8 + 48];
    VmcAgentHeader h = {1, 99, 0, 4};
    vmc_chunk_header_encode(1, 48, b);
    vmc_agent_header_encode(&h, b + 8);
    memset(b + 28, 0x11, 4);
    vmc_agent_header_encode(&h, b + 32);
    memset(b + 52, 0x22, 4);
    if (!fx->native) {
        expect_agent_dropped(fx, b, sizeof(b));
        return;
    }
    /* native: both messages arrive, intact and apart */
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    vmc_agent_peer_send_raw(ta->peer, b, sizeof(b));
    g_autoptr(GPtrArray) before = to_client_barrier(fx, tc, ta);
    CHECK_EQ(fx, count_client_agent_msgs(before, 99), 2);
    CHECK_EQ(fx, vmc_client_get_multi_message_bodies(tc->c), 0);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_chunks_byte_by_byte(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    guint8 msg[8 + 20 + 30];
    VmcAgentHeader h = {1, 105, 3, 30};
    vmc_chunk_header_encode(1, 50, msg);
    vmc_agent_header_encode(&h, msg + 8);
    for (guint i = 0; i < 30; i++)
        msg[28 + i] = (guint8)i;
    for (guint i = 0; i < sizeof(msg); i++) {
        vmc_agent_peer_send_raw(ta->peer, msg + i, 1);
        CHECK(fx, vmc_test_agent_flush(ta, T));
    }
    VmcClientEvent ev;
    gboolean got = vmc_test_client_wait_agent_msg(tc, 105, &ev, T);
    CHECK(fx, got);
    CHECK(fx, g_bytes_get_size(ev.body) == 30 &&
                  memcmp(g_bytes_get_data(ev.body, NULL), msg + 28, 30) == 0);
    vmc_client_event_clear(&ev);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_chunks_zero_size(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    guint8 zero[8];
    vmc_chunk_header_encode(1, 0, zero);
    vmc_agent_peer_send_raw(ta->peer, zero, sizeof(zero));
    guint8 p[4] = {9, 9, 9, 9};
    vmc_agent_peer_send(ta->peer, 1, 106, 0, p, 4);
    CHECK(fx, vmc_test_agent_flush(ta, T));
    if (fx->native) {
        VmcClientEvent ev;
        CHECK(fx, vmc_test_client_wait_agent_msg(tc, 106, &ev, T));
        vmc_client_event_clear(&ev);
    } else {
        /* the reference stalls: the client's barrier comes, the message never does
         * (the barrier proves the server read the bytes: it answered later input) */
        g_autoptr(GArray) b = client_barrier(fx, tc);
        CHECK_EQ(fx, count_type(b, SPICE_MSG_MAIN_AGENT_DATA), 0);
    }
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_chunks_big(Fx *fx)
{
    /* a 1 MB message in one chunk, as spice-vdagentd writes big clipboards */
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    gsize n = 1024 * 1024;
    g_autofree guint8 *payload = g_malloc(n);
    for (gsize i = 0; i < n; i++)
        payload[i] = (guint8)(i * 31 + 7);
    vmc_agent_peer_send_full(ta->peer, 1, 1, VD_AGENT_CLIPBOARD, 0, (guint32)n, payload, n, 0);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_wait_agent_msg(tc, VD_AGENT_CLIPBOARD, &ev, 4 * T));
    CHECK(fx, g_bytes_get_size(ev.body) == n &&
                  memcmp(g_bytes_get_data(ev.body, NULL), payload, n) == 0);
    vmc_client_event_clear(&ev);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

/* ================================================================================ */
/* Filters */

static const char *const args_no_copy_paste[] = {"--no-copy-paste", NULL};
static const char *const args_no_file_xfer[] = {"--no-file-xfer", NULL};

/* The agent's caps word as the client receives it after the agent announces `caps`. */
static guint32
caps_seen_by_client(Fx *fx, VmcTestClient *tc, VmcTestAgent *ta, guint32 caps)
{
    vmc_agent_peer_announce_caps(ta->peer, FALSE, caps);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_wait_agent_msg(tc, VD_AGENT_ANNOUNCE_CAPABILITIES, &ev, T));
    gsize len;
    const guint8 *p = g_bytes_get_data(ev.body, &len);
    CHECK_EQ(fx, len, 8);
    guint32 seen = vmc_get_u32le(p + 4);
    vmc_client_event_clear(&ev);
    return seen;
}

static void
case_filter_copy_paste(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    guint32 seen = caps_seen_by_client(fx, tc, ta, 0x00038de7);
    CHECK_EQ(fx, seen, 0x00038de7u & ~((1u << VD_AGENT_CAP_CLIPBOARD) |
                                      (1u << VD_AGENT_CAP_CLIPBOARD_BY_DEMAND) |
                                      (1u << VD_AGENT_CAP_CLIPBOARD_SELECTION)));
    /* agent -> client clipboard messages are dropped */
    guint8 grab[8] = {0};
    vmc_put_u32le(grab + 4, VD_AGENT_CLIPBOARD_UTF8_TEXT);
    vmc_agent_peer_send(ta->peer, 1, VD_AGENT_CLIPBOARD_GRAB, 0, grab, 8);
    g_autoptr(GPtrArray) to_client = to_client_barrier(fx, tc, ta);
    CHECK_EQ(fx, count_client_agent_msgs(to_client, VD_AGENT_CLIPBOARD_GRAB), 0);
    /* client -> agent too */
    vmc_client_send_agent_message(tc->c, VD_AGENT_CLIPBOARD_GRAB, 0, grab, 8);
    vmc_client_send_agent_message(tc->c, VD_AGENT_CLIPBOARD_REQUEST, 0, grab, 8);
    g_autoptr(GPtrArray) to_agent = agent_barrier(fx, tc, ta);
    CHECK_EQ(fx, count_agent_msgs(to_agent, 1, VD_AGENT_CLIPBOARD_GRAB), 0);
    CHECK_EQ(fx, count_agent_msgs(to_agent, 1, VD_AGENT_CLIPBOARD_REQUEST), 0);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_filter_file_xfer(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    guint32 seen = caps_seen_by_client(fx, tc, ta, 0x00038de7);
    CHECK_EQ(fx, seen, 0x00038de7u | (1u << VD_AGENT_CAP_FILE_XFER_DISABLED));
    /* a FILE_XFER_START never reaches the agent */
    static const char text[] = "[vdagent-file-xfer]\nname=x\nsize=3\n";
    guint8 start[4 + sizeof(text)];
    vmc_put_u32le(start, 5);
    memcpy(start + 4, text, sizeof(text));
    vmc_client_send_agent_message(tc->c, VD_AGENT_FILE_XFER_START, 0, start, sizeof(start));
    g_autoptr(GPtrArray) to_agent = agent_barrier(fx, tc, ta);
    CHECK_EQ(fx, count_agent_msgs(to_agent, 0, VD_AGENT_FILE_XFER_START), 0);
    if (fx->native) {
        /* native answers for the agent, so the client does not hang */
        VmcClientEvent ev;
        CHECK(fx, vmc_test_client_wait_agent_msg(tc, VD_AGENT_FILE_XFER_STATUS, &ev, T));
        const guint8 *p = g_bytes_get_data(ev.body, NULL);
        CHECK_EQ(fx, vmc_get_u32le(p), 5);
        CHECK_EQ(fx, vmc_get_u32le(p + 4), VD_AGENT_FILE_XFER_STATUS_DISABLED);
        vmc_client_event_clear(&ev);
    } else {
        g_autoptr(GPtrArray) to_client = to_client_barrier(fx, tc, ta);
        CHECK_EQ(fx, count_client_agent_msgs(to_client, VD_AGENT_FILE_XFER_STATUS), 0);
    }
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_filter_device_info(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    /* spice-vdagentd's caps include GRAPHICS_DEVICE_INFO (15) */
    vmc_agent_peer_announce_caps(ta->peer, FALSE, 0x00038de7);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_wait_agent_msg(tc, VD_AGENT_ANNOUNCE_CAPABILITIES, &ev, T));
    vmc_client_event_clear(&ev);
    g_autoptr(GPtrArray) to_agent = agent_barrier(fx, tc, ta);
    guint n = 0;
    for (guint i = 0; i < to_agent->len; i++) {
        VmcAgentPeerEvent *e = to_agent->pdata[i];
        if (e->type == VMC_AGENT_PEER_EV_CHUNK && e->port == 2 &&
            g_bytes_get_size(e->body) == 24) {
            const guint8 *p = g_bytes_get_data(e->body, NULL);
            if (vmc_get_u32le(p + 4) == VD_AGENT_GRAPHICS_DEVICE_INFO) {
                CHECK_EQ(fx, vmc_get_u32le(p + 16), 4); /* msg size */
                CHECK_EQ(fx, vmc_get_u32le(p + 20), 0); /* count */
                n++;
            }
        }
    }
    CHECK_EQ(fx, n, BK(fx, 0, 1));
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

/* ================================================================================ */
/* Client -> agent */

/* The next port-1 chunk bodies up to the message of `type` they complete. */
static GPtrArray *
chunks_until(Fx *fx, VmcTestAgent *ta, guint32 type)
{
    GPtrArray *chunks = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    for (;;) {
        VmcAgentPeerEvent ev;
        CHECK(fx, vmc_test_agent_next(ta, &ev, T));
        CHECK(fx, ev.type != VMC_AGENT_PEER_EV_VIOLATION);
        if (ev.type == VMC_AGENT_PEER_EV_CHUNK && ev.port == 1)
            g_ptr_array_add(chunks, g_bytes_ref(ev.body));
        gboolean done = ev.type == VMC_AGENT_PEER_EV_MESSAGE && ev.header.type == type;
        vmc_agent_peer_event_clear(&ev);
        if (done)
            return chunks;
    }
}

static void
case_write_chunks(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    g_autofree guint8 *payload = g_malloc(3000);
    for (guint i = 0; i < 3000; i++)
        payload[i] = (guint8)(i ^ 0xa5);

    /* one AGENT_DATA = one chunk {1, len} + the body, byte for byte */
    vmc_client_send_agent_message(tc->c, 201, 0x1122334455667788ull, payload, 100);
    g_autoptr(GPtrArray) c1 = chunks_until(fx, ta, 201);
    CHECK_EQ(fx, c1->len, 1);
    gsize len;
    const guint8 *p = g_bytes_get_data(c1->pdata[0], &len);
    CHECK_EQ(fx, len, 120);
    VmcAgentHeader h;
    CHECK_EQ(fx, vmc_agent_header_decode(p, len, &h, NULL), VMC_DECODE_OK);
    CHECK_EQ(fx, h.opaque, 0x1122334455667788ull);
    CHECK(fx, memcmp(p + 20, payload, 100) == 0);

    /* a message in two AGENT_DATA: two chunks with the same boundaries */
    vmc_client_send_agent_message(tc->c, 202, 0, payload, 3000);
    g_autoptr(GPtrArray) c2 = chunks_until(fx, ta, 202);
    CHECK_EQ(fx, c2->len, 2);
    CHECK_EQ(fx, g_bytes_get_size(c2->pdata[0]), 2048);
    CHECK_EQ(fx, g_bytes_get_size(c2->pdata[1]), 972);

    /* unknown types pass unchanged; so does a 20-byte header of size 0 */
    vmc_client_send_agent_message(tc->c, 0x12345678, 0, payload, 16);
    VmcAgentPeerEvent ev;
    CHECK(fx, vmc_test_agent_wait_msg(ta, 1, 0x12345678, &ev, T));
    CHECK(fx, memcmp(g_bytes_get_data(ev.body, NULL), payload, 16) == 0);
    vmc_agent_peer_event_clear(&ev);
    CHECK_EQ(fx, vmc_agent_peer_violations(ta->peer), 0);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_write_before_start(Fx *fx)
{
    VmcTestAgent *ta = agent_attached(fx);
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.auto_agent_start = FALSE;
    cfg.respect_tokens = FALSE; /* send AGENT_DATA although the agent is not started */
    VmcTestClient *tc = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(tc, T));
    first_init(fx, tc);
    guint8 p[4] = {1, 2, 3, 4};
    vmc_client_send_agent_message(tc->c, 203, 0, p, 4);
    g_autoptr(GArray) b = client_barrier(fx, tc);
    CHECK_EQ(fx, count_type(b, SPICE_MSG_MAIN_AGENT_TOKEN), 0);
    vmc_client_send_agent_start(tc->c, VMC_AGENT_TOKENS_UNLIMITED);
    g_autoptr(GPtrArray) before = agent_barrier(fx, tc, ta);
    CHECK_EQ(fx, count_agent_msgs(before, 1, 203), 0);
    CHECK(fx, !vmc_test_client_closed(tc));
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_tokens_to_agent(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    /* drain the AGENT_TOKENs the barrier earned */
    g_autoptr(GArray) b0 = client_barrier(fx, tc);
    guint32 window = vmc_client_get_server_tokens(tc->c);
    guint8 p[4] = {0};
    for (guint i = 0; i < 5; i++)
        vmc_client_send_agent_message(tc->c, 204, 0, p, 4);
    for (guint i = 0; i < 5; i++) {
        VmcAgentPeerEvent ev;
        CHECK(fx, vmc_test_agent_wait_msg(ta, 1, 204, &ev, T));
        vmc_agent_peer_event_clear(&ev);
    }
    /* every written message gives its token back */
    guint32 returned = 0, batches = 0;
    while (returned < 5) {
        VmcClientEvent ev;
        CHECK(fx, vmc_test_client_wait_msg(tc, SPICE_MSG_MAIN_AGENT_TOKEN, &ev, T));
        returned += vmc_get_u32le(g_bytes_get_data(ev.body, NULL));
        batches++;
        vmc_client_event_clear(&ev);
    }
    CHECK_EQ(fx, returned, 5);
    g_test_message("5 tokens came back in %u AGENT_TOKEN messages", batches);
    if (!fx->native)
        CHECK_EQ(fx, batches, 1); /* the reference returns them in one AGENT_TOKEN(5) */
    CHECK(fx, vmc_client_get_server_tokens(tc->c) >= window - 1);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static gboolean
tokens_stuck(gpointer user_data)
{
    VmcTestClient *tc = user_data;
    return vmc_client_get_server_tokens(tc->c) == 0 && vmc_client_agent_pending(tc->c) > 0;
}

static void
case_tokens_overflow(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    /* the guest stops reading: once its socket is full no token comes back */
    vmc_test_agent_pause(ta, TRUE);
    g_autofree guint8 *payload = g_malloc0(64 * 1024);
    for (guint i = 0; i < 64; i++)
        vmc_client_send_agent_message(tc->c, 205, 0, payload, 64 * 1024);
    /* stuck = no tokens while data waits, still so after a quiet 300 ms (bounded) */
    gint64 deadline = g_get_monotonic_time() + 4 * (gint64)T * 1000;
    for (;;) {
        CHECK(fx, g_get_monotonic_time() < deadline);
        CHECK(fx, !vmc_test_client_closed(tc));
        if (!vmc_io_wait(tc->ctx, tokens_stuck, tc, 100))
            continue;
        vmc_io_wait(tc->ctx, NULL, NULL, 300);
        if (tokens_stuck(tc))
            break;
    }
    /* one AGENT_DATA beyond the grant */
    guint8 extra[24] = {0};
    VmcAgentHeader h = {1, 206, 0, 4};
    vmc_agent_header_encode(&h, extra);
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_AGENT_DATA, extra, 24);
    CHECK(fx, vmc_test_client_wait_closed(tc, T));
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
    check_healthy(fx);
}

static void
case_write_bad_data(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    struct {
        const char *what;
        guint32 protocol, size;
        gsize body;
    } bad[] = {
        {"2049-byte body", 1, 3000, 2049},
        {"10 bytes at a message start", 1, 100, 10},
        {"protocol 2", 2, 4, 24},
        {"a body longer than its message", 1, 4, 34},
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        VmcTestClient *tc = client(fx);
        wait_started(fx, tc);
        g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
        g_autofree guint8 *b = g_malloc0(bad[i].body);
        if (bad[i].body >= 20) {
            VmcAgentHeader h = {bad[i].protocol, 207, 0, bad[i].size};
            vmc_agent_header_encode(&h, b);
        }
        vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_AGENT_DATA, b, bad[i].body);
        if (!vmc_test_client_wait_closed(tc, T)) {
            g_test_message("not refused: %s", bad[i].what);
            CHECK(fx, FALSE);
        }
        vmc_test_client_free(tc);
    }
    /* nothing of it reached the agent, and the agent path still works */
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) before = agent_barrier(fx, tc, ta);
    CHECK_EQ(fx, count_agent_msgs(before, 1, 207), 0);
    CHECK_EQ(fx, vmc_agent_peer_violations(ta->peer), 0);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

static void
case_write_zero_size_junk(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    guint8 b[28];
    VmcAgentHeader h = {1, 208, 0, 0};
    vmc_agent_header_encode(&h, b);
    memset(b + 20, 0x5a, 8);
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_AGENT_DATA, b, sizeof(b));
    if (fx->native) {
        CHECK(fx, vmc_test_client_wait_closed(tc, T));
    } else {
        /* forwarded as one 28-byte chunk (a strict agent counts it as a violation) */
        for (;;) {
            VmcAgentPeerEvent ev;
            CHECK(fx, vmc_test_agent_next(ta, &ev, T));
            gboolean done = ev.type == VMC_AGENT_PEER_EV_CHUNK && ev.port == 1 &&
                            g_bytes_get_size(ev.body) == 28 &&
                            memcmp(g_bytes_get_data(ev.body, NULL), b, 28) == 0;
            vmc_agent_peer_event_clear(&ev);
            if (done)
                break;
        }
    }
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
}

/* ================================================================================ */
/* Native only: several clients, hostile inputs */

static const char *const args_two_clients[] = {"--max-clients", "2", NULL};

static void
case_native_multi_client(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *a = client(fx);
    VmcTestClient *b = client(fx);
    wait_started(fx, a);
    wait_started(fx, b);
    CHECK(fx, !vmc_test_client_closed(a));
    g_autoptr(GPtrArray) s1 = agent_barrier(fx, a, ta);
    g_autoptr(GPtrArray) s2 = agent_barrier(fx, b, ta);
    /* agent -> every client */
    guint8 p[4] = {4, 3, 2, 1};
    vmc_agent_peer_send(ta->peer, 1, 301, 0, p, 4);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_wait_agent_msg(a, 301, &ev, T));
    vmc_client_event_clear(&ev);
    CHECK(fx, vmc_test_client_wait_agent_msg(b, 301, &ev, T));
    vmc_client_event_clear(&ev);
    /* two multi-part messages in flight at once are never spliced */
    g_autofree guint8 *pa = g_malloc(5000);
    g_autofree guint8 *pb = g_malloc(5000);
    memset(pa, 0xaa, 5000);
    memset(pb, 0xbb, 5000);
    vmc_client_send_agent_message(a->c, 302, 1, pa, 5000);
    vmc_client_send_agent_message(b->c, 302, 2, pb, 5000);
    guint got = 0;
    while (got < 2) {
        VmcAgentPeerEvent e;
        CHECK(fx, vmc_test_agent_wait_msg(ta, 1, 302, &e, T));
        const guint8 *d = g_bytes_get_data(e.body, NULL);
        CHECK_EQ(fx, g_bytes_get_size(e.body), 5000);
        guint8 want = e.header.opaque == 1 ? 0xaa : 0xbb;
        for (guint i = 0; i < 5000; i++)
            CHECK_EQ(fx, d[i], want);
        vmc_agent_peer_event_clear(&e);
        got++;
    }
    CHECK_EQ(fx, vmc_agent_peer_violations(ta->peer), 0);
    /* one client leaving does not disturb the other */
    vmc_test_client_free(a);
    check_agent_path(fx, b, ta);
    vmc_test_client_free(b);
    vmc_test_agent_free(ta);
}

static void
case_hostile_token_before_start(Fx *fx)
{
    VmcTestAgent *ta = agent_attached(fx);
    VmcTestClient *tc = client_manual(fx);
    first_init(fx, tc);
    guint8 b[4];
    vmc_put_u32le(b, 5);
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_AGENT_TOKEN, b, 4);
    g_autoptr(GArray) before = client_barrier(fx, tc);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
    check_healthy(fx);
}

static void
case_hostile_migrate(Fx *fx)
{
    VmcTestClient *tc = client_manual(fx);
    guint8 b[4];
    first_init(fx, tc);
    vmc_client_send_message(tc->c, SPICE_MSGC_MIGRATE_FLUSH_MARK, NULL, 0);
    vmc_put_u32le(b, 1);
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS, b, 4);
    vmc_client_send_message(tc->c, SPICE_MSGC_MIGRATE_DATA, b, 4);
    /* answered or cut off, but the server lives */
    vmc_client_send_message(tc->c, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    vmc_test_client_flush(tc, T);
    vmc_test_client_free(tc);
    check_healthy(fx);
}

static void
case_hostile_agent_data_size(Fx *fx)
{
    static const guint32 sizes[] = {0xFFFFFFF8u, 0xFFFFFFFFu, 0x80000000u, 0x7FFFFFF8u, 2049};
    VmcTestAgent *ta = agent(fx);
    for (guint i = 0; i < G_N_ELEMENTS(sizes); i++) {
        VmcTestClient *tc = client(fx);
        wait_started(fx, tc);
        g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
        /* only the header and a few bytes: the size must be refused at the header */
        guint8 some[64] = {0};
        VmcAgentHeader h = {1, 209, 0, 100};
        vmc_agent_header_encode(&h, some);
        vmc_client_send_header(tc->c, SPICE_MSGC_MAIN_AGENT_DATA, sizes[i]);
        vmc_client_send_raw(tc->c, some, sizeof(some));
        if (!vmc_test_client_wait_closed(tc, T)) {
            g_test_message("AGENT_DATA size 0x%x not refused at the header", sizes[i]);
            CHECK(fx, FALSE);
        }
        vmc_test_client_free(tc);
    }
    vmc_test_agent_free(ta);
    check_healthy(fx);
}

static void
case_hostile_agent_data_unstarted(Fx *fx)
{
    /* a huge AGENT_DATA before AGENT_START must not size an allocation either */
    VmcTestClient *tc = client_manual(fx);
    first_init(fx, tc);
    guint8 some[64] = {0};
    vmc_client_send_header(tc->c, SPICE_MSGC_MAIN_AGENT_DATA, 0xFFFFFFF0u);
    vmc_client_send_raw(tc->c, some, sizeof(some));
    CHECK(fx, vmc_test_client_wait_closed(tc, T));
    vmc_test_client_free(tc);
    check_healthy(fx);
}

static void
case_hostile_mc_interleaved(Fx *fx)
{
    /* two clients each leave a message half-written, then both continue */
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *a = client(fx);
    VmcTestClient *b = client(fx);
    wait_started(fx, a);
    wait_started(fx, b);
    g_autofree guint8 *p = g_malloc0(4000);
    vmc_client_send_agent_message_full(a->c, 1, 303, 1, 4000, p, 2028, 0);
    vmc_client_send_agent_message_full(b->c, 1, 303, 2, 4000, p, 2028, 0);
    vmc_test_client_flush(a, T);
    vmc_test_client_flush(b, T);
    vmc_client_send_agent_data(a->c, p, 1972);
    vmc_client_send_agent_data(b->c, p, 1972);
    guint got = 0;
    while (got < 2) {
        VmcAgentPeerEvent e;
        CHECK(fx, vmc_test_agent_wait_msg(ta, 1, 303, &e, T));
        CHECK_EQ(fx, g_bytes_get_size(e.body), 4000);
        vmc_agent_peer_event_clear(&e);
        got++;
    }
    CHECK_EQ(fx, vmc_agent_peer_violations(ta->peer), 0);
    /* a token-starved client that gets tokens while pieces wait for it */
    vmc_test_client_free(b);
    b = NULL;
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.agent_grant = 0;
    VmcTestClient *c = client_cfg(fx, &cfg);
    CHECK(fx, vmc_test_client_wait_linked(c, T));
    wait_started(fx, c);
    for (guint i = 0; i < 8; i++)
        vmc_agent_peer_send(ta->peer, 1, 304, 0, p, 100);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_wait_agent_msg(a, 304, &ev, T));
    vmc_client_event_clear(&ev);
    vmc_client_send_agent_token(c->c, 3);
    vmc_client_send_agent_token(c->c, 0xFFFFFFFFu);
    vmc_client_send_agent_token(c->c, 0xFFFFFFFFu);
    vmc_test_client_flush(c, T);
    vmc_test_client_free(a);
    vmc_test_client_free(c);
    vmc_test_agent_free(ta);
    check_healthy(fx);
}

static void
case_hostile_agent_start_twice(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    vmc_client_send_agent_start(tc->c, 5);
    vmc_client_send_agent_start(tc->c, VMC_AGENT_TOKENS_UNLIMITED);
    vmc_client_send_agent_token(tc->c, 0xFFFFFFFFu);
    vmc_client_send_agent_token(tc->c, 0xFFFFFFFFu);
    check_agent_path(fx, tc, ta);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
    check_healthy(fx);
}

static void
case_hostile_monitors_config(Fx *fx)
{
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    guint8 m[28] = {0};
    vmc_put_u32le(m, 1000); /* num_of_monitors far beyond the body */
    vmc_put_u32le(m + 4, VD_AGENT_CONFIG_MONITORS_FLAG_PHYSICAL_SIZE);
    vmc_client_send_agent_message(tc->c, VD_AGENT_MONITORS_CONFIG, 0, m, sizeof(m));
    vmc_client_send_agent_message(tc->c, VD_AGENT_MONITORS_CONFIG, 0, m, 4);
    vmc_client_send_agent_message(tc->c, VD_AGENT_ANNOUNCE_CAPABILITIES, 0, m, 2);
    vmc_test_client_flush(tc, T);
    vmc_test_client_free(tc);
    vmc_test_agent_free(ta);
    check_healthy(fx);
}

static void
case_hostile_guest(Fx *fx)
{
    /* a huge chunk size, a header split across reads, then the agent goes away
     * in the middle of a message */
    VmcTestAgent *ta = agent(fx);
    VmcTestClient *tc = client(fx);
    wait_started(fx, tc);
    g_autoptr(GPtrArray) sync = agent_barrier(fx, tc, ta);
    guint8 hdr[8 + 20];
    VmcAgentHeader h = {1, VD_AGENT_CLIPBOARD, 0, 0xFFFFFFF0u - 20};
    vmc_chunk_header_encode(1, 0xFFFFFFF0u, hdr);
    vmc_agent_header_encode(&h, hdr + 8);
    vmc_agent_peer_send_raw(ta->peer, hdr, sizeof(hdr));
    g_autofree guint8 *junk = g_malloc0(256 * 1024);
    vmc_agent_peer_send_raw(ta->peer, junk, 256 * 1024);
    vmc_test_agent_flush(ta, T);
    vmc_test_agent_free(ta);
    VmcClientEvent ev;
    CHECK(fx, vmc_test_client_wait_msg(tc, SPICE_MSG_MAIN_AGENT_DISCONNECTED, &ev, T));
    vmc_client_event_clear(&ev);
    vmc_test_client_free(tc);
    check_healthy(fx);
}

/* ================================================================================ */
/* The table */

#define SAME NULL

static const ConfCase cases[] = {
    /* link */
    {"link/reply", "§9.1 #1", B_BOTH, FALSE, NULL,
     "16+186 bytes: REDQ 2.2, error 0, 162-byte SPKI of RSA-1024 e=65537, common caps 0x0B, "
     "main caps 0x06 (NAME_AND_UUID, AGENT_CONNECTED_TOKENS; no migration), caps_offset 178",
     "16+186 bytes: REDQ 2.2, error 0, 162-byte SPKI of RSA-1024 e=65537, common caps 0x0B, "
     "main caps 0x0F, caps_offset 178", case_link_reply},
    {"link/bad-magic", "§9.1 #2, sec L3", B_BOTH, FALSE, NULL,
     "16+178-byte link error INVALID_MAGIC(2), then EOF", SAME, case_link_bad_magic},
    {"link/bad-version", "§9.1 #2", B_BOTH, FALSE, NULL,
     "major 1 or 3: link error VERSION_MISMATCH(4); major 0: closed without a byte", SAME,
     case_link_bad_version},
    {"link/bad-size", "§9.1 #2, sec L1", B_BOTH, FALSE, NULL,
     "size 17, 4097 or 0xAAAAAAAA: link error INVALID_DATA(3), before any allocation", SAME,
     case_link_bad_size},
    {"link/bad-caps", "§9.1 #2, sec L2", B_BOTH, FALSE, NULL,
     "caps_offset 10, 1025 caps words, or counts summing past 32 bits: INVALID_DATA(3)", SAME,
     case_link_bad_caps},
    {"link/minor-version", "§9.1 #2", B_BOTH, FALSE, NULL,
     "minor version 99 is accepted", SAME, case_link_minor},
    {"link/unknown-channel", "§9.1 #3", B_BOTH, FALSE, NULL,
     "DISPLAY link: link error CHANNEL_NOT_AVAILABLE(9)",
     "DISPLAY link (no QXL): closed without a byte", case_link_unknown_channel},
    {"link/other-channel-session", "§9.1 #7", B_BOTH, FALSE, NULL,
     "INPUTS link: CHANNEL_NOT_AVAILABLE(9) (only the main channel exists)",
     "INPUTS link with an unknown connection_id: reply OK, then result BAD_CONNECTION_ID(8)",
     case_link_other_channel},
    {"link/main-connection-id", "§9.1 #8", B_BOTH, FALSE, NULL,
     "main link with connection_id 777: result 0 and a normal session (INIT)",
     "main link with connection_id 777: result 0, treated as a migration target: no INIT",
     case_link_connection_id},
    {"link/second-client", "§9.1 #9", B_BOTH, FALSE, NULL,
     "a second main link closes the first client; the agent gets CLIENT_DISCONNECTED", SAME,
     case_link_second_client},
    {"auth/denied", "§9.1 #4, sec L4", B_BOTH, FALSE, args_password,
     "wrong password, undecryptable ticket, OAEP-SHA256 ticket: result PERMISSION_DENIED(7), "
     "EOF; the server stays up", SAME, case_auth_denied},
    {"auth/password-nul", "§9.1 #4", B_BOTH, FALSE, args_password,
     "the password encrypted with or without its NUL is accepted", SAME, case_auth_nul},
    {"auth/no-auth-selection", "§9.1 #5", B_BOTH, FALSE, args_password,
     "a client without PROTOCOL_AUTH_SELECTION sends the ticket right away: linked", SAME,
     case_auth_no_selection},
    {"auth/bad-mechanism", "§9.1 #6", B_BOTH, FALSE, NULL,
     "mechanism word 5: a second 16+178-byte link error INVALID_DATA(3)", SAME,
     case_auth_bad_mechanism},
    /* main channel */
    {"main/init", "§9.1 #10, #11", B_BOTH, FALSE, NULL,
     "INIT first: session_id != 0, mouse modes 1/1, hints 0, agent_connected 0/1, "
     "agent_tokens = --agent-window (default >= 10); no SET_ACK/NAME/UUID/PING",
     "INIT first: session_id != 0, mouse modes 1/1, hints 0, agent_connected 0/1, "
     "agent_tokens 10; no SET_ACK/NAME/UUID/PING", case_main_init},
    {"main/init-window-10", "§9.1 #11", B_BOTH, FALSE, args_window10,
     "--agent-window 10: INIT.agent_tokens 10", SAME, case_main_init_window},
    {"main/name-uuid", "§9.1 #10", B_BOTH, FALSE, args_name_uuid,
     "INIT, NAME (len+1, NUL), UUID with cap NAME_AND_UUID; neither without it", SAME,
     case_main_name_uuid},
    {"main/full-headers", "§9.1 #10", B_BOTH, FALSE, NULL,
     "client without MINI_HEADER: 18-byte headers, serials 1, 2, 3, ...", SAME,
     case_main_full_headers},
    {"main/channels-list", "§9.1 #12", B_BOTH, FALSE, NULL,
     "ATTACH_CHANNELS -> CHANNELS_LIST with no channels (only main exists)",
     "ATTACH_CHANNELS -> CHANNELS_LIST {INPUTS:0}", case_main_channels_list},
    {"main/ping-tcp", "§9.1 #13", B_BOTH, TRUE, NULL,
     "TCP: no network-test PINGs (nothing to tune)",
     "TCP: PING ids 1,2,3 with 12/12/256012-byte bodies", case_main_ping_tcp},
    {"main/ignored", "§9.1 #14, #15", B_BOTH, FALSE, NULL,
     "ACK_SYNC, ACK, DISCONNECTING, PONG (unknown id), MOUSE_MODE_REQUEST: no reply, no "
     "disconnect", SAME, case_main_ignored},
    {"main/refused", "§9.1 #16, sec M1", B_BOTH, FALSE, NULL,
     "type 113, CLIENT_INFO, QUALITY_INDICATOR, 2-byte AGENT_START, empty AGENT_DATA, 26625-"
     "or 0x7FFFFFFF-byte body: disconnect (the huge one at the header); 26624 bytes accepted",
     SAME, case_main_refused},
    {"main/migrate", "§9.1 #17", B_BOTH, FALSE, NULL,
     "MIGRATE_CONNECTED -> MIGRATE_CANCEL; MIGRATE_DST_DO_SEAMLESS(2) -> NACK", SAME,
     case_main_migrate},
    /* agent lifecycle */
    {"agent/attach-detach", "§9.1 #18, #19", B_BOTH, FALSE, NULL,
     "agent attaches: AGENT_CONNECTED_TOKENS(window) with the cap, else empty "
     "AGENT_CONNECTED; detaches: AGENT_DISCONNECTED(0)",
     "agent attaches: AGENT_CONNECTED_TOKENS(10) with the cap, else empty AGENT_CONNECTED; "
     "detaches: AGENT_DISCONNECTED(0)", case_agent_attach},
    {"agent/client-disconnect", "§9.1 #20", B_BOTH, FALSE, NULL,
     "client leaves (started or not, even mid-message): the agent gets exactly the 28-byte "
     "CLIENT_DISCONNECTED chunk on port 2; the next client's data is intact", SAME,
     case_agent_client_disconnect},
    {"agent/data-before-start", "§9.1 #21", B_BOTH, FALSE, NULL,
     "agent data before the client's AGENT_START is dropped, never delivered later", SAME,
     case_agent_data_before_start},
    /* agent -> client */
    {"tokens/agent-to-client", "§9.1 #22", B_BOTH, FALSE, NULL,
     "AGENT_START(2): 2 AGENT_DATA, then 1 per AGENT_TOKEN(1); AGENT_START(0): none", SAME,
     case_tokens_to_client},
    {"chunks/agent-to-client", "§9.1 #23", B_BOTH, FALSE, NULL,
     "1020-byte chunk -> one AGENT_DATA; 5000-byte chunk -> 2048+2048+904; a message over two "
     "chunks -> pieces of at most 2048 cut from the message stream (e.g. 2048+952); content "
     "intact",
     "1020-byte chunk -> one AGENT_DATA; 5000-byte chunk -> 2048+2048+904; a message over two "
     "chunks -> two AGENT_DATA of the chunk sizes (1500+1500); content intact",
     case_chunks_to_client},
    {"chunks/port-2", "§9.1 #24", B_BOTH, FALSE, NULL,
     "agent messages on port 2 are not delivered to clients", SAME, case_chunks_port2},
    {"chunks/bad-port", "§9.1 #24, sec G1", B_BOTH, FALSE, NULL,
     "chunk on port 3 or 0: AGENT_DISCONNECTED, guest connection dropped, a new agent "
     "connection works", SAME, case_chunks_bad_port},
    {"chunks/protocol", "§9.1 #25", B_BOTH, FALSE, NULL,
     "message with protocol 2: AGENT_DISCONNECTED, guest connection dropped, reconnect works",
     SAME, case_chunks_protocol},
    {"chunks/two-messages", "§9.1 #25", B_BOTH, FALSE, NULL,
     "two messages in one chunk: both delivered, each in its own AGENT_DATA",
     "two messages in one chunk: AGENT_DISCONNECTED, agent dropped", case_chunks_two_messages},
    {"chunks/byte-by-byte", "§9.1 #29", B_BOTH, FALSE, NULL,
     "a chunk written one byte at a time arrives as one intact message", SAME,
     case_chunks_byte_by_byte},
    {"chunks/zero-size", "§9.1 #26, §7 bug 4", B_BOTH, FALSE, NULL,
     "an empty chunk is skipped; later messages are delivered",
     "an empty chunk wedges the agent->client path: nothing is delivered any more",
     case_chunks_zero_size},
    {"chunks/big", "sec G1", B_BOTH, FALSE, NULL,
     "a 1 MB message in one chunk (as spice-vdagentd writes) arrives intact", SAME,
     case_chunks_big},
    /* filters */
    {"filter/no-copy-paste", "§9.1 #27, #32", B_BOTH, FALSE, args_no_copy_paste,
     "--no-copy-paste: caps bits 3,5,6 cleared; clipboard messages dropped both ways", SAME,
     case_filter_copy_paste},
    {"filter/no-file-xfer", "§9.1 #27", B_BOTH, FALSE, args_no_file_xfer,
     "--no-file-xfer: caps bit 13 set; FILE_XFER_START not forwarded, answered "
     "FILE_XFER_STATUS DISABLED(7)",
     "--no-file-xfer: caps bit 13 set; FILE_XFER_START silently dropped (no answer)",
     case_filter_file_xfer},
    {"filter/device-info", "§9.1 #27", B_BOTH, FALSE, NULL,
     "agent caps with GRAPHICS_DEVICE_INFO: no device-info message (no displays)",
     "agent caps with GRAPHICS_DEVICE_INFO: a port-2 GRAPHICS_DEVICE_INFO with count 0",
     case_filter_device_info},
    /* client -> agent */
    {"write/chunks", "§9.1 #30, #34, #35", B_BOTH, FALSE, NULL,
     "each AGENT_DATA becomes one chunk {1, len}+body (2048 then 972 for a 3000-byte "
     "message); unknown types pass unchanged", SAME, case_write_chunks},
    {"write/before-start", "§9.1 #31, sec M4", B_BOTH, FALSE, NULL,
     "AGENT_DATA before AGENT_START: not written, no AGENT_TOKEN, no disconnect", SAME,
     case_write_before_start},
    {"tokens/agent-token-return", "§9.1 #32", B_BOTH, FALSE, NULL,
     "5 written messages give 5 tokens back, in AGENT_TOKENs sent as chunks are written "
     "(batched; often one AGENT_TOKEN(5))",
     "5 written messages give exactly one AGENT_TOKEN(5) (REDS_TOKENS_TO_SEND)",
     case_tokens_to_agent},
    {"tokens/window-overflow", "§9.1 #33, sec M5", B_BOTH, FALSE, NULL,
     "guest not reading: one AGENT_DATA beyond the grant closes the client; server healthy",
     SAME, case_tokens_overflow},
    {"write/bad-agent-data", "§9.1 #34, sec M3 A1 A2", B_BOTH, FALSE, NULL,
     "2049-byte body, <20 bytes at a message start, protocol 2, body past its message end: "
     "disconnect; nothing reaches the agent", SAME, case_write_bad_data},
    {"write/zero-size-junk", "§9.1 #39, §7 bug 12", B_BOTH, FALSE, NULL,
     "header with size 0 plus trailing bytes: disconnect (a body past its message)",
     "header with size 0 plus trailing bytes: forwarded unchanged as one 28-byte chunk",
     case_write_zero_size_junk},
    /* native only */
    {"native/multi-client", "§7, sec A8", B_NATIVE, FALSE, args_two_clients,
     "--max-clients 2: agent messages reach both clients; concurrent multi-part messages are "
     "never spliced; one client leaving does not disturb the other",
     "(only with SPICE_DEBUG_ALLOW_MC; aborts on concurrent messages)", case_native_multi_client},
    {"hostile/agent-token-before-start", "§9.1 crash list, §7 bug 2", B_NATIVE, FALSE, NULL,
     "AGENT_TOKEN before AGENT_START with an agent: ignored; healthy",
     "(process abort)", case_hostile_token_before_start},
    {"hostile/migrate", "§9.1 crash list, §7 bug 3", B_NATIVE, FALSE, NULL,
     "MIGRATE_FLUSH_MARK, MIGRATE_DST_DO_SEAMLESS(1), MIGRATE_DATA: no crash; healthy",
     "(process abort)", case_hostile_migrate},
    {"hostile/agent-data-size", "§7 bug 1, sec M2", B_NATIVE, FALSE, NULL,
     "AGENT_DATA sizes 0xFFFFFFF8, 0xFFFFFFFF, 0x80000000, 0x7FFFFFF8, 2049 refused at the "
     "header (no body awaited); healthy", "(heap overflow / g_malloc abort)",
     case_hostile_agent_data_size},
    {"hostile/agent-data-unstarted", "§7 bug 1, sec M4", B_NATIVE, FALSE, NULL,
     "AGENT_DATA of 0xFFFFFFF0 bytes before AGENT_START refused at the header; healthy",
     "(allocates the declared size)", case_hostile_agent_data_unstarted},
    {"hostile/multi-client-interleaved", "§9.1 crash list, §5.2", B_NATIVE, FALSE,
     args_two_clients,
     "two clients with half-sent messages, a token-starved client given tokens while pieces "
     "wait: messages intact, no crash; healthy", "(process abort)",
     case_hostile_mc_interleaved},
    {"hostile/agent-start-twice", "sec M6", B_NATIVE, FALSE, NULL,
     "repeated AGENT_START, AGENT_TOKEN(0xFFFFFFFF) twice: no wrap, path works; healthy",
     "(not run)", case_hostile_agent_start_twice},
    {"hostile/monitors-config", "sec A4 A5", B_NATIVE, FALSE, NULL,
     "MONITORS_CONFIG with 1000 monitors in 28 bytes or 4 bytes, 2-byte caps: no crash; healthy",
     "(not run)", case_hostile_monitors_config},
    {"hostile/guest-huge-chunk", "sec G1 G3", B_NATIVE, FALSE, NULL,
     "a 0xFFFFFFF0-byte chunk streamed, then the agent leaves mid-message: "
     "AGENT_DISCONNECTED, bounded memory; healthy", "(not run)", case_hostile_guest},
};

static void
run_case(gconstpointer data)
{
    const ConfCase *cc = ((const gpointer *)data)[0];
    const char *backend = ((const gpointer *)data)[1];
    Fx fx = {0};
    g_autoptr(GError) error = NULL;

    if (!vmc_test_backend_available(backend)) {
        g_test_skip(vmc_test_server_binary() ? "backend not built" : "no vmcmux-server yet");
        return;
    }
    fx.cc = cc;
    fx.backend = backend;
    fx.native = g_strcmp0(backend, "native") == 0;
    for (guint i = 0; cc->args && cc->args[i]; i++) {
        if (strcmp(cc->args[i], "--password") == 0 && cc->args[i + 1])
            fx.password = cc->args[i + 1];
    }
    fx.ctx = g_main_context_new();
    g_main_context_push_thread_default(fx.ctx);
    g_test_message("expect (%s): %s", backend,
                   fx.native || !cc->expect_reference ? cc->expect_native : cc->expect_reference);
    fx.srv = vmc_test_server_start(backend, cc->tcp, cc->args, fx.ctx, &error);
    if (!fx.srv) {
        g_test_message("%s", error->message);
        g_assert_not_reached();
    }
    cc->run(&fx);
    CHECK(&fx, vmc_test_server_alive(fx.srv));
    vmc_test_server_free(fx.srv);
    g_main_context_pop_thread_default(fx.ctx);
    g_main_context_unref(fx.ctx);
}

static void
print_markdown(void)
{
    guint both = 0, divergences = 0, native_only = 0;
    printf("| case | agent-protocol.md / security.md | runs on | expected: native | "
           "expected: libspice-server |\n");
    printf("|---|---|---|---|---|\n");
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        const ConfCase *c = &cases[i];
        gboolean on_both = c->backends == B_BOTH;
        both += on_both;
        native_only += !on_both;
        divergences += on_both && c->expect_reference != NULL;
        printf("| `%s` | %s | %s | %s | %s |\n", c->name, c->refs,
               on_both ? "both" : "native only", c->expect_native,
               c->expect_reference ? c->expect_reference : "same");
    }
    printf("\n%u cases: %u on both backends (%u of them with a documented divergence), %u on "
           "the native backend only.\n", (guint)G_N_ELEMENTS(cases), both, divergences,
           native_only);
}

int
main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0) {
            print_markdown();
            return 0;
        }
    }
    g_test_init(&argc, &argv, NULL);
    g_test_summary("Black-box conformance of vmcmux-server against libspice-server 0.15.1 "
                   "(agent-protocol.md §9.1), on both backends");
    static const char *const backends[] = {"native", "spice-server"};
    for (guint b = 0; b < G_N_ELEMENTS(backends); b++) {
        for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
            const ConfCase *cc = &cases[i];
            if (!(cc->backends & (b == 0 ? B_NATIVE : B_REFERENCE)))
                continue;
            gpointer *data = g_new(gpointer, 2);
            data[0] = (gpointer)cc;
            data[1] = (gpointer)backends[b];
            g_autofree char *path = g_strdup_printf("/conformance/%s/%s", backends[b], cc->name);
            g_test_add_data_func_full(path, data, run_case, g_free);
        }
    }
    return g_test_run();
}
