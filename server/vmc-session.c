/* vmc-session.c — one client's SPICE main channel, sans-I/O. See vmc-session.h. */
#include "server/vmc-session.h"

#include <string.h>
#include <gio/gio.h>
#include <spice/enums.h>
#include <spice/protocol.h>

#include "protocol/vmc-header.h"
#include "protocol/vmc-link.h"
#include "protocol/vmc-main.h"

/* What we advertise: AUTH_SELECTION, AUTH_SPICE, MINI_HEADER; NAME_AND_UUID,
 * AGENT_CONNECTED_TOKENS. No SASL, no migration. */
#define OUR_COMMON_CAPS                                                                     \
    ((1u << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION) | (1u << SPICE_COMMON_CAP_AUTH_SPICE) | \
     (1u << SPICE_COMMON_CAP_MINI_HEADER))
#define OUR_MAIN_CAPS                                                                       \
    ((1u << SPICE_MAIN_CAP_NAME_AND_UUID) | (1u << SPICE_MAIN_CAP_AGENT_CONNECTED_TOKENS))

#define BODY_KEEP VMC_AGENT_MAX_DATA_SIZE   /* body bytes kept; the rest of a body is skipped */
#define PULL_LIMIT (128u * 1024u)           /* stop copying mux output beyond this */
#define OUT_HARD_LIMIT (1024u * 1024u)      /* own replies a client does not read */
#define CLOSING_TIMEOUT_US (5 * G_USEC_PER_SEC)
#define MM_TIME_DELTA_MS 400

typedef enum {
    LINK_HEADER,
    LINK_MESS,
    AUTH_MECH,
    AUTH_TICKET,
    MAIN_HEADER,
    MAIN_BODY,
    MAIN_SKIP,
    DEAD,
} InState;

struct _VmcSession {
    const VmcSessionConfig *cfg;
    VmcSessionState state;
    InState in;
    GError *error;
    gboolean keepalive;
    gboolean skip_auth;
    gint64 now;
    gint64 created;
    gint64 closing_since;

    /* link */
    guint8 link_buf[VMC_LINK_HEADER_SIZE + VMC_LINK_MAX_SIZE];
    gsize link_have;
    VmcLinkHeader link_header;
    VmcLinkMess link;
    VmcTicketKey *key;
    gboolean key_wait; /* the link reply waits for the pool's workers to make a key */

    /* auth */
    guint8 auth_buf[VMC_TICKET_CIPHER_BYTES];
    gsize auth_have;

    /* main channel */
    gboolean mini;
    guint64 serial;
    guint32 client_id;
    guint32 session_id;
    guint8 hdr_buf[VMC_MAX_HEADER_SIZE];
    gsize hdr_have;
    VmcDataHeader hdr;
    guint8 body[BODY_KEEP];
    gsize body_have;
    gsize body_keep;
    gsize skip;

    /* keepalive */
    gint64 last_rx;
    gboolean ping_outstanding;
    gint64 ping_sent;
    guint32 ping_id;

    /* output: one linear buffer, [out_head, out_head + out_len) pending */
    guint8 *out;
    gsize out_head;
    gsize out_len;
    gsize out_cap;
};

void
vmc_session_config_init(VmcSessionConfig *cfg)
{
    g_return_if_fail(cfg != NULL);
    memset(cfg, 0, sizeof(*cfg));
    cfg->ticketing = TRUE;
    cfg->handshake_timeout_us = 30 * G_USEC_PER_SEC;
    cfg->ping_interval_us = 30 * G_USEC_PER_SEC;
    cfg->ping_timeout_us = 30 * G_USEC_PER_SEC;
}

/**
 * vmc_session_new:
 * @cfg: shared settings (borrowed; must outlive the session)
 * @keepalive: ping idle clients and close dead ones
 * @now_us: monotonic time
 *
 * Returns: (transfer full): a session waiting for the link header
 */
VmcSession *
vmc_session_new(const VmcSessionConfig *cfg, gboolean keepalive, gint64 now_us)
{
    VmcSession *s;

    g_return_val_if_fail(cfg != NULL, NULL);
    g_return_val_if_fail(cfg->mux != NULL, NULL);
    g_return_val_if_fail(cfg->keys != NULL || !cfg->ticketing, NULL);

    s = g_new0(VmcSession, 1);
    s->cfg = cfg;
    s->state = VMC_SESSION_LINK;
    s->in = LINK_HEADER;
    s->keepalive = keepalive;
    s->now = now_us;
    s->created = now_us;
    s->last_rx = now_us;
    return s;
}

