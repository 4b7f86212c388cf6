/* test-client-lib.c — the sans-I/O client and agent peer against scripted bytes. */
#include <string.h>
#include <glib.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <spice/vd_agent.h>

#include "protocol/vmc-chunk.h"
#include "protocol/vmc-header.h"
#include "protocol/vmc-link.h"
#include "protocol/vmc-main.h"
#include "tools/client/vmc-agent-peer.h"
#include "tools/client/vmc-client.h"

/* ---- a scripted server ---- */

typedef struct {
    EVP_PKEY *key;
    guint8 spki[VMC_TICKET_PUBKEY_BYTES];
    gboolean mini;
    guint64 serial;
} FakeServer;

static void
fake_server_init(FakeServer *s)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    g_assert_nonnull(ctx);
    g_assert_cmpint(EVP_PKEY_keygen_init(ctx), >, 0);
    g_assert_cmpint(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 1024), >, 0);
    s->key = NULL;
    g_assert_cmpint(EVP_PKEY_keygen(ctx, &s->key), >, 0);
    EVP_PKEY_CTX_free(ctx);
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(s->key, &der);
    g_assert_cmpint(n, ==, VMC_TICKET_PUBKEY_BYTES);
    memcpy(s->spki, der, VMC_TICKET_PUBKEY_BYTES);
    OPENSSL_free(der);
    s->mini = TRUE;
    s->serial = 0;
}

static void
fake_server_clear(FakeServer *s)
{
    EVP_PKEY_free(s->key);
}

/* Link reply (error 0) with common 0xB, main 0xF. */
static GByteArray *
fake_link_reply(FakeServer *s, guint32 error)
{
    guint8 buf[512];
    VmcLinkReply r = {0};
    guint32 common = 0xB, main_caps = 0xF;

    r.error = error;
    memcpy(r.pub_key, s->spki, sizeof(s->spki));
    gsize n = vmc_link_reply_encode(&r, &common, 1, &main_caps, 1, buf, sizeof(buf));
    g_assert_cmpuint(n, ==, 16 + 178 + 8);
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, buf, (guint)n);
    return b;
}

static char *
fake_decrypt(FakeServer *s, const guint8 *ticket)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(s->key, NULL);
    guint8 out[256];
    size_t outlen = sizeof(out);
    g_assert_cmpint(EVP_PKEY_decrypt_init(ctx), >, 0);
    g_assert_cmpint(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), >, 0);
    int ok = EVP_PKEY_decrypt(ctx, out, &outlen, ticket, VMC_TICKET_CIPHER_BYTES);
    EVP_PKEY_CTX_free(ctx);
    if (ok <= 0)
        return NULL;
    return g_strndup((const char *)out, outlen);
}

static void
feed_message(VmcClient *c, FakeServer *s, guint16 type, const guint8 *body, gsize len)
{
    guint8 hdr[VMC_MAX_HEADER_SIZE];
    VmcDataHeader h = {0};
    h.type = type;
    h.size = (guint32)len;
    h.serial = ++s->serial;
    gsize n = vmc_data_header_encode(&h, s->mini, hdr);
    g_assert_true(vmc_client_feed(c, hdr, n));
    if (len > 0)
        g_assert_true(vmc_client_feed(c, body, len));
}

static void
feed_u32(VmcClient *c, FakeServer *s, guint16 type, guint32 v)
{
    guint8 b[4];
    vmc_put_u32le(b, v);
    feed_message(c, s, type, b, 4);
}

static GByteArray *
take_output(VmcClient *c)
{
    gsize len;
    const guint8 *p = vmc_client_output(c, &len);
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, p, (guint)len);
    vmc_client_output_consume(c, len);
    return b;
}

typedef struct {
    guint16 type;
    GBytes *body;
} OutMsg;

/* Splits client output (data phase) into messages. */
static GArray *
parse_client_messages(const GByteArray *b, gboolean mini)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(OutMsg));
    gsize off = 0;
    while (off < b->len) {
        VmcDataHeader h;
        gsize hl;
        g_assert_cmpint(vmc_data_header_decode(b->data + off, b->len - off, mini, &h, &hl), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(b->len - off - hl, >=, h.size);
        OutMsg m = {h.type, g_bytes_new(b->data + off + hl, h.size)};
        g_array_append_val(a, m);
        off += hl + h.size;
    }
    return a;
}

static void
free_messages(GArray *a)
{
    for (guint i = 0; i < a->len; i++)
        g_bytes_unref(g_array_index(a, OutMsg, i).body);
    g_array_unref(a);
}

static guint
count_events(VmcClient *c, VmcClientEventType type, GPtrArray *keep)
{
    VmcClientEvent ev;
    guint n = 0;
    while (vmc_client_next_event(c, &ev)) {
        if (ev.type == type) {
            n++;
            if (keep) {
                VmcClientEvent *copy = g_new(VmcClientEvent, 1);
                *copy = ev;
                g_ptr_array_add(keep, copy);
                continue;
            }
        }
        vmc_client_event_clear(&ev);
    }
    return n;
}

static void
event_free(gpointer p)
{
    vmc_client_event_clear(p);
    g_free(p);
}

