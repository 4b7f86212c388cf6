/* vmc-client.c — sans-I/O SPICE main-channel client (see vmc-client.h). */
#include "tools/client/vmc-client.h"

#include <string.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <spice/vd_agent.h>

#include "protocol/vmc-header.h"
#include "tools/client/vmc-assemble.h"

#define MAX_LINK_REPLY 65536u
#define MAX_AGENT_CAPS_WORDS 8u

struct _VmcClient {
    VmcClientConfig cfg;
    char *password;
    guint8 *ticket;
    VmcClientState state;
    char *last_error;
    GByteArray *in;
    GByteArray *out;
    gsize out_off;
    GQueue events;
    VmcClientNotifyFunc notify;
    gpointer notify_data;

    gboolean second_reply;  /* a link error reply after the ticket (bad mechanism) */
    gboolean have_reply;
    VmcLinkReply reply;
    gboolean mini;
    guint64 serial_out;

    gboolean have_init;
    VmcMainInit init;
    char *name;
    gboolean have_uuid;
    guint8 uuid[16];

    gboolean agent_connected;
    gboolean agent_started;
    guint32 server_tokens;
    guint32 grant_left;
    guint32 refill_count;
    guint64 grant_violations;
    guint64 multi_bodies;
    GQueue agent_queue;       /* GBytes*: AGENT_DATA bodies not yet in `out` */
    gsize agent_queue_bytes;
    guint agent_queue_msgs;   /* bodies that start a message */
    GQueue agent_queue_starts;/* GINT_TO_POINTER(starts-a-message) parallel to agent_queue */
    VmcAssembler rx;
    guint32 agent_caps[MAX_AGENT_CAPS_WORDS];
    gsize agent_ncaps;
    gboolean caps_received;
};

void
vmc_client_config_init(VmcClientConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->channel_type = SPICE_CHANNEL_MAIN;
    cfg->link_major = VMC_LINK_VERSION_MAJOR;
    cfg->link_minor = VMC_LINK_VERSION_MINOR;
    cfg->common_caps = (1u << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION) |
                       (1u << SPICE_COMMON_CAP_AUTH_SPICE) | (1u << SPICE_COMMON_CAP_MINI_HEADER);
    cfg->channel_caps = (1u << SPICE_MAIN_CAP_SEMI_SEAMLESS_MIGRATE) |
                        (1u << SPICE_MAIN_CAP_NAME_AND_UUID) |
                        (1u << SPICE_MAIN_CAP_AGENT_CONNECTED_TOKENS) |
                        (1u << SPICE_MAIN_CAP_SEAMLESS_MIGRATE);
    cfg->auth_mechanism = SPICE_COMMON_CAP_AUTH_SPICE;
    cfg->agent_grant = VMC_AGENT_TOKENS_UNLIMITED;
    cfg->auto_agent_start = TRUE;
    cfg->auto_pong = TRUE;
    cfg->respect_tokens = TRUE;
    cfg->max_agent_message = 64u * 1024u * 1024u;
    cfg->max_message = 16u * 1024u * 1024u;
    cfg->agent_data_messages = TRUE;
}

static const char *const event_names[] = {
    [VMC_CLIENT_EV_LINK_REPLY] = "link-reply",
    [VMC_CLIENT_EV_LINK_FAILED] = "link-failed",
    [VMC_CLIENT_EV_LINKED] = "linked",
    [VMC_CLIENT_EV_MESSAGE] = "message",
    [VMC_CLIENT_EV_AGENT_CONNECTED] = "agent-connected",
    [VMC_CLIENT_EV_AGENT_DISCONNECTED] = "agent-disconnected",
    [VMC_CLIENT_EV_AGENT_MESSAGE] = "agent-message",
    [VMC_CLIENT_EV_PROTOCOL_ERROR] = "protocol-error",
};

const char *
vmc_client_event_type_name(VmcClientEventType type)
{
    if ((guint)type < G_N_ELEMENTS(event_names))
        return event_names[type];
    return "?";
}

void
vmc_client_event_clear(VmcClientEvent *ev)
{
    if (ev->body)
        g_bytes_unref(ev->body);
    g_free(ev->detail);
    memset(ev, 0, sizeof(*ev));
}

static VmcClientEvent *
push_event(VmcClient *c, VmcClientEventType type)
{
    VmcClientEvent *ev = g_new0(VmcClientEvent, 1);
    ev->type = type;
    g_queue_push_tail(&c->events, ev);
    return ev;
}