void
vmc_session_free(VmcSession *session)
{
    if (session == NULL)
        return;
    if (session->client_id != 0)
        vmc_mux_client_remove(session->cfg->mux, session->client_id);
    vmc_ticket_key_free(session->key);
    memset(session->auth_buf, 0, sizeof(session->auth_buf));
    g_clear_error(&session->error);
    g_free(session->out);
    g_free(session);
}

/* ------------------------------------------------------------------------------------
 * output
 * ------------------------------------------------------------------------------------ */

/* Room for `n` more bytes at the end of the pending output. */
static guint8 *
out_reserve(VmcSession *s, gsize n)
{
    gsize need;

    if (s->out_len == 0)
        s->out_head = 0;
    if (s->out_cap - s->out_head - s->out_len >= n)
        return s->out + s->out_head + s->out_len;
    if (s->out_head > 0) {
        memmove(s->out, s->out + s->out_head, s->out_len);
        s->out_head = 0;
        if (s->out_cap - s->out_len >= n)
            return s->out + s->out_len;
    }
    g_assert(n <= G_MAXSIZE - s->out_len);
    need = s->out_len + n;
    s->out_cap = MAX(need, MAX(s->out_cap * 2, (gsize)4096));
    s->out = g_realloc(s->out, s->out_cap);
    return s->out + s->out_len;
}

static void
out_append(VmcSession *s, const void *data, gsize n)
{
    memcpy(out_reserve(s, n), data, n);
    s->out_len += n;
}

static void
fail(VmcSession *s, VmcSessionState next, GQuark domain, int code, const char *fmt, ...)
    G_GNUC_PRINTF(5, 6);

/* Ends the session: CLOSING (flush what is queued, then close) or CLOSED. The first
 * reason sticks. */
static void
fail(VmcSession *s, VmcSessionState next, GQuark domain, int code, const char *fmt, ...)
{
    va_list ap;

    if (s->state == VMC_SESSION_CLOSED)
        return;
    if (s->error == NULL) {
        va_start(ap, fmt);
        s->error = g_error_new_valist(domain, code, fmt, ap);
        va_end(ap);
        g_debug("session %u: %s", s->client_id, s->error->message);
    }
    if (s->state != VMC_SESSION_CLOSING || next == VMC_SESSION_CLOSED) {
        s->state = next;
        s->closing_since = s->now;
    }
    s->in = DEAD;
    if (s->state == VMC_SESSION_CLOSED) {
        s->out_len = 0;
        s->out_head = 0;
    }
}

/* A data message of ours: header (mini or full with the next serial) + body. */
static void
queue_msg(VmcSession *s, guint16 type, const guint8 *body, gsize len)
{
    VmcDataHeader h = {0};
    guint8 *p;
    gsize hl;

    g_assert(len <= G_MAXUINT32);
    h.serial = ++s->serial;
    h.type = type;
    h.size = (guint32)len;
    p = out_reserve(s, VMC_MAX_HEADER_SIZE + len);
    hl = vmc_data_header_encode(&h, s->mini, p);
    if (len > 0)
        memcpy(p + hl, body, len);
    s->out_len += hl + len;
}

/* For replies caused by client messages: a client that sends requests but never
 * reads the answers is cut off instead of growing our buffer. */
static void
queue_reply(VmcSession *s, guint16 type, const guint8 *body, gsize len)
{
    queue_msg(s, type, body, len);
    if (s->out_len > OUT_HARD_LIMIT)
        fail(s, VMC_SESSION_CLOSED, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
             "client does not read its replies (%" G_GSIZE_FORMAT " bytes queued)", s->out_len);
}

static void
link_error(VmcSession *s, guint32 err, const char *why)
{
    guint8 buf[VMC_LINK_HEADER_SIZE + VMC_LINK_REPLY_SIZE];

    vmc_link_error_encode(err, buf);
    out_append(s, buf, sizeof(buf));
    fail(s, VMC_SESSION_CLOSING, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "link refused (%s): %s",
         vmc_link_error_name(err), why);
}

static void
link_result(VmcSession *s, guint32 result)
{
    guint8 buf[4];

    vmc_link_u32_encode(result, buf);
    out_append(s, buf, sizeof(buf));
}