/* Link through to CONNECTED, INIT with agent_connected and `tokens`. */
static VmcClient *
connect_client(FakeServer *s, const VmcClientConfig *cfg, guint32 agent_tokens)
{
    VmcClient *c = vmc_client_new(cfg);
    g_autoptr(GByteArray) link = take_output(c);

    /* header + 18-byte link message + 2 caps words */
    g_assert_cmpuint(link->len, ==, 16 + 18 + 8);
    VmcLinkHeader lh;
    g_assert_cmpint(vmc_link_header_decode(link->data, link->len, TRUE, &lh, NULL), ==,
                    VMC_DECODE_OK);
    VmcLinkMess m;
    g_assert_cmpint(vmc_link_mess_decode(link->data + 16, lh.size, &m, NULL), ==, VMC_DECODE_OK);
    g_assert_cmpuint(m.channel_type, ==, SPICE_CHANNEL_MAIN);
    g_assert_cmphex(m.common_caps[0], ==, cfg->common_caps);

    g_autoptr(GByteArray) reply = fake_link_reply(s, 0);
    g_assert_true(vmc_client_feed(c, reply->data, reply->len));
    g_autoptr(GByteArray) auth = take_output(c);
    g_assert_cmpuint(auth->len, ==, 4 + 128);
    g_assert_cmpuint(vmc_get_u32le(auth->data), ==, SPICE_COMMON_CAP_AUTH_SPICE);
    g_autofree char *pw = fake_decrypt(s, auth->data + 4);
    g_assert_nonnull(pw);
    /* the password is sent with its NUL, as spice-gtk does */
    g_assert_cmpuint(strlen(pw) + 1, ==, strlen(cfg->password ? cfg->password : "") + 1);
    g_assert_cmpstr(pw, ==, cfg->password ? cfg->password : "");
    g_assert_cmpint(vmc_client_get_state(c), ==, VMC_CLIENT_STATE_AUTH);

    guint8 ok[4] = {0};
    g_assert_true(vmc_client_feed(c, ok, 4));
    g_assert_cmpint(vmc_client_get_state(c), ==, VMC_CLIENT_STATE_CONNECTED);
    g_assert_true(vmc_client_uses_mini_header(c));

    VmcMainInit init = {.session_id = 77, .supported_mouse_modes = 1, .current_mouse_mode = 1,
                        .agent_connected = 1, .agent_tokens = agent_tokens};
    guint8 ib[32];
    g_assert_cmpuint(vmc_main_init_encode(&init, ib, sizeof(ib)), ==, 32);
    feed_message(c, s, SPICE_MSG_MAIN_INIT, ib, sizeof(ib));
    return c;
}

static void
test_link_and_init(void)
{
    FakeServer s;
    VmcClientConfig cfg;

    fake_server_init(&s);
    vmc_client_config_init(&cfg);
    cfg.password = "s3cret";
    cfg.agent_grant = 7;
    g_autoptr(VmcClient) c = connect_client(&s, &cfg, 10);

    VmcMainInit init;
    g_assert_true(vmc_client_get_init(c, &init));
    g_assert_cmpuint(init.session_id, ==, 77);
    g_assert_true(vmc_client_agent_connected(c));
    g_assert_true(vmc_client_agent_started(c));
    g_assert_cmpuint(vmc_client_get_server_tokens(c), ==, 10);
    g_autoptr(GByteArray) out = take_output(c);
    GArray *msgs = parse_client_messages(out, TRUE);
    g_assert_cmpuint(msgs->len, ==, 1);
    OutMsg *m = &g_array_index(msgs, OutMsg, 0);
    g_assert_cmpuint(m->type, ==, SPICE_MSGC_MAIN_AGENT_START);
    g_assert_cmpuint(vmc_get_u32le(g_bytes_get_data(m->body, NULL)), ==, 7);
    free_messages(msgs);

    /* events in order: link-reply, linked, message(INIT), agent-connected */
    VmcClientEvent ev;
    static const VmcClientEventType want[] = {VMC_CLIENT_EV_LINK_REPLY, VMC_CLIENT_EV_LINKED,
                                              VMC_CLIENT_EV_MESSAGE,
                                              VMC_CLIENT_EV_AGENT_CONNECTED};
    for (guint i = 0; i < G_N_ELEMENTS(want); i++) {
        g_assert_true(vmc_client_next_event(c, &ev));
        g_assert_cmpint(ev.type, ==, want[i]);
        vmc_client_event_clear(&ev);
    }
    g_assert_false(vmc_client_next_event(c, &ev));

    /* PING -> PONG with the same id and timestamp */
    VmcPing ping = {2, 123456789, 100};
    guint8 pb[200];
    gsize pn = vmc_ping_encode(&ping, pb, sizeof(pb));
    feed_message(c, &s, SPICE_MSG_PING, pb, pn);
    g_autoptr(GByteArray) pong = take_output(c);
    msgs = parse_client_messages(pong, TRUE);
    g_assert_cmpuint(msgs->len, ==, 1);
    m = &g_array_index(msgs, OutMsg, 0);
    g_assert_cmpuint(m->type, ==, SPICE_MSGC_PONG);
    VmcPing back;
    g_assert_cmpint(vmc_pong_decode(g_bytes_get_data(m->body, NULL), g_bytes_get_size(m->body),
                                    &back), ==, VMC_DECODE_OK);
    g_assert_cmpuint(back.id, ==, 2);
    g_assert_cmpuint(back.timestamp, ==, 123456789);
    free_messages(msgs);
    fake_server_clear(&s);
}