static void
out_append(VmcClient *c, const guint8 *data, gsize len)
{
    gboolean was_empty = c->out->len == c->out_off;

    if (len == 0)
        return;
    g_byte_array_append(c->out, data, (guint)len);
    if (was_empty && c->notify)
        c->notify(c->notify_data);
}

VmcClient *
vmc_client_new(const VmcClientConfig *cfg)
{
    VmcClient *c = g_new0(VmcClient, 1);
    guint8 buf[VMC_LINK_HEADER_SIZE + VMC_LINK_MESS_SIZE + 8];
    VmcLinkMess m = {0};
    VmcLinkHeader h;

    c->cfg = *cfg;
    c->password = g_strdup(cfg->password ? cfg->password : "");
    c->cfg.password = c->password;
    if (cfg->ticket) {
        c->ticket = g_memdup2(cfg->ticket, VMC_TICKET_CIPHER_BYTES);
        c->cfg.ticket = c->ticket;
    }
    c->in = g_byte_array_new();
    c->out = g_byte_array_new();
    g_queue_init(&c->events);
    g_queue_init(&c->agent_queue);
    g_queue_init(&c->agent_queue_starts);
    vmc_assembler_init(&c->rx, cfg->max_agent_message);
    c->grant_left = cfg->agent_grant;
    c->state = VMC_CLIENT_STATE_LINKING;

    m.connection_id = cfg->connection_id;
    m.channel_type = cfg->channel_type;
    m.channel_id = cfg->channel_id;
    guint32 common = cfg->common_caps, channel = cfg->channel_caps;
    gsize mlen = vmc_link_mess_encode(&m, &common, 1, &channel, 1, buf + VMC_LINK_HEADER_SIZE,
                                      sizeof(buf) - VMC_LINK_HEADER_SIZE);
    g_assert(mlen > 0);
    h.magic = VMC_LINK_MAGIC;
    h.major_version = cfg->link_major;
    h.minor_version = cfg->link_minor;
    h.size = (guint32)mlen;
    vmc_link_header_encode(&h, buf);
    out_append(c, buf, VMC_LINK_HEADER_SIZE + mlen);
    return c;
}

void
vmc_client_free(VmcClient *c)
{
    VmcClientEvent *ev;

    if (!c)
        return;
    while ((ev = g_queue_pop_head(&c->events))) {
        vmc_client_event_clear(ev);
        g_free(ev);
    }
    g_queue_clear_full(&c->agent_queue, (GDestroyNotify)g_bytes_unref);
    g_queue_clear(&c->agent_queue_starts);
    vmc_assembler_clear(&c->rx);
    g_byte_array_unref(c->in);
    g_byte_array_unref(c->out);
    g_free(c->password);
    g_free(c->ticket);
    g_free(c->name);
    g_free(c->last_error);
    g_free(c);
}

VmcClientState
vmc_client_get_state(VmcClient *c)
{
    return c->state;
}

const char *
vmc_client_get_last_error(VmcClient *c)
{
    return c->last_error;
}

static void
set_last_error(VmcClient *c, const char *msg)
{
    g_free(c->last_error);
    c->last_error = g_strdup(msg);
}

void
vmc_client_set_output_notify(VmcClient *c, VmcClientNotifyFunc func, gpointer user_data)
{
    c->notify = func;
    c->notify_data = user_data;
}

const guint8 *
vmc_client_output(VmcClient *c, gsize *len)
{
    *len = c->out->len - c->out_off;
    return c->out->data + c->out_off;
}

void
vmc_client_output_consume(VmcClient *c, gsize n)
{
    g_return_if_fail(n <= c->out->len - c->out_off);
    c->out_off += n;
    if (c->out_off == c->out->len) {
        g_byte_array_set_size(c->out, 0);
        c->out_off = 0;
    } else if (c->out_off > 65536 && c->out->len - c->out_off <= c->out_off / 4) {
        /* compact only when little is left to move (a queue kept full by its
         * producer would otherwise be moved once per byte sent) */
        g_byte_array_remove_range(c->out, 0, (guint)c->out_off);
        c->out_off = 0;
    }
}

gboolean
vmc_client_next_event(VmcClient *c, VmcClientEvent *ev)
{
    VmcClientEvent *e = g_queue_pop_head(&c->events);
    if (!e)
        return FALSE;
    *ev = *e;
    g_free(e);
    return TRUE;
}

guint
vmc_client_pending_events(VmcClient *c)
{
    return g_queue_get_length(&c->events);
}