/* Checks whether the mux cut this client off by itself. */
static void
check_mux(VmcSession *s)
{
    GError *error = NULL;

    if (s->state != VMC_SESSION_ACTIVE || s->client_id == 0)
        return;
    if (vmc_mux_client_failed(s->cfg->mux, s->client_id, &error)) {
        fail(s, VMC_SESSION_CLOSED, error->domain, error->code, "%s", error->message);
        g_error_free(error);
    }
}

static void
note_tokens(VmcSession *s, gboolean from_client, const char *what, guint32 n)
{
    if (s->cfg->tokens != NULL)
        s->cfg->tokens(s->cfg->tokens_data, s, from_client, what, n);
}

/* Copies the mux's messages for this client into the output, framed. */
static void
pull_mux(VmcSession *s)
{
    VmcMuxMsg m;

    if (s->state != VMC_SESSION_ACTIVE)
        return;
    check_mux(s);
    while (s->state == VMC_SESSION_ACTIVE && s->out_len < PULL_LIMIT &&
           vmc_mux_client_peek(s->cfg->mux, s->client_id, &m)) {
        queue_msg(s, m.type, m.data, m.len);
        if (s->cfg->tokens != NULL && m.len >= 4 &&
            (m.type == SPICE_MSG_MAIN_AGENT_TOKEN ||
             m.type == SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS))
            note_tokens(s, FALSE,
                        m.type == SPICE_MSG_MAIN_AGENT_TOKEN ? "AGENT_TOKEN"
                                                             : "AGENT_CONNECTED_TOKENS",
                        vmc_get_u32le(m.data));
        vmc_mux_client_pop(s->cfg->mux, s->client_id);
    }
}

/**
 * vmc_session_output_vec:
 * @vec: (out caller-allocates) (array length=max): filled with views of the output
 *
 * Returns: the number of vectors filled (0: nothing to write)
 */
guint
vmc_session_output_vec(VmcSession *session, GOutputVector *vec, guint max)
{
    g_return_val_if_fail(session != NULL, 0);
    g_return_val_if_fail(vec != NULL || max == 0, 0);

    pull_mux(session);
    if (max == 0 || session->out_len == 0)
        return 0;
    vec[0].buffer = session->out + session->out_head;
    vec[0].size = session->out_len;
    return 1;
}

void
vmc_session_output_advance(VmcSession *session, gsize written)
{
    g_return_if_fail(session != NULL);
    g_return_if_fail(written <= session->out_len);

    session->out_head += written;
    session->out_len -= written;
    if (session->out_len == 0)
        session->out_head = 0;
}

gboolean
vmc_session_wants_write(VmcSession *session)
{
    VmcMuxMsg m;

    g_return_val_if_fail(session != NULL, FALSE);
    if (session->state == VMC_SESSION_CLOSED)
        return FALSE;
    if (session->out_len > 0)
        return TRUE;
    return session->state == VMC_SESSION_ACTIVE &&
           vmc_mux_client_peek(session->cfg->mux, session->client_id, &m);
}

/* ------------------------------------------------------------------------------------
 * link and ticket
 * ------------------------------------------------------------------------------------ */

static gboolean
client_has_common_cap(VmcSession *s, guint cap)
{
    return vmc_caps_test(s->link.common_caps, MIN(s->link.num_common_caps, VMC_LINK_CAPS_KEEP),
                         cap);
}

static gboolean
client_has_main_cap(VmcSession *s, guint cap)
{
    return vmc_caps_test(s->link.channel_caps,
                         MIN(s->link.num_channel_caps, VMC_LINK_CAPS_KEEP), cap);
}

/* Queues the link reply with a fresh key; with the pool dry, waits for one (key_wait)
 * instead: the reply goes out from vmc_session_retry_key(). */
static void
send_link_reply(VmcSession *s)
{
    static const guint32 common[1] = {OUR_COMMON_CAPS};
    static const guint32 channel[1] = {OUR_MAIN_CAPS};
    guint8 buf[VMC_LINK_HEADER_SIZE + VMC_LINK_REPLY_SIZE + 8];
    VmcLinkReply r;
    GError *error = NULL;
    gsize n;

    memset(&r, 0, sizeof(r));
    if (s->cfg->keys != NULL) {
        if (!vmc_ticket_pool_take_nowait(s->cfg->keys, &s->key, &error)) {
            guint8 e[VMC_LINK_HEADER_SIZE + VMC_LINK_REPLY_SIZE];
            g_debug("session: no ticket key: %s", error->message);
            s->key_wait = FALSE;
            vmc_link_error_encode(SPICE_LINK_ERR_ERROR, e);
            out_append(s, e, sizeof(e));
            fail(s, VMC_SESSION_CLOSING, error->domain, error->code, "%s", error->message);
            g_error_free(error);
            return;
        }
        s->key_wait = s->key == NULL;
        if (s->key_wait)
            return;
        memcpy(r.pub_key, vmc_ticket_key_get_public(s->key), VMC_TICKET_PUBKEY_BYTES);
    }
    r.error = SPICE_LINK_ERR_OK;
    n = vmc_link_reply_encode(&r, common, 1, channel, 1, buf, sizeof(buf));
    g_assert(n == sizeof(buf));
    out_append(s, buf, n);
}