static void
test_link_errors(void)
{
    FakeServer s;
    VmcClientConfig cfg;
    VmcClientEvent ev;

    fake_server_init(&s);
    vmc_client_config_init(&cfg);

    /* a link error reply */
    g_autoptr(VmcClient) c = vmc_client_new(&cfg);
    g_autoptr(GByteArray) err = fake_link_reply(&s, SPICE_LINK_ERR_VERSION_MISMATCH);
    g_assert_false(vmc_client_feed(c, err->data, err->len));
    g_assert_cmpint(vmc_client_get_state(c), ==, VMC_CLIENT_STATE_FAILED);
    g_assert_true(vmc_client_next_event(c, &ev));
    g_assert_cmpint(ev.type, ==, VMC_CLIENT_EV_LINK_FAILED);
    g_assert_cmpuint(ev.code, ==, SPICE_LINK_ERR_VERSION_MISMATCH);
    vmc_client_event_clear(&ev);
    g_assert_nonnull(strstr(vmc_client_get_last_error(c), "VERSION_MISMATCH"));

    /* a refused ticket */
    g_autoptr(VmcClient) c2 = vmc_client_new(&cfg);
    g_autoptr(GByteArray) ok = fake_link_reply(&s, 0);
    g_assert_true(vmc_client_feed(c2, ok->data, ok->len));
    guint8 denied[4];
    vmc_put_u32le(denied, SPICE_LINK_ERR_PERMISSION_DENIED);
    g_assert_false(vmc_client_feed(c2, denied, 4));
    g_assert_cmpuint(count_events(c2, VMC_CLIENT_EV_LINK_FAILED, NULL), ==, 1);

    /* a second link reply after the ticket (bad mechanism), fed byte by byte */
    g_autoptr(VmcClient) c3 = vmc_client_new(&cfg);
    g_assert_true(vmc_client_feed(c3, ok->data, ok->len));
    guint8 second[16 + 178];
    vmc_link_error_encode(SPICE_LINK_ERR_INVALID_DATA, second);
    for (guint i = 0; i < sizeof(second); i++)
        vmc_client_feed(c3, second + i, 1);
    g_assert_cmpint(vmc_client_get_state(c3), ==, VMC_CLIENT_STATE_FAILED);
    g_autoptr(GPtrArray) fails = g_ptr_array_new_with_free_func(event_free);
    g_assert_cmpuint(count_events(c3, VMC_CLIENT_EV_LINK_FAILED, fails), ==, 1);
    g_assert_cmpuint(((VmcClientEvent *)fails->pdata[0])->code, ==, SPICE_LINK_ERR_INVALID_DATA);

    /* EOF during the link */
    g_autoptr(VmcClient) c4 = vmc_client_new(&cfg);
    vmc_client_feed_eof(c4);
    g_assert_cmpint(vmc_client_get_state(c4), ==, VMC_CLIENT_STATE_FAILED);
    g_assert_nonnull(strstr(vmc_client_get_last_error(c4), "without a link reply"));
    fake_server_clear(&s);
}