/* ---- state getters ---- */

const VmcLinkReply *
vmc_client_get_link_reply(VmcClient *c)
{
    return c->have_reply ? &c->reply : NULL;
}

gboolean
vmc_client_get_init(VmcClient *c, VmcMainInit *out)
{
    if (!c->have_init)
        return FALSE;
    *out = c->init;
    return TRUE;
}

gboolean
vmc_client_uses_mini_header(VmcClient *c)
{
    return c->mini;
}

gboolean
vmc_client_agent_connected(VmcClient *c)
{
    return c->agent_connected;
}

gboolean
vmc_client_agent_started(VmcClient *c)
{
    return c->agent_started;
}

guint32
vmc_client_get_server_tokens(VmcClient *c)
{
    return c->server_tokens;
}

guint32
vmc_client_get_grant_left(VmcClient *c)
{
    return c->grant_left;
}

guint64
vmc_client_get_grant_violations(VmcClient *c)
{
    return c->grant_violations;
}

guint64
vmc_client_get_multi_message_bodies(VmcClient *c)
{
    return c->multi_bodies;
}

gsize
vmc_client_agent_pending(VmcClient *c)
{
    return c->agent_queue_bytes;
}

guint
vmc_client_agent_pending_messages(VmcClient *c)
{
    return c->agent_queue_msgs;
}

gsize
vmc_client_get_agent_caps(VmcClient *c, guint32 *words, gsize max_words)
{
    gsize n = MIN(max_words, c->agent_ncaps);
    memcpy(words, c->agent_caps, n * sizeof(guint32));
    return n;
}

gboolean
vmc_client_agent_has_cap(VmcClient *c, guint cap)
{
    return vmc_caps_test(c->agent_caps, c->agent_ncaps, cap);
}

gboolean
vmc_client_agent_caps_received(VmcClient *c)
{
    return c->caps_received;
}

const char *
vmc_client_get_name(VmcClient *c)
{
    return c->name;
}

const guint8 *
vmc_client_get_uuid(VmcClient *c)
{
    return c->have_uuid ? c->uuid : NULL;
}

/* ---- sending ---- */

static void
send_header(VmcClient *c, guint16 type, guint32 size)
{
    guint8 hdr[VMC_MAX_HEADER_SIZE];
    VmcDataHeader h = {0};

    h.type = type;
    h.size = size;
    if (!c->mini)
        h.serial = ++c->serial_out;
    gsize n = vmc_data_header_encode(&h, c->mini, hdr);
    out_append(c, hdr, n);
}

void
vmc_client_send_message(VmcClient *c, guint16 type, const guint8 *body, gsize len)
{
    g_return_if_fail(len <= G_MAXUINT32);
    send_header(c, type, (guint32)len);
    out_append(c, body, len);
}

void
vmc_client_send_header(VmcClient *c, guint16 type, guint32 size)
{
    send_header(c, type, size);
}

void
vmc_client_send_raw(VmcClient *c, const guint8 *bytes, gsize len)
{
    out_append(c, bytes, len);
}

static void
send_u32_message(VmcClient *c, guint16 type, guint32 v)
{
    guint8 body[4];
    vmc_put_u32le(body, v);
    vmc_client_send_message(c, type, body, sizeof(body));
}

static void flush_agent_queue(VmcClient *c);

void
vmc_client_send_agent_start(VmcClient *c, guint32 num_tokens)
{
    send_u32_message(c, SPICE_MSGC_MAIN_AGENT_START, num_tokens);
    c->grant_left = num_tokens;
    c->refill_count = 0;
    c->agent_started = TRUE;
    flush_agent_queue(c);
}

void
vmc_client_send_agent_token(VmcClient *c, guint32 n)
{
    send_u32_message(c, SPICE_MSGC_MAIN_AGENT_TOKEN, n);
    if (c->grant_left != VMC_AGENT_TOKENS_UNLIMITED)
        c->grant_left = n > G_MAXUINT32 - 1 - c->grant_left ? G_MAXUINT32 - 1 : c->grant_left + n;
}

/* Whether one more AGENT_DATA may go out now. The server drops AGENT_DATA before
 * AGENT_START (and returns no token). */
static gboolean
agent_may_send(VmcClient *c)
{
    if (c->state != VMC_CLIENT_STATE_CONNECTED)
        return FALSE;
    return !c->cfg.respect_tokens || (c->server_tokens > 0 && c->agent_started);
}