gboolean
vmc_session_waits_for_key(VmcSession *session)
{
    g_return_val_if_fail(session != NULL, FALSE);
    return session->key_wait && session->state == VMC_SESSION_AUTH;
}

gboolean
vmc_session_retry_key(VmcSession *session)
{
    g_return_val_if_fail(session != NULL, FALSE);
    if (!vmc_session_waits_for_key(session))
        return TRUE;
    send_link_reply(session);
    return !session->key_wait;
}

/* The link header and message are complete in link_buf. */
static void
handle_link(VmcSession *s)
{
    const guint8 *mess = s->link_buf + VMC_LINK_HEADER_SIZE;
    VmcDecodeResult r;
    gsize used;

    r = vmc_link_mess_decode(mess, s->link_header.size, &s->link, &used);
    if (r != VMC_DECODE_OK) {
        link_error(s, SPICE_LINK_ERR_INVALID_DATA, vmc_decode_result_to_string(r));
        return;
    }
    if (s->link.channel_type != SPICE_CHANNEL_MAIN) {
        link_error(s, SPICE_LINK_ERR_CHANNEL_NOT_AVAILABLE, "only the main channel is served");
        return;
    }
    /* connection_id != 0 would be a migration target in the reference; we do not
     * migrate and treat it as a new session */
    s->mini = client_has_common_cap(s, SPICE_COMMON_CAP_MINI_HEADER);
    send_link_reply(s);
    if (s->state != VMC_SESSION_LINK)
        return;
    s->state = VMC_SESSION_AUTH;
    s->in = client_has_common_cap(s, SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION) ? AUTH_MECH
                                                                               : AUTH_TICKET;
    s->auth_have = 0;
}

static void
deny(VmcSession *s, const char *why)
{
    link_result(s, SPICE_LINK_ERR_PERMISSION_DENIED);
    fail(s, VMC_SESSION_CLOSING, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
         "ticket refused: %s", why);
}

static void
refuse_notify(VmcSession *s, const char *reason)
{
    VmcNotify n;
    gsize len = strlen(reason), cap, got;
    guint8 *body;

    link_result(s, SPICE_LINK_ERR_OK);
    memset(&n, 0, sizeof(n));
    n.time_stamp = (guint64)MAX(s->now, 0) * 1000u;
    n.severity = SPICE_NOTIFY_SEVERITY_ERROR;
    n.visibility = SPICE_NOTIFY_VISIBILITY_HIGH;
    n.what = 0;
    n.message_len = (guint32)MIN(len, (gsize)1024);
    n.message = reason;
    cap = 24 + n.message_len + 1;
    body = g_malloc(cap);
    got = vmc_notify_encode(&n, body, cap);
    g_assert(got > 0);
    queue_msg(s, SPICE_MSG_NOTIFY, body, got);
    g_free(body);
    fail(s, VMC_SESSION_CLOSING, G_IO_ERROR, G_IO_ERROR_BUSY, "refused: %s", reason);
}