/* Outgoing agent messages: chunking and tokens. */
static void
test_tokens_and_chunking(void)
{
    FakeServer s;
    VmcClientConfig cfg;

    fake_server_init(&s);
    vmc_client_config_init(&cfg);
    g_autoptr(VmcClient) c = connect_client(&s, &cfg, 3);
    g_autoptr(GByteArray) start = take_output(c);

    g_autofree guint8 *payload = g_malloc(5000);
    for (guint i = 0; i < 5000; i++)
        payload[i] = (guint8)i;
    /* 5000 + 20 bytes: bodies 2048 (header + 2028), 2048, 924 */
    vmc_client_send_agent_message(c, VD_AGENT_CLIPBOARD, 9, payload, 5000);
    vmc_client_send_agent_message(c, VD_AGENT_CLIPBOARD_RELEASE, 0, NULL, 0);
    g_autoptr(GByteArray) out = take_output(c);
    GArray *msgs = parse_client_messages(out, TRUE);
    g_assert_cmpuint(msgs->len, ==, 3);
    g_assert_cmpuint(g_bytes_get_size(g_array_index(msgs, OutMsg, 0).body), ==, 2048);
    g_assert_cmpuint(g_bytes_get_size(g_array_index(msgs, OutMsg, 1).body), ==, 2048);
    g_assert_cmpuint(g_bytes_get_size(g_array_index(msgs, OutMsg, 2).body), ==, 924);
    const guint8 *b0 = g_bytes_get_data(g_array_index(msgs, OutMsg, 0).body, NULL);
    VmcAgentHeader h;
    g_assert_cmpint(vmc_agent_header_decode(b0, 20, &h, NULL), ==, VMC_DECODE_OK);
    g_assert_cmpuint(h.type, ==, VD_AGENT_CLIPBOARD);
    g_assert_cmpuint(h.size, ==, 5000);
    g_assert_cmpuint(h.opaque, ==, 9);
    g_assert_cmpmem(b0 + 20, 2028, payload, 2028);
    free_messages(msgs);
    g_assert_cmpuint(vmc_client_get_server_tokens(c), ==, 0);
    g_assert_cmpuint(vmc_client_agent_pending_messages(c), ==, 1);
    g_assert_cmpuint(vmc_client_agent_pending(c), ==, 20);

    /* AGENT_TOKEN(1) releases the RELEASE message */
    feed_u32(c, &s, SPICE_MSG_MAIN_AGENT_TOKEN, 1);
    g_autoptr(GByteArray) out2 = take_output(c);
    msgs = parse_client_messages(out2, TRUE);
    g_assert_cmpuint(msgs->len, ==, 1);
    g_assert_cmpuint(g_bytes_get_size(g_array_index(msgs, OutMsg, 0).body), ==, 20);
    free_messages(msgs);
    g_assert_cmpuint(vmc_client_agent_pending(c), ==, 0);

    /* AGENT_CONNECTED_TOKENS sets (not adds) and restarts the agent */
    feed_u32(c, &s, SPICE_MSG_MAIN_AGENT_TOKEN, 4);
    g_assert_cmpuint(vmc_client_get_server_tokens(c), ==, 4);
    feed_u32(c, &s, SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS, 2);
    g_assert_cmpuint(vmc_client_get_server_tokens(c), ==, 2);
    g_autoptr(GByteArray) out3 = take_output(c);
    msgs = parse_client_messages(out3, TRUE);
    g_assert_cmpuint(msgs->len, ==, 1);
    g_assert_cmpuint(g_array_index(msgs, OutMsg, 0).type, ==, SPICE_MSGC_MAIN_AGENT_START);
    free_messages(msgs);

    /* AGENT_DISCONNECTED drops the queue */
    feed_u32(c, &s, SPICE_MSG_MAIN_AGENT_TOKEN, 0);
    vmc_client_send_agent_message(c, 99, 0, payload, 4900);
    vmc_client_send_agent_message(c, 99, 0, payload, 4900);
    g_assert_cmpuint(vmc_client_agent_pending_messages(c), ==, 1);
    feed_u32(c, &s, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);
    g_assert_cmpuint(vmc_client_agent_pending(c), ==, 0);
    g_assert_false(vmc_client_agent_connected(c));
    g_assert_cmpuint(count_events(c, VMC_CLIENT_EV_AGENT_DISCONNECTED, NULL), ==, 1);
    fake_server_clear(&s);
}

/* Incoming AGENT_DATA: reassembly across any split, grants and refills. */
static void
test_reassembly(void)
{
    FakeServer s;
    VmcClientConfig cfg;

    fake_server_init(&s);
    vmc_client_config_init(&cfg);
    cfg.agent_grant = 4;
    cfg.token_refill = 2;
    g_autoptr(VmcClient) c = connect_client(&s, &cfg, 10);
    g_autoptr(GByteArray) start = take_output(c);
    count_events(c, VMC_CLIENT_EV_MESSAGE, NULL);

    /* stream: caps(8) + clipboard(3000) + empty(0) */
    GByteArray *stream = g_byte_array_new();
    guint8 hdr[20];
    VmcAgentHeader h1 = {1, VD_AGENT_ANNOUNCE_CAPABILITIES, 0, 8};
    guint8 caps[8];
    vmc_put_u32le(caps, 1);
    vmc_put_u32le(caps + 4, 0x00038de7);
    vmc_agent_header_encode(&h1, hdr);
    g_byte_array_append(stream, hdr, 20);
    g_byte_array_append(stream, caps, 8);
    VmcAgentHeader h2 = {1, VD_AGENT_CLIPBOARD, 5, 3000};
    vmc_agent_header_encode(&h2, hdr);
    g_byte_array_append(stream, hdr, 20);
    for (guint i = 0; i < 3000; i++) {
        guint8 v = (guint8)(i * 3);
        g_byte_array_append(stream, &v, 1);
    }
    VmcAgentHeader h3 = {1, 99, 1, 0};
    vmc_agent_header_encode(&h3, hdr);
    g_byte_array_append(stream, hdr, 20);

    /* bodies: 7 | 2000 | rest (header splits and several messages in one body) */
    gsize cuts[] = {0, 7, 2007, stream->len};
    for (guint i = 0; i + 1 < G_N_ELEMENTS(cuts); i++)
        feed_message(c, &s, SPICE_MSG_MAIN_AGENT_DATA, stream->data + cuts[i],
                     cuts[i + 1] - cuts[i]);
    g_autoptr(GPtrArray) msgs = g_ptr_array_new_with_free_func(event_free);
    g_assert_cmpuint(count_events(c, VMC_CLIENT_EV_AGENT_MESSAGE, msgs), ==, 3);
    VmcClientEvent *e = msgs->pdata[0];
    g_assert_cmpuint(e->agent.type, ==, VD_AGENT_ANNOUNCE_CAPABILITIES);
    g_assert_true(vmc_client_agent_caps_received(c));
    g_assert_true(vmc_client_agent_has_cap(c, VD_AGENT_CAP_GRAPHICS_DEVICE_INFO));
    g_assert_false(vmc_client_agent_has_cap(c, VD_AGENT_CAP_FILE_XFER_DISABLED));
    e = msgs->pdata[1];
    g_assert_cmpuint(e->agent.size, ==, 3000);
    g_assert_cmpmem(g_bytes_get_data(e->body, NULL), g_bytes_get_size(e->body),
                    stream->data + 48, 3000);
    e = msgs->pdata[2];
    g_assert_cmpuint(e->agent.type, ==, 99);
    g_assert_cmpuint(g_bytes_get_size(e->body), ==, 0);
    /* 2 of the 3 bodies carried bytes of two messages */
    g_assert_cmpuint(vmc_client_get_multi_message_bodies(c), ==, 2);

    /* grant 4, refill after 2: one AGENT_TOKEN(2) went out after the 2nd body */
    g_autoptr(GByteArray) out = take_output(c);
    GArray *o = parse_client_messages(out, TRUE);
    g_assert_cmpuint(o->len, ==, 1);
    g_assert_cmpuint(g_array_index(o, OutMsg, 0).type, ==, SPICE_MSGC_MAIN_AGENT_TOKEN);
    g_assert_cmpuint(vmc_get_u32le(g_bytes_get_data(g_array_index(o, OutMsg, 0).body, NULL)), ==,
                     2);
    free_messages(o);
    g_assert_cmpuint(vmc_client_get_grant_left(c), ==, 3);
    g_assert_cmpuint(vmc_client_get_grant_violations(c), ==, 0);
    g_byte_array_unref(stream);
    fake_server_clear(&s);
}