/* One AGENT_DATA made of up to two parts, framed straight into the output. */
static void
send_agent_data(VmcClient *c, const guint8 *a, gsize alen, const guint8 *b, gsize blen)
{
    send_header(c, SPICE_MSGC_MAIN_AGENT_DATA, (guint32)(alen + blen));
    out_append(c, a, alen);
    out_append(c, b, blen);
    if (c->server_tokens > 0)
        c->server_tokens--;
}

static void
flush_agent_queue(VmcClient *c)
{
    while (!g_queue_is_empty(&c->agent_queue) && agent_may_send(c)) {
        GBytes *body = g_queue_pop_head(&c->agent_queue);
        gboolean starts = GPOINTER_TO_INT(g_queue_pop_head(&c->agent_queue_starts));
        gsize len;
        const guint8 *p = g_bytes_get_data(body, &len);
        send_agent_data(c, p, len, NULL, 0);
        c->agent_queue_bytes -= len;
        if (starts)
            c->agent_queue_msgs--;
        g_bytes_unref(body);
    }
}

/* One AGENT_DATA body (two parts): sent now when nothing waits before it and the
 * tokens allow, else queued. */
static void
emit_body(VmcClient *c, const guint8 *a, gsize alen, const guint8 *b, gsize blen,
          gboolean starts)
{
    GBytes *body;

    if (g_queue_is_empty(&c->agent_queue) && agent_may_send(c)) {
        send_agent_data(c, a, alen, b, blen);
        return;
    }
    if (blen == 0) {
        body = g_bytes_new(a, alen);
    } else {
        guint8 *joined = g_malloc(alen + blen);
        memcpy(joined, a, alen);
        memcpy(joined + alen, b, blen);
        body = g_bytes_new_take(joined, alen + blen);
    }
    g_queue_push_tail(&c->agent_queue, body);
    g_queue_push_tail(&c->agent_queue_starts, GINT_TO_POINTER(starts));
    c->agent_queue_bytes += alen + blen;
    if (starts)
        c->agent_queue_msgs++;
}

void
vmc_client_send_agent_message_full(VmcClient *c, guint32 protocol, guint32 type, guint64 opaque,
                                   guint32 size, const guint8 *payload, gsize len,
                                   gsize max_piece)
{
    guint8 hdr[VMC_AGENT_HEADER_SIZE];
    VmcAgentHeader h = {protocol, type, opaque, size};

    if (max_piece == 0 || max_piece > VMC_AGENT_MAX_DATA_SIZE)
        max_piece = VMC_AGENT_MAX_DATA_SIZE;
    if (max_piece < VMC_AGENT_HEADER_SIZE)
        max_piece = VMC_AGENT_HEADER_SIZE;
    vmc_agent_header_encode(&h, hdr);
    gsize n = MIN(len, max_piece - VMC_AGENT_HEADER_SIZE);
    emit_body(c, hdr, sizeof(hdr), payload, n, TRUE);
    for (gsize off = n; off < len; off += max_piece)
        emit_body(c, payload + off, MIN(max_piece, len - off), NULL, 0, FALSE);
}

void
vmc_client_send_agent_message(VmcClient *c, guint32 type, guint64 opaque, const guint8 *payload,
                              gsize len)
{
    g_return_if_fail(len <= G_MAXUINT32);
    vmc_client_send_agent_message_full(c, VMC_AGENT_PROTOCOL, type, opaque, (guint32)len, payload,
                                       len, 0);
}

void
vmc_client_send_agent_data(VmcClient *c, const guint8 *body, gsize len)
{
    g_return_if_fail(len <= G_MAXUINT32);
    emit_body(c, body, len, NULL, 0, FALSE);
}

void
vmc_client_announce_caps(VmcClient *c, gboolean request, guint32 caps0)
{
    guint8 payload[8];
    vmc_put_u32le(payload, request ? 1 : 0);
    vmc_put_u32le(payload + 4, caps0);
    vmc_client_send_agent_message(c, VD_AGENT_ANNOUNCE_CAPABILITIES, 0, payload, sizeof(payload));
}

void
vmc_client_agent_drop_queue(VmcClient *c)
{
    g_queue_clear_full(&c->agent_queue, (GDestroyNotify)g_bytes_unref);
    g_queue_clear(&c->agent_queue_starts);
    c->agent_queue_bytes = 0;
    c->agent_queue_msgs = 0;
}

/* ---- receiving ---- */