static void
start_main(VmcSession *s)
{
    VmcMux *mux = s->cfg->mux;
    VmcMainInit init;
    guint8 body[VMC_MAIN_INIT_SIZE];
    guint caps = 0;

    link_result(s, SPICE_LINK_ERR_OK);
    if (client_has_main_cap(s, SPICE_MAIN_CAP_AGENT_CONNECTED_TOKENS))
        caps |= VMC_MUX_CLIENT_CAP_CONNECTED_TOKENS;
    do
        s->session_id = g_random_int();
    while (s->session_id == 0);

    memset(&init, 0, sizeof(init));
    init.session_id = s->session_id;
    init.display_channels_hint = 0;
    init.supported_mouse_modes = SPICE_MOUSE_MODE_SERVER;
    init.current_mouse_mode = SPICE_MOUSE_MODE_SERVER;
    init.agent_connected = vmc_mux_guest_is_connected(mux) ? 1 : 0;
    init.agent_tokens = vmc_mux_get_agent_window(mux);
    init.multi_media_time = (guint32)(s->now / 1000 - MM_TIME_DELTA_MS);
    init.ram_hint = 0;
    vmc_main_init_encode(&init, body, sizeof(body));
    queue_msg(s, SPICE_MSG_MAIN_INIT, body, sizeof(body));

    if (client_has_main_cap(s, SPICE_MAIN_CAP_NAME_AND_UUID)) {
        if (s->cfg->name != NULL) {
            gsize cap = 4 + strlen(s->cfg->name) + 1;
            guint8 *nb = g_malloc(cap);
            gsize n = vmc_main_name_encode(s->cfg->name, nb, cap);
            g_assert(n > 0);
            queue_msg(s, SPICE_MSG_MAIN_NAME, nb, n);
            g_free(nb);
        }
        if (s->cfg->have_uuid) {
            guint8 ub[16];
            vmc_main_uuid_encode(s->cfg->uuid, ub, sizeof(ub));
            queue_msg(s, SPICE_MSG_MAIN_UUID, ub, sizeof(ub));
        }
    }

    s->client_id = vmc_mux_client_add(mux, caps);
    s->state = VMC_SESSION_ACTIVE;
    note_tokens(s, FALSE, "INIT", init.agent_tokens);
    s->in = MAIN_HEADER;
    s->hdr_have = 0;
    s->last_rx = s->now;
    s->ping_outstanding = FALSE;
}

/* The 128 ticket bytes are in auth_buf. */
static void
handle_ticket(VmcSession *s)
{
    const VmcSessionConfig *cfg = s->cfg;
    guint8 plain[VMC_TICKET_CIPHER_BYTES];
    gsize plain_len = 0;
    gboolean ok = TRUE;
    char *reason = NULL;

    if (s->key_wait) {
        /* encrypted with no key of ours: the reply was not even sent */
        s->key_wait = FALSE;
        memset(s->auth_buf, 0, sizeof(s->auth_buf));
        link_error(s, SPICE_LINK_ERR_INVALID_DATA, "ticket sent before the link reply");
        return;
    }
    if (s->key != NULL) {
        ok = vmc_ticket_key_decrypt(s->key, s->auth_buf, sizeof(s->auth_buf), plain, &plain_len);
        g_clear_pointer(&s->key, vmc_ticket_key_free); /* one link, one key */
    }
    memset(s->auth_buf, 0, sizeof(s->auth_buf));
    if (!ok) {
        deny(s, "it does not decrypt (RSA-OAEP-SHA1 with the link key)");
        return;
    }
    if (cfg->ticketing && !s->skip_auth) {
        const char *why = NULL;

        if (cfg->password == NULL || cfg->password[0] == '\0')
            why = "ticketing is on but no password is set";
        else if (cfg->password_expiry_us != 0 && s->now > cfg->password_expiry_us)
            why = "the password expired";
        else if (!vmc_ticket_check_password(plain, plain_len, cfg->password))
            why = "wrong password";
        if (why != NULL) {
            ok = FALSE;
            deny(s, why);
        }
    }
    memset(plain, 0, sizeof(plain));
    if (!ok)
        return;

    if (cfg->admit != NULL && !cfg->admit(cfg->admit_data, s, &reason)) {
        refuse_notify(s, reason ? reason : "the server refused the connection");
        g_free(reason);
        return;
    }
    g_free(reason);
    start_main(s);
}

/* ------------------------------------------------------------------------------------
 * main channel
 * ------------------------------------------------------------------------------------ */

static void
mux_failed(VmcSession *s, GError *error)
{
    fail(s, VMC_SESSION_CLOSED, error->domain, error->code, "%s", error->message);
    g_error_free(error);
}