static void
test_full_headers(void)
{
    FakeServer s;
    VmcClientConfig cfg;

    fake_server_init(&s);
    vmc_client_config_init(&cfg);
    cfg.common_caps &= ~(1u << SPICE_COMMON_CAP_MINI_HEADER);
    g_autoptr(VmcClient) c = vmc_client_new(&cfg);
    g_autoptr(GByteArray) link = take_output(c);
    g_autoptr(GByteArray) reply = fake_link_reply(&s, 0);
    vmc_client_feed(c, reply->data, reply->len);
    g_autoptr(GByteArray) auth = take_output(c);
    guint8 ok[4] = {0};
    vmc_client_feed(c, ok, 4);
    g_assert_false(vmc_client_uses_mini_header(c));
    vmc_client_send_message(c, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    vmc_client_send_message(c, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    g_autoptr(GByteArray) out = take_output(c);
    g_assert_cmpuint(out->len, ==, 36);
    VmcDataHeader h;
    g_assert_cmpint(vmc_data_header_decode(out->data + 18, 18, FALSE, &h, NULL), ==,
                    VMC_DECODE_OK);
    g_assert_cmpuint(h.serial, ==, 2);
    g_assert_cmpuint(h.type, ==, SPICE_MSGC_MAIN_ATTACH_CHANNELS);
    fake_server_clear(&s);
}

/* ---- input split anywhere ---- */

/* One line per event: what a consumer can see of it. */
static char *
describe_events(VmcClient *c)
{
    GString *out = g_string_new(NULL);
    VmcClientEvent ev;

    while (vmc_client_next_event(c, &ev)) {
        gsize len = 0;
        const guint8 *d = ev.body ? g_bytes_get_data(ev.body, &len) : NULL;
        g_autofree char *sum = d ? g_compute_checksum_for_data(G_CHECKSUM_SHA1, d, len)
                                 : g_strdup("-");
        g_string_append_printf(out, "%s code=%u msg=%u serial=%" G_GUINT64_FORMAT
                               " body=%zu:%s agent=%u/%u/%" G_GUINT64_FORMAT "/%u trunc=%d %s\n",
                               vmc_client_event_type_name(ev.type), ev.code, ev.msg_type,
                               ev.serial, (size_t)len, sum, ev.agent.protocol, ev.agent.type,
                               ev.agent.opaque, ev.agent.size, ev.truncated,
                               ev.detail ? ev.detail : "");
        vmc_client_event_clear(&ev);
    }
    return g_string_free(out, FALSE);
}

static void
append_message(GByteArray *b, FakeServer *s, guint16 type, const guint8 *body, gsize len)
{
    guint8 hdr[VMC_MAX_HEADER_SIZE];
    VmcDataHeader h = {0};

    h.type = type;
    h.size = (guint32)len;
    h.serial = ++s->serial;
    g_byte_array_append(b, hdr, (guint)vmc_data_header_encode(&h, s->mini, hdr));
    g_byte_array_append(b, body, (guint)len);
}

/* Everything a server sends from the link reply on: reply, link result, INIT, a PING,
 * AGENT_DATA carrying three agent messages (cut mid-header and mid-payload), NAME, an
 * AGENT_TOKEN. */
static GByteArray *
server_stream(FakeServer *s)
{
    GByteArray *b = fake_link_reply(s, 0);
    GByteArray *agent = g_byte_array_new();
    guint8 buf[4096];

    s->serial = 0;
    memset(buf, 0, 4);
    g_byte_array_append(b, buf, 4); /* link result OK */
    VmcMainInit init = {.session_id = 5, .supported_mouse_modes = 1, .current_mouse_mode = 1,
                        .agent_connected = 1, .agent_tokens = 10};
    append_message(b, s, SPICE_MSG_MAIN_INIT, buf,
                   vmc_main_init_encode(&init, buf, sizeof(buf)));
    VmcPing ping = {1, 42, 0};
    append_message(b, s, SPICE_MSG_PING, buf, vmc_ping_encode(&ping, buf, sizeof(buf)));
    for (guint m = 0; m < 3; m++) {
        guint32 size = m == 1 ? 2500 : 30 + m;
        VmcAgentHeader h = {1, VD_AGENT_CLIPBOARD, m, size};
        vmc_agent_header_encode(&h, buf);
        g_byte_array_append(agent, buf, 20);
        for (guint32 i = 0; i < size; i++)
            buf[i] = (guint8)(i * 7 + m);
        g_byte_array_append(agent, buf, size);
    }
    gsize cuts[] = {0, 10, 45, 2048, agent->len};
    for (guint i = 0; i + 1 < G_N_ELEMENTS(cuts); i++)
        append_message(b, s, SPICE_MSG_MAIN_AGENT_DATA, agent->data + cuts[i],
                       cuts[i + 1] - cuts[i]);
    append_message(b, s, SPICE_MSG_MAIN_NAME, buf,
                   vmc_main_name_encode("split-test", buf, sizeof(buf)));
    vmc_put_u32le(buf, 3);
    append_message(b, s, SPICE_MSG_MAIN_AGENT_TOKEN, buf, 4);
    g_byte_array_unref(agent);
    return b;
}

/* Feeds `stream` in pieces ending at `cuts` (ascending, the last one stream->len). */
static char *
feed_pieces(FakeServer *s, const VmcClientConfig *cfg, const GByteArray *stream,
            const gsize *cuts, guint ncuts)
{
    g_autoptr(VmcClient) c = vmc_client_new(cfg);
    gsize off = 0;

    for (guint i = 0; i < ncuts; i++) {
        g_assert_cmpuint(cuts[i], <=, stream->len);
        g_assert_true(vmc_client_feed(c, stream->data + off, cuts[i] - off));
        off = cuts[i];
    }
    g_assert_cmpint(vmc_client_get_state(c), ==, VMC_CLIENT_STATE_CONNECTED);
    g_assert_cmpstr(vmc_client_get_name(c), ==, "split-test");
    g_assert_cmpuint(vmc_client_get_server_tokens(c), ==, 13);
    return describe_events(c);
}

static void
test_feed_splits(void)
{
    FakeServer s;
    VmcClientConfig cfg;

    static const guint8 ticket[VMC_TICKET_CIPHER_BYTES] = {1}; /* no RSA work per client */

    fake_server_init(&s);
    vmc_client_config_init(&cfg);
    cfg.ticket = ticket;
    g_autoptr(GByteArray) stream = server_stream(&s);
    gsize all = stream->len;
    g_autofree char *whole = feed_pieces(&s, &cfg, stream, &all, 1);

    /* 3 agent messages; the MESSAGE events include the 4 AGENT_DATA */
    g_assert_nonnull(strstr(whole, "agent=1/4/2/32"));
    {
        g_auto(GStrv) lines = g_strsplit(whole, "\n", -1);
        g_autofree char *data_tag = g_strdup_printf(" msg=%u ", SPICE_MSG_MAIN_AGENT_DATA);
        guint agent = 0, data = 0;
        for (guint i = 0; lines[i]; i++) {
            agent += g_str_has_prefix(lines[i], "agent-message ");
            data += g_str_has_prefix(lines[i], "message ") && strstr(lines[i], data_tag);
        }
        g_assert_cmpuint(agent, ==, 3);
        g_assert_cmpuint(data, ==, 4);
    }

    /* two pieces, cut at every offset */
    for (gsize cut = 1; cut < all; cut++) {
        gsize cuts[2] = {cut, all};
        g_autofree char *got = feed_pieces(&s, &cfg, stream, cuts, 2);
        g_assert_cmpstr(got, ==, whole);
    }
    /* byte by byte */
    {
        g_autofree gsize *cuts = g_new(gsize, all);
        for (gsize i = 0; i < all; i++)
            cuts[i] = i + 1;
        g_autofree char *got = feed_pieces(&s, &cfg, stream, cuts, (guint)all);
        g_assert_cmpstr(got, ==, whole);
    }
    /* random pieces */
    for (guint round = 0; round < 50; round++) {
        g_autoptr(GArray) cuts = g_array_new(FALSE, FALSE, sizeof(gsize));
        gsize at = 0;
        while (at < all) {
            gsize step = (gsize)g_test_rand_int_range(1, 3000);
            at = MIN(all, at + step);
            g_array_append_val(cuts, at);
        }
        g_autofree char *got = feed_pieces(&s, &cfg, stream, (gsize *)cuts->data, cuts->len);
        g_assert_cmpstr(got, ==, whole);
    }
    fake_server_clear(&s);
}

/* agent_data_messages FALSE: the same agent messages, no MESSAGE event per AGENT_DATA. */
static void
test_no_agent_data_messages(void)
{
    FakeServer s;
    VmcClientConfig cfg;

    fake_server_init(&s);
    vmc_client_config_init(&cfg);
    g_autoptr(GByteArray) stream = server_stream(&s);
    gsize all = stream->len;
    g_autofree char *with = feed_pieces(&s, &cfg, stream, &all, 1);
    cfg.agent_data_messages = FALSE;
    gsize cuts[3] = {all / 3, 2 * all / 3, all};
    g_autofree char *without = feed_pieces(&s, &cfg, stream, cuts, 3);

    GString *expect = g_string_new(NULL);
    g_auto(GStrv) lines = g_strsplit(with, "\n", -1);
    g_autofree char *data_tag = g_strdup_printf(" msg=%u ", SPICE_MSG_MAIN_AGENT_DATA);
    for (guint i = 0; lines[i] && lines[i][0]; i++) {
        if (g_str_has_prefix(lines[i], "message ") && strstr(lines[i], data_tag))
            continue;
        g_string_append_printf(expect, "%s\n", lines[i]);
    }
    g_autofree char *want = g_string_free(expect, FALSE);
    g_assert_cmpstr(without, ==, want);
    g_assert_nonnull(strstr(without, "agent-message "));
    fake_server_clear(&s);
}

/* A message over max_message fails the client, even when its header is cut. */
static void
test_message_too_large(void)
{
    FakeServer s;
    VmcClientConfig cfg;
    guint8 hdr[VMC_MAX_HEADER_SIZE];
    VmcDataHeader h = {.type = SPICE_MSG_MAIN_NAME, .size = 5000};

    fake_server_init(&s);
    vmc_client_config_init(&cfg);
    cfg.max_message = 4096;
    for (guint split = 0; split <= 6; split++) {
        g_autoptr(VmcClient) c = connect_client(&s, &cfg, 10);
        count_events(c, VMC_CLIENT_EV_MESSAGE, NULL);
        gsize n = vmc_data_header_encode(&h, TRUE, hdr);
        gboolean ok = vmc_client_feed(c, hdr, split);
        ok = vmc_client_feed(c, hdr + split, n - split) && ok;
        g_assert_false(ok);
        g_assert_cmpint(vmc_client_get_state(c), ==, VMC_CLIENT_STATE_FAILED);
        g_assert_nonnull(strstr(vmc_client_get_last_error(c), "limit 4096"));
        g_assert_false(vmc_client_feed(c, hdr, n));
    }
    fake_server_clear(&s);
}

/* ---- agent peer ---- */

static guint
peer_events(VmcAgentPeer *p, VmcAgentPeerEventType type, GPtrArray *keep)
{
    VmcAgentPeerEvent ev;
    guint n = 0;
    while (vmc_agent_peer_next_event(p, &ev)) {
        if (ev.type == type) {
            n++;
            if (keep) {
                VmcAgentPeerEvent *copy = g_new(VmcAgentPeerEvent, 1);
                *copy = ev;
                g_ptr_array_add(keep, copy);
                continue;
            }
        }
        vmc_agent_peer_event_clear(&ev);
    }
    return n;
}

static void
peer_event_free(gpointer p)
{
    vmc_agent_peer_event_clear(p);
    g_free(p);
}

static void
test_agent_peer(void)
{
    g_autoptr(VmcAgentPeer) p = vmc_agent_peer_new();
    g_autoptr(VmcAgentPeer) tx = vmc_agent_peer_new();
    g_autofree guint8 *payload = g_malloc(4100);

    for (guint i = 0; i < 4100; i++)
        payload[i] = (guint8)(i ^ 0x5a);
    /* a 4100-byte message in 2048-byte chunks, then a port-2 message, one byte at a time */
    vmc_agent_peer_send(tx, 1, VD_AGENT_CLIPBOARD, 3, payload, 4100);
    vmc_agent_peer_send(tx, 2, VD_AGENT_CLIENT_DISCONNECTED, 0, NULL, 0);
    gsize len;
    const guint8 *bytes = vmc_agent_peer_output(tx, &len);
    g_assert_cmpuint(len, ==, 4120 + 3 * 8 + 28);
    g_assert_cmpuint(vmc_get_u32le(bytes + 4), ==, 2048);
    vmc_agent_peer_set_record_chunks(p, TRUE);
    for (gsize i = 0; i < len; i++)
        vmc_agent_peer_feed(p, bytes + i, 1);
    g_autoptr(GPtrArray) msgs = g_ptr_array_new_with_free_func(peer_event_free);
    g_assert_cmpuint(peer_events(p, VMC_AGENT_PEER_EV_MESSAGE, msgs), ==, 2);
    VmcAgentPeerEvent *e = msgs->pdata[0];
    g_assert_cmpuint(e->port, ==, 1);
    g_assert_cmpmem(g_bytes_get_data(e->body, NULL), g_bytes_get_size(e->body), payload, 4100);
    e = msgs->pdata[1];
    g_assert_cmpuint(e->port, ==, 2);
    g_assert_cmpuint(e->header.type, ==, VD_AGENT_CLIENT_DISCONNECTED);
    g_assert_cmpuint(vmc_agent_peer_violations(p), ==, 0);
    g_assert_cmpuint(vmc_agent_peer_chunks_received(p), ==, 4);
    vmc_agent_peer_output_consume(tx, len);

    /* violations: a 3000-byte chunk, two messages in one chunk, then port 3 */
    vmc_agent_peer_send_full(tx, 1, 1, 99, 0, 2980, payload, 2980, 0);
    guint8 two[56];
    VmcAgentHeader h = {1, 98, 0, 0};
    vmc_chunk_header_encode(1, 40, two);
    vmc_agent_header_encode(&h, two + 8);
    vmc_agent_header_encode(&h, two + 28);
    vmc_agent_peer_send_raw(tx, two, 48);
    vmc_chunk_header_encode(3, 4, two);
    vmc_agent_peer_send_raw(tx, two, 12);
    bytes = vmc_agent_peer_output(tx, &len);
    vmc_agent_peer_feed(p, bytes, len);
    g_autoptr(GPtrArray) v = g_ptr_array_new_with_free_func(peer_event_free);
    g_assert_cmpuint(peer_events(p, VMC_AGENT_PEER_EV_VIOLATION, v), ==, 3);
    g_assert_nonnull(strstr(((VmcAgentPeerEvent *)v->pdata[0])->detail, "3000 bytes"));
    g_assert_nonnull(strstr(((VmcAgentPeerEvent *)v->pdata[1])->detail, "two messages"));
    g_assert_nonnull(strstr(((VmcAgentPeerEvent *)v->pdata[2])->detail, "port 3"));
}

/* Outgoing chunking at any size, the agent header cut or not. */
static void
test_agent_peer_chunking(void)
{
    static const gsize sizes[] = {1, 7, 19, 20, 21, 64, 2048, 0};
    guint8 payload[300];

    for (guint i = 0; i < sizeof(payload); i++)
        payload[i] = (guint8)(i * 13 + 1);
    for (guint k = 0; k < G_N_ELEMENTS(sizes); k++) {
        g_autoptr(VmcAgentPeer) tx = vmc_agent_peer_new();
        g_autoptr(VmcAgentPeer) rx = vmc_agent_peer_new();
        guint8 want[20 + sizeof(payload)];
        VmcAgentHeader h = {1, VD_AGENT_CLIPBOARD, 77, sizeof(payload)};
        gsize len, off = 0, got = 0, max = sizes[k] ? sizes[k] : sizeof(want);

        vmc_agent_header_encode(&h, want);
        memcpy(want + 20, payload, sizeof(payload));
        vmc_agent_peer_set_max_chunk(tx, sizes[k]);
        vmc_agent_peer_send(tx, VMC_PORT_CLIENT, VD_AGENT_CLIPBOARD, 77, payload,
                            sizeof(payload));
        const guint8 *out = vmc_agent_peer_output(tx, &len);
        while (off < len) {
            g_assert_cmpuint(len - off, >=, 8);
            g_assert_cmpuint(vmc_get_u32le(out + off), ==, VMC_PORT_CLIENT);
            gsize n = vmc_get_u32le(out + off + 4);
            g_assert_cmpuint(n, ==, MIN(max, sizeof(want) - got));
            g_assert_cmpmem(out + off + 8, n, want + got, n);
            off += 8 + n;
            got += n;
        }
        g_assert_cmpuint(got, ==, sizeof(want));
        vmc_agent_peer_feed(rx, out, len);
        g_autoptr(GPtrArray) msgs = g_ptr_array_new_with_free_func(peer_event_free);
        g_assert_cmpuint(peer_events(rx, VMC_AGENT_PEER_EV_MESSAGE, msgs), ==, 1);
        VmcAgentPeerEvent *e = msgs->pdata[0];
        g_assert_cmpmem(g_bytes_get_data(e->body, NULL), g_bytes_get_size(e->body), payload,
                        sizeof(payload));
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("Sans-I/O SPICE client and guest-agent peer against scripted bytes");
    g_test_add_func("/client/lib/link-and-init", test_link_and_init);
    g_test_add_func("/client/lib/link-errors", test_link_errors);
    g_test_add_func("/client/lib/tokens-and-chunking", test_tokens_and_chunking);
    g_test_add_func("/client/lib/reassembly", test_reassembly);
    g_test_add_func("/client/lib/full-headers", test_full_headers);
    g_test_add_func("/client/lib/feed-splits", test_feed_splits);
    g_test_add_func("/client/lib/no-agent-data-messages", test_no_agent_data_messages);
    g_test_add_func("/client/lib/message-too-large", test_message_too_large);
    g_test_add_func("/client/lib/agent-peer", test_agent_peer);
    g_test_add_func("/client/lib/agent-peer-chunking", test_agent_peer_chunking);
    return g_test_run();
}