static void
fail(VmcClient *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
fail(VmcClient *c, const char *fmt, ...)
{
    va_list ap;
    VmcClientEvent *ev = push_event(c, VMC_CLIENT_EV_PROTOCOL_ERROR);

    va_start(ap, fmt);
    ev->detail = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    set_last_error(c, ev->detail);
    c->state = VMC_CLIENT_STATE_FAILED;
}

static void
encrypt_ticket(VmcClient *c, guint8 out[VMC_TICKET_CIPHER_BYTES])
{
    const unsigned char *p = c->reply.pub_key;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    size_t outlen = VMC_TICKET_CIPHER_BYTES;
    gsize plen = strlen(c->password) + (c->cfg.ticket_without_nul ? 0 : 1);

    memset(out, 0, VMC_TICKET_CIPHER_BYTES);
    if (c->cfg.ticket) {
        memcpy(out, c->cfg.ticket, VMC_TICKET_CIPHER_BYTES);
        return;
    }
    pkey = d2i_PUBKEY(NULL, &p, VMC_TICKET_PUBKEY_BYTES);
    if (!pkey) {
        g_debug("client: the server's public key does not parse; sending a zero ticket");
        return;
    }
    ctx = EVP_PKEY_CTX_new(pkey, NULL);
    if (!ctx || EVP_PKEY_encrypt_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0)
        goto out;
    if (c->cfg.ticket_oaep_sha256 &&
        (EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) <= 0 ||
         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) <= 0))
        goto out;
    size_t need = 0;
    if (EVP_PKEY_encrypt(ctx, NULL, &need, (const unsigned char *)c->password, plen) <= 0 ||
        need != VMC_TICKET_CIPHER_BYTES) {
        g_debug("client: unexpected RSA key size (%zu-byte ciphertext)", need);
        goto out;
    }
    if (EVP_PKEY_encrypt(ctx, out, &outlen, (const unsigned char *)c->password, plen) <= 0)
        g_debug("client: ticket encryption failed (password too long?)");
out:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
}

static void
send_auth(VmcClient *c)
{
    guint8 buf[4 + VMC_TICKET_CIPHER_BYTES];
    gsize n = 0;

    if (c->cfg.common_caps & (1u << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION)) {
        vmc_link_u32_encode(c->cfg.auth_mechanism, buf);
        n = 4;
    }
    encrypt_ticket(c, buf + n);
    out_append(c, buf, n + VMC_TICKET_CIPHER_BYTES);
}

/* Consumes a link header + reply from c->in. Returns bytes used, 0 if more are needed. */
static gsize
parse_link_reply(VmcClient *c)
{
    VmcLinkHeader h;
    gsize used;
    VmcDecodeResult r = vmc_link_header_decode(c->in->data, c->in->len, FALSE, &h, &used);

    if (r == VMC_DECODE_NEED_MORE)
        return 0;
    if (r != VMC_DECODE_OK) {
        fail(c, "bad link reply header: %s", vmc_decode_result_to_string(r));
        return 0;
    }
    if (h.size > MAX_LINK_REPLY) {
        fail(c, "link reply size %u is too large", h.size);
        return 0;
    }
    if (c->in->len - VMC_LINK_HEADER_SIZE < h.size)
        return 0;
    VmcLinkReply reply;
    r = vmc_link_reply_decode(c->in->data + VMC_LINK_HEADER_SIZE, h.size, &reply, NULL);
    if (r != VMC_DECODE_OK) {
        fail(c, "bad link reply: %s", vmc_decode_result_to_string(r));
        return 0;
    }
    if (reply.error != SPICE_LINK_ERR_OK || c->second_reply) {
        VmcClientEvent *ev = push_event(c, VMC_CLIENT_EV_LINK_FAILED);
        ev->code = reply.error;
        ev->detail = g_strdup_printf("link reply error %u (%s)%s", reply.error,
                                     vmc_link_error_name(reply.error),
                                     c->second_reply ? " after the ticket" : "");
        set_last_error(c, ev->detail);
        c->state = VMC_CLIENT_STATE_FAILED;
        return VMC_LINK_HEADER_SIZE + h.size;
    }
    c->reply = reply;
    c->have_reply = TRUE;
    c->mini = (c->cfg.common_caps & (1u << SPICE_COMMON_CAP_MINI_HEADER)) &&
              vmc_caps_test(reply.common_caps, MIN(reply.num_common_caps, VMC_LINK_CAPS_KEEP),
                            SPICE_COMMON_CAP_MINI_HEADER);
    push_event(c, VMC_CLIENT_EV_LINK_REPLY);
    send_auth(c);
    c->state = VMC_CLIENT_STATE_AUTH;
    return VMC_LINK_HEADER_SIZE + h.size;
}