static void
dispatch(VmcSession *s, guint16 type, const guint8 *body, gsize len)
{
    VmcMux *mux = s->cfg->mux;
    GError *error = NULL;
    guint32 v;

    switch (type) {
    case SPICE_MSGC_MAIN_AGENT_DATA:
        if (!vmc_mux_client_agent_data(mux, s->client_id, body, len, &error))
            mux_failed(s, error);
        break;
    case SPICE_MSGC_MAIN_AGENT_START:
        vmc_u32_body_decode(body, len, &v);
        note_tokens(s, TRUE, "AGENT_START", v);
        if (!vmc_mux_client_agent_start(mux, s->client_id, v, &error))
            mux_failed(s, error);
        break;
    case SPICE_MSGC_MAIN_AGENT_TOKEN:
        vmc_u32_body_decode(body, len, &v);
        note_tokens(s, TRUE, "AGENT_TOKEN", v);
        if (!vmc_mux_client_agent_token(mux, s->client_id, v, &error))
            mux_failed(s, error);
        break;
    case SPICE_MSGC_MAIN_ATTACH_CHANNELS: {
        guint8 b[4];
        gsize n = vmc_main_channels_list_encode(NULL, 0, b, sizeof(b));
        queue_reply(s, SPICE_MSG_MAIN_CHANNELS_LIST, b, n);
        break;
    }
    case SPICE_MSGC_MAIN_MIGRATE_CONNECTED:
    case SPICE_MSGC_MAIN_MIGRATE_CONNECTED_SEAMLESS:
        /* no migration in progress: tell the client to stop, as the reference does */
        queue_reply(s, SPICE_MSG_MAIN_MIGRATE_CANCEL, NULL, 0);
        break;
    case SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS:
        queue_reply(s, SPICE_MSG_MAIN_MIGRATE_DST_SEAMLESS_NACK, NULL, 0);
        break;
    case SPICE_MSGC_ACK_SYNC:
    case SPICE_MSGC_ACK:
    case SPICE_MSGC_PONG:
    case SPICE_MSGC_DISCONNECTING:
    case SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST: /* only SERVER mode exists here: no change */
    case SPICE_MSGC_MAIN_MIGRATE_CONNECT_ERROR:
    case SPICE_MSGC_MAIN_MIGRATE_END:
        break;
    default:
        /* CLIENT_INFO, QUALITY_INDICATOR, MIGRATE_FLUSH_MARK, MIGRATE_DATA: the reference
         * disconnects (or aborts); so do we */
        fail(s, VMC_SESSION_CLOSED, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
             "unexpected message %s (%u)", vmc_main_msgc_name(type), type);
        break;
    }
}

static gsize
feed_main(VmcSession *s, const guint8 *buf, gsize len)
{
    gsize hsize = vmc_data_header_size(s->mini);
    gsize n;

    switch (s->in) {
    case MAIN_HEADER: {
        VmcDecodeResult r;
        gsize used;

        n = MIN(len, hsize - s->hdr_have);
        memcpy(s->hdr_buf + s->hdr_have, buf, n);
        s->hdr_have += n;
        if (s->hdr_have < hsize)
            return n;
        s->hdr_have = 0;
        r = vmc_data_header_decode(s->hdr_buf, hsize, s->mini, &s->hdr, &used);
        g_assert(r == VMC_DECODE_OK);
        /* the header is judged before a single body byte is read */
        r = vmc_main_client_msg_check(s->hdr.type, s->hdr.size);
        if (r != VMC_DECODE_OK) {
            fail(s, VMC_SESSION_CLOSED, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "message %s (%u) of %u bytes: %s", vmc_main_msgc_name(s->hdr.type),
                 s->hdr.type, s->hdr.size, vmc_decode_result_to_string(r));
            return n;
        }
        s->body_keep = MIN((gsize)s->hdr.size, (gsize)BODY_KEEP);
        s->skip = (gsize)s->hdr.size - s->body_keep;
        s->body_have = 0;
        if (s->body_keep == 0) {
            dispatch(s, s->hdr.type, NULL, 0);
            if (s->state == VMC_SESSION_ACTIVE)
                s->in = s->skip > 0 ? MAIN_SKIP : MAIN_HEADER;
        } else {
            s->in = MAIN_BODY;
        }
        return n;
    }
    case MAIN_BODY:
        if (s->body_have == 0 && len >= s->body_keep) {
            /* the whole body is here: no copy */
            n = s->body_keep;
            dispatch(s, s->hdr.type, buf, n);
        } else {
            n = MIN(len, s->body_keep - s->body_have);
            memcpy(s->body + s->body_have, buf, n);
            s->body_have += n;
            if (s->body_have < s->body_keep)
                return n;
            dispatch(s, s->hdr.type, s->body, s->body_keep);
        }
        if (s->state == VMC_SESSION_ACTIVE)
            s->in = s->skip > 0 ? MAIN_SKIP : MAIN_HEADER;
        return n;
    case MAIN_SKIP:
        n = MIN(len, s->skip);
        s->skip -= n;
        if (s->skip == 0)
            s->in = MAIN_HEADER;
        return n;
    default:
        g_assert_not_reached();
    }
}