static void
agent_reset_rx(VmcClient *c)
{
    vmc_assembler_reset(&c->rx);
}

static void
agent_now_connected(VmcClient *c)
{
    c->agent_connected = TRUE;
    c->agent_started = FALSE;
    c->caps_received = FALSE;
    c->agent_ncaps = 0;
    agent_reset_rx(c);
    push_event(c, VMC_CLIENT_EV_AGENT_CONNECTED);
    if (c->cfg.auto_agent_start)
        vmc_client_send_agent_start(c, c->cfg.agent_grant);
}

static void
handle_agent_message(VmcClient *c, const VmcAgentHeader *h, GBytes *payload, gboolean truncated)
{
    if (h->type == VD_AGENT_ANNOUNCE_CAPABILITIES && !truncated) {
        gsize len;
        const guint8 *p = g_bytes_get_data(payload, &len);
        guint32 request;
        const guint8 *words;
        gsize nwords;
        if (vmc_agent_caps_decode(p, len, &request, &words, &nwords) == VMC_DECODE_OK) {
            c->agent_ncaps = MIN(nwords, (gsize)MAX_AGENT_CAPS_WORDS);
            for (gsize i = 0; i < c->agent_ncaps; i++)
                c->agent_caps[i] = vmc_get_u32le(words + 4 * i);
            c->caps_received = TRUE;
        }
    }
    VmcClientEvent *ev = push_event(c, VMC_CLIENT_EV_AGENT_MESSAGE);
    ev->agent = *h;
    ev->body = payload;
    ev->truncated = truncated;
}

static void
handle_agent_data(VmcClient *c, const guint8 *body, gsize len)
{
    gsize off = 0;
    gboolean counted = FALSE;

    if (c->grant_left != VMC_AGENT_TOKENS_UNLIMITED) {
        if (c->grant_left == 0)
            c->grant_violations++;
        else
            c->grant_left--;
        if (c->cfg.token_refill > 0 && ++c->refill_count >= c->cfg.token_refill) {
            guint32 n = c->refill_count;
            c->refill_count = 0;
            vmc_client_send_agent_token(c, n);
        }
    }
    while (off < len) {
        gsize span;
        guint flags;
        VmcDecodeResult r = vmc_assembler_advance(&c->rx, body + off, len - off, &span, &flags);
        if (r != VMC_DECODE_OK) {
            VmcClientEvent *ev = push_event(c, VMC_CLIENT_EV_PROTOCOL_ERROR);
            ev->detail = g_strdup("agent stream: message protocol is not 1; dropping the rest "
                                  "until the agent reconnects");
            agent_reset_rx(c);
            /* A bad stream cannot be resynchronised: ignore it until the agent restarts. */
            c->rx.tracker.error = VMC_DECODE_ERR_PROTOCOL;
            return;
        }
        if ((flags & VMC_AGENT_SPAN_START) && off > 0 && !counted) {
            c->multi_bodies++;
            counted = TRUE;
        }
        off += span;
        if (flags & VMC_AGENT_SPAN_END) {
            VmcAgentHeader h;
            gboolean truncated;
            GBytes *payload = vmc_assembler_take(&c->rx, &h, &truncated);
            handle_agent_message(c, &h, payload, truncated);
        }
    }
}