/* Consumes some of `buf` in the link/auth phases; returns how much. */
static gsize
feed_handshake(VmcSession *s, const guint8 *buf, gsize len)
{
    gsize n;

    switch (s->in) {
    case LINK_HEADER: {
        VmcDecodeResult r;
        VmcLinkHeader h;
        gsize used;

        /* byte by byte up to the magic, so a bad one is answered right away */
        n = MIN(len, VMC_LINK_HEADER_SIZE - s->link_have);
        if (s->link_have < 4)
            n = MIN(n, 4 - s->link_have);
        memcpy(s->link_buf + s->link_have, buf, n);
        s->link_have += n;
        r = vmc_link_header_decode(s->link_buf, s->link_have, TRUE, &h, &used);
        switch (r) {
        case VMC_DECODE_NEED_MORE:
            break;
        case VMC_DECODE_OK:
            s->link_header = h;
            s->in = LINK_MESS;
            break;
        case VMC_DECODE_ERR_MAGIC:
            link_error(s, SPICE_LINK_ERR_INVALID_MAGIC, "bad magic");
            break;
        case VMC_DECODE_ERR_VERSION:
            if (h.major_version == 0)
                fail(s, VMC_SESSION_CLOSED, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                     "link major version 0");
            else
                link_error(s, SPICE_LINK_ERR_VERSION_MISMATCH, "unsupported major version");
            break;
        case VMC_DECODE_ERR_SIZE:
            link_error(s, SPICE_LINK_ERR_INVALID_DATA, "link message size out of range");
            break;
        default:
            link_error(s, SPICE_LINK_ERR_INVALID_DATA, vmc_decode_result_to_string(r));
            break;
        }
        return n;
    }
    case LINK_MESS: {
        gsize want = VMC_LINK_HEADER_SIZE + s->link_header.size;

        n = MIN(len, want - s->link_have);
        memcpy(s->link_buf + s->link_have, buf, n);
        s->link_have += n;
        if (s->link_have == want)
            handle_link(s);
        return n;
    }
    case AUTH_MECH: {
        guint32 mech;

        n = MIN(len, 4 - s->auth_have);
        memcpy(s->auth_buf + s->auth_have, buf, n);
        s->auth_have += n;
        if (s->auth_have < 4)
            return n;
        vmc_link_u32_decode(s->auth_buf, 4, &mech, NULL);
        s->auth_have = 0;
        if (mech != SPICE_COMMON_CAP_AUTH_SPICE)
            link_error(s, SPICE_LINK_ERR_INVALID_DATA, "unsupported auth mechanism (no SASL)");
        else
            s->in = AUTH_TICKET;
        return n;
    }
    case AUTH_TICKET:
        n = MIN(len, VMC_TICKET_CIPHER_BYTES - s->auth_have);
        memcpy(s->auth_buf + s->auth_have, buf, n);
        s->auth_have += n;
        if (s->auth_have == VMC_TICKET_CIPHER_BYTES)
            handle_ticket(s);
        return n;
    default:
        g_assert_not_reached();
    }
}

gboolean
vmc_session_feed(VmcSession *session, const guint8 *buf, gsize len)
{
    VmcSession *s = session;

    g_return_val_if_fail(session != NULL, FALSE);
    g_return_val_if_fail(buf != NULL || len == 0, FALSE);

    if (len > 0) {
        s->last_rx = s->now;
        s->ping_outstanding = FALSE;
    }
    while (len > 0 && s->in != DEAD) {
        gsize n;

        if (s->state == VMC_SESSION_ACTIVE)
            n = feed_main(s, buf, len);
        else
            n = feed_handshake(s, buf, len);
        g_assert(n > 0 && n <= len);
        buf += n;
        len -= n;
    }
    return s->state != VMC_SESSION_CLOSING && s->state != VMC_SESSION_CLOSED;
}

/* ------------------------------------------------------------------------------------
 * time
 * ------------------------------------------------------------------------------------ */