static void
handle_message(VmcClient *c, guint16 type, guint64 serial, const guint8 *body, gsize len)
{
    guint32 v;

    if (type != SPICE_MSG_MAIN_AGENT_DATA || c->cfg.agent_data_messages) {
        VmcClientEvent *ev = push_event(c, VMC_CLIENT_EV_MESSAGE);
        ev->msg_type = type;
        ev->serial = serial;
        ev->body = g_bytes_new(body, len);
    }

    switch (type) {
    case SPICE_MSG_MAIN_INIT:
        if (vmc_main_init_decode(body, len, &c->init) != VMC_DECODE_OK) {
            fail(c, "INIT body of %" G_GSIZE_FORMAT " bytes does not decode", len);
            return;
        }
        c->have_init = TRUE;
        c->server_tokens = c->init.agent_tokens;
        if (c->init.agent_connected)
            agent_now_connected(c);
        break;
    case SPICE_MSG_MAIN_NAME: {
        const char *name;
        guint32 name_len;
        if (vmc_main_name_decode(body, len, &name, &name_len) == VMC_DECODE_OK) {
            g_free(c->name);
            c->name = g_strndup(name, name_len);
        }
        break;
    }
    case SPICE_MSG_MAIN_UUID:
        if (vmc_main_uuid_decode(body, len, c->uuid) == VMC_DECODE_OK)
            c->have_uuid = TRUE;
        break;
    case SPICE_MSG_PING:
        if (c->cfg.auto_pong) {
            VmcPing ping;
            guint8 pong[12];
            if (vmc_ping_decode(body, len, &ping) == VMC_DECODE_OK &&
                vmc_pong_encode(&ping, pong, sizeof(pong)) == sizeof(pong))
                vmc_client_send_message(c, SPICE_MSGC_PONG, pong, sizeof(pong));
        }
        break;
    case SPICE_MSG_MAIN_AGENT_CONNECTED:
        agent_now_connected(c);
        break;
    case SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS:
        if (vmc_u32_body_decode(body, len, &v) == VMC_DECODE_OK)
            c->server_tokens = v;
        agent_now_connected(c);
        break;
    case SPICE_MSG_MAIN_AGENT_DISCONNECTED: {
        VmcClientEvent *dev;
        if (vmc_u32_body_decode(body, len, &v) != VMC_DECODE_OK)
            v = 0;
        c->agent_connected = FALSE;
        c->agent_started = FALSE;
        c->caps_received = FALSE;
        agent_reset_rx(c);
        vmc_client_agent_drop_queue(c);
        dev = push_event(c, VMC_CLIENT_EV_AGENT_DISCONNECTED);
        dev->code = v;
        break;
    }
    case SPICE_MSG_MAIN_AGENT_TOKEN:
        if (vmc_u32_body_decode(body, len, &v) == VMC_DECODE_OK) {
            c->server_tokens = v > G_MAXUINT32 - c->server_tokens ? G_MAXUINT32
                                                                  : c->server_tokens + v;
            flush_agent_queue(c);
        }
        break;
    case SPICE_MSG_MAIN_AGENT_DATA:
        handle_agent_data(c, body, len);
        break;
    default:
        break;
    }
}

/* Link reply and link result, from c->in (small and rare: buffered). Stops when more
 * bytes are needed, at CONNECTED (the rest of c->in is data-phase bytes) or FAILED. */
static void
parse_handshake(VmcClient *c)
{
    gsize off = 0;

    while (c->state == VMC_CLIENT_STATE_LINKING || c->state == VMC_CLIENT_STATE_AUTH) {
        const guint8 *p = c->in->data + off;
        gsize left = c->in->len - off;

        if (c->state == VMC_CLIENT_STATE_LINKING) {
            /* parse_link_reply works on c->in from its start */
            if (off > 0) {
                g_byte_array_remove_range(c->in, 0, (guint)off);
                off = 0;
            }
            gsize used = parse_link_reply(c);
            if (used == 0)
                break;
            off += used;
            continue;
        }
        /* AUTH */
        guint32 result;
        if (left < 4)
            break;
        if (vmc_get_u32le(p) == VMC_LINK_MAGIC) {
            /* a second link reply (the reference's answer to a bad mechanism) */
            c->second_reply = TRUE;
            c->state = VMC_CLIENT_STATE_LINKING;
            continue;
        }
        vmc_link_u32_decode(p, left, &result, NULL);
        off += 4;
        if (result != SPICE_LINK_ERR_OK) {
            VmcClientEvent *ev = push_event(c, VMC_CLIENT_EV_LINK_FAILED);
            ev->code = result;
            ev->detail = g_strdup_printf("link result %u (%s)", result,
                                         vmc_link_error_name(result));
            set_last_error(c, ev->detail);
            c->state = VMC_CLIENT_STATE_FAILED;
            break;
        }
        c->state = VMC_CLIENT_STATE_CONNECTED;
        push_event(c, VMC_CLIENT_EV_LINKED);
        flush_agent_queue(c);
    }
    if (off > 0 && c->state != VMC_CLIENT_STATE_FAILED)
        g_byte_array_remove_range(c->in, 0, (guint)off);
}

/* The data header at the start of `p`, judged: OK, NEED_MORE, or an error (FAILED). */
static VmcDecodeResult
data_header(VmcClient *c, const guint8 *p, gsize left, VmcDataHeader *h, gsize *hlen)
{
    VmcDecodeResult r = vmc_data_header_decode(p, left, c->mini, h, hlen);

    if (r != VMC_DECODE_OK)
        return r; /* NEED_MORE: a prefix decoder accepts any type and size */
    if (h->size > c->cfg.max_message) {
        fail(c, "server message type %u announces %u bytes (limit %" G_GSIZE_FORMAT ")",
             h->type, h->size, c->cfg.max_message);
        return VMC_DECODE_ERR_TOO_LARGE;
    }
    return VMC_DECODE_OK;
}

/* Data phase: handles the whole messages at the start of `buf` where they lie; returns
 * the bytes used (a cut message at the end is left). */
static gsize
parse_in_place(VmcClient *c, const guint8 *buf, gsize len)
{
    gsize off = 0;

    while (c->state == VMC_CLIENT_STATE_CONNECTED) {
        VmcDataHeader h;
        gsize hlen;

        if (data_header(c, buf + off, len - off, &h, &hlen) != VMC_DECODE_OK)
            break;
        if (len - off - hlen < h.size)
            break;
        handle_message(c, h.type, h.serial, buf + off + hlen, h.size);
        off += hlen + h.size;
    }
    return off;
}

/* Data phase with a cut message in c->in: takes from `buf` only the bytes that complete
 * it, then handles it. Returns the bytes used. */
static gsize
complete_pending(VmcClient *c, const guint8 *buf, gsize len)
{
    gsize hsize = vmc_data_header_size(c->mini);
    gsize used = 0;
    VmcDataHeader h;
    gsize hlen;

    if (c->in->len < hsize) {
        used = MIN(hsize - c->in->len, len);
        g_byte_array_append(c->in, buf, (guint)used);
        if (c->in->len < hsize)
            return used;
    }
    if (data_header(c, c->in->data, c->in->len, &h, &hlen) != VMC_DECODE_OK)
        return len; /* FAILED: the rest is ignored */
    gsize total = hlen + h.size;
    gsize n = MIN(total - c->in->len, len - used);
    g_byte_array_append(c->in, buf + used, (guint)n);
    used += n;
    if (c->in->len == total) {
        handle_message(c, h.type, h.serial, c->in->data + hlen, h.size);
        g_byte_array_set_size(c->in, 0);
    }
    return used;
}

/**
 * vmc_client_feed:
 * @buf: (array length=len) (transfer none): bytes received from the server
 *
 * Returns: %FALSE once the client is FAILED
 */
gboolean
vmc_client_feed(VmcClient *c, const guint8 *buf, gsize len)
{
    GByteArray *rest = NULL; /* data-phase bytes that came with the link result */

    if (c->state == VMC_CLIENT_STATE_FAILED)
        return FALSE;
    while (len > 0 && c->state != VMC_CLIENT_STATE_FAILED) {
        gsize used;

        if (c->state != VMC_CLIENT_STATE_CONNECTED) {
            g_byte_array_append(c->in, buf, (guint)len);
            len = 0;
            parse_handshake(c);
            if (c->state == VMC_CLIENT_STATE_CONNECTED && c->in->len > 0) {
                /* parse them like any data-phase input */
                rest = c->in;
                c->in = g_byte_array_new();
                buf = rest->data;
                len = rest->len;
            }
            continue;
        }
        if (c->in->len > 0)
            used = complete_pending(c, buf, len);
        else
            used = parse_in_place(c, buf, len);
        buf += used;
        len -= used;
        if (len > 0 && c->in->len == 0 && c->state == VMC_CLIENT_STATE_CONNECTED &&
            used == 0) {
            /* a cut message: keep it for the next call */
            g_byte_array_append(c->in, buf, (guint)len);
            len = 0;
        }
    }
    if (rest)
        g_byte_array_unref(rest);
    if (c->state == VMC_CLIENT_STATE_FAILED) {
        g_byte_array_set_size(c->in, 0);
        return FALSE;
    }
    return TRUE;
}

void
vmc_client_feed_eof(VmcClient *c)
{
    if (c->state == VMC_CLIENT_STATE_FAILED)
        return;
    if (c->in->len > 0)
        g_debug("client: %u unparsed bytes at EOF", c->in->len);
    if (c->state == VMC_CLIENT_STATE_LINKING)
        set_last_error(c, "the server closed the connection without a link reply");
    else if (c->state == VMC_CLIENT_STATE_AUTH)
        set_last_error(c, "the server closed the connection without a link result");
    else
        set_last_error(c, "the server closed the connection");
    c->state = VMC_CLIENT_STATE_FAILED;
}