void
vmc_session_tick(VmcSession *session, gint64 now_us)
{
    VmcSession *s = session;
    const VmcSessionConfig *cfg;

    g_return_if_fail(session != NULL);
    cfg = s->cfg;
    s->now = now_us;

    switch (s->state) {
    case VMC_SESSION_LINK:
    case VMC_SESSION_AUTH:
        if (cfg->handshake_timeout_us > 0 && now_us - s->created >= cfg->handshake_timeout_us)
            fail(s, VMC_SESSION_CLOSED, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                 "no complete link and ticket within %" G_GINT64_FORMAT " s",
                 cfg->handshake_timeout_us / G_USEC_PER_SEC);
        else
            vmc_session_retry_key(s);
        break;
    case VMC_SESSION_ACTIVE:
        check_mux(s);
        if (s->state != VMC_SESSION_ACTIVE || !s->keepalive || cfg->ping_interval_us <= 0)
            break;
        if (s->ping_outstanding) {
            if (cfg->ping_timeout_us > 0 && now_us - s->ping_sent >= cfg->ping_timeout_us)
                fail(s, VMC_SESSION_CLOSED, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                     "no answer to PING for %" G_GINT64_FORMAT " ms",
                     (now_us - s->ping_sent) / 1000);
        } else if (now_us - s->last_rx >= cfg->ping_interval_us) {
            VmcPing p = {.id = ++s->ping_id, .timestamp = (guint64)now_us, .padding = 0};
            guint8 b[12];
            gsize n = vmc_ping_encode(&p, b, sizeof(b));
            queue_msg(s, SPICE_MSG_PING, b, n);
            s->ping_outstanding = TRUE;
            s->ping_sent = now_us;
        }
        break;
    case VMC_SESSION_CLOSING:
        if (now_us - s->closing_since >= CLOSING_TIMEOUT_US)
            fail(s, VMC_SESSION_CLOSED, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                 "the client did not read its last reply");
        break;
    case VMC_SESSION_CLOSED:
        break;
    }
}

gint64
vmc_session_next_deadline(VmcSession *session)
{
    VmcSession *s = session;
    const VmcSessionConfig *cfg;

    g_return_val_if_fail(session != NULL, -1);
    cfg = s->cfg;
    switch (s->state) {
    case VMC_SESSION_LINK:
    case VMC_SESSION_AUTH:
        return cfg->handshake_timeout_us > 0 ? s->created + cfg->handshake_timeout_us : -1;
    case VMC_SESSION_ACTIVE:
        if (!s->keepalive || cfg->ping_interval_us <= 0)
            return -1;
        if (s->ping_outstanding)
            return cfg->ping_timeout_us > 0 ? s->ping_sent + cfg->ping_timeout_us : -1;
        return s->last_rx + cfg->ping_interval_us;
    case VMC_SESSION_CLOSING:
        return s->closing_since + CLOSING_TIMEOUT_US;
    case VMC_SESSION_CLOSED:
        return -1;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------
 * accessors
 * ------------------------------------------------------------------------------------ */

VmcSessionState
vmc_session_get_state(VmcSession *session)
{
    g_return_val_if_fail(session != NULL, VMC_SESSION_CLOSED);
    return session->state;
}

gboolean
vmc_session_is_done(VmcSession *session)
{
    g_return_val_if_fail(session != NULL, TRUE);
    return session->state == VMC_SESSION_CLOSED ||
           (session->state == VMC_SESSION_CLOSING && session->out_len == 0);
}

const GError *
vmc_session_get_error(VmcSession *session)
{
    g_return_val_if_fail(session != NULL, NULL);
    return session->error;
}

guint32
vmc_session_get_client_id(VmcSession *session)
{
    g_return_val_if_fail(session != NULL, 0);
    return session->client_id;
}

guint32
vmc_session_get_session_id(VmcSession *session)
{
    g_return_val_if_fail(session != NULL, 0);
    return session->session_id;
}

guint32
vmc_session_get_common_caps(VmcSession *session)
{
    g_return_val_if_fail(session != NULL, 0);
    return session->link.num_common_caps > 0 ? session->link.common_caps[0] : 0;
}

guint32
vmc_session_get_channel_caps(VmcSession *session)
{
    g_return_val_if_fail(session != NULL, 0);
    return session->link.num_channel_caps > 0 ? session->link.channel_caps[0] : 0;
}

void
vmc_session_close(VmcSession *session, const char *reason)
{
    g_return_if_fail(session != NULL);
    fail(session, VMC_SESSION_CLOSED, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "%s",
         reason ? reason : "closed by the server");
}

void
vmc_session_set_skip_auth(VmcSession *session, gboolean skip_auth)
{
    g_return_if_fail(session != NULL);
    session->skip_auth = !!skip_auth;
}
