/* fuzz-session.c — the main-channel session (server/vmc-session.h) with a VmcMux behind
 * it, from the first link byte through INIT into the data phase. Ticketing is off and
 * there is no key pool: the link reply carries a zero key and any 128-byte ticket is
 * accepted, so the fuzzer reaches the data phase without crypto.
 *
 * Input:
 *   byte 0  configuration
 *     bit 0  the client advertises MINI_HEADER (else full 18-byte headers)
 *     bit 1  ... PROTOCOL_AUTH_SELECTION (then it sends the mechanism word)
 *     bit 2  a guest agent is connected from the start
 *     bit 3  ... the main cap AGENT_CONNECTED_TOKENS
 *     bit 4  the guest talks: after each feed it sends the next canned chunk (caps, a
 *            5000-byte clipboard in 3 chunks, two messages in one chunk, port 2, one
 *            3020-byte chunk) while the mux wants input, 24 chunks at most once the
 *            client is in (every 8th feed before)
 *     bit 5  keepalive (PING after 10 s of silence, close 10 s later)
 *     bit 6  small mux: window 4, 16 KiB towards the client, 8 KiB towards the guest
 *     bit 7  raw: the stream is the client's from its first link byte; otherwise the
 *            harness sends a valid link (caps from bits 0-3), mechanism word and ticket
 *            first, and the stream below follows them
 *   byte 1  splits: bits 0-1 mode (0 one feed, 1 fixed n, 2 byte by byte, 3 pseudo-random
 *           1..n), bits 2-7 p with n = p * p + 1; after 600 feeds, pieces are at least
 *           64 bytes
 *   byte 2  events: bits 0-2 time step per feed (0, 1 ms, 50 ms, 1 s, 4 s, 11 s, 31 s,
 *           61 s), bit 3 the guest disconnects/reconnects every 8 feeds, bit 4 slow guest
 *           (at most 3000 bytes written to it per feed), bit 5 lazy client (reads at most
 *           700 bytes per feed), bit 6 admission refused, bit 7 copy-paste and file
 *           transfer off
 *   byte 3  more: bit 0 pushy guest (a runtime that keeps reading the guest although the
 *           mux asks it to pause: the mux must cut the client off, not grow; 256 chunks
 *           at most), bit 1 deaf
 *           client (reads nothing until the end), bit 2 the server closes the session
 *           at feed 16
 *   rest    the client's byte stream (after the harness's handshake unless raw)
 *
 * After each feed the guest gets its turn, the session output and the guest output are
 * drained, and everything is checked:
 * - session output parses with the protocol decoders: link reply (zero key, our caps) or
 *   link error, link result 0, then data messages with the negotiated header (full
 *   headers: serials from 1, no sub-list); INIT first (session id, window, agent
 *   presence), NAME/UUID only with the cap, replies of the right sizes, AGENT_DATA of
 *   1..2048 bytes that never span two agent messages (reassembled as spice-gtk does);
 *   no more AGENT_DATA than the client granted, no more tokens back than AGENT_DATA it
 *   sent; after the end (link error, refusal) nothing more;
 * - guest output: chunks of 1..2048 bytes on port 1 or 2 that follow agent message
 *   boundaries; port-1 chunks and bytes never exceed the client's AGENT_DATA;
 * - an independent model of the client stream: every reply-causing message has its
 *   reply, and a message the session must reject has closed it;
 * - bounds on the session's pending output and the mux queues, tokens in use <= window;
 * - the state only moves forward; feed() returns FALSE exactly when an error is set;
 *   after that, more input changes nothing (no output, no mux input, same error).
 */
#include <stdint.h>
#include <string.h>
#include <glib.h>
#include <spice/enums.h>
#include <spice/protocol.h>
#include <spice/vd_agent.h>

#include "server/vmc-session.h"
#include "protocol/vmc-agent.h"
#include "protocol/vmc-chunk.h"
#include "protocol/vmc-header.h"
#include "protocol/vmc-link.h"
#include "protocol/vmc-main.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CONF_MINI (1u << 0)
#define CONF_AUTH_SELECTION (1u << 1)
#define CONF_GUEST (1u << 2)
#define CONF_CONNECTED_TOKENS (1u << 3)
#define CONF_GUEST_TALKS (1u << 4)
#define CONF_KEEPALIVE (1u << 5)
#define CONF_SMALL (1u << 6)
#define CONF_RAW (1u << 7)

#define EV_FLAPS (1u << 3)
#define EV_SLOW_GUEST (1u << 4)
#define EV_LAZY (1u << 5)
#define EV_REFUSE (1u << 6)
#define EV_POLICY_OFF (1u << 7)

#define MORE_PUSHY_GUEST (1u << 0)
#define MORE_DEAF (1u << 1)
#define MORE_CLOSE (1u << 2)
#define CLOSE_AT_FEED 16u

#define LAZY_READ 700u
#define FEEDS_FINE 600u
#define GUEST_CHUNKS_MAX 24u /* canned chunks per run: keeps byte-by-byte runs fast */
#define GUEST_CHUNKS_PUSHY 256u /* enough to pass the session's pull limit and the mux's */
#define SLOW_GUEST_WRITE 3000u
/* the session's own replies are cut at 1 MiB, mux output is pulled up to 128 KiB */
#define SESSION_OUT_BOUND (1024u * 1024u + 128u * 1024u + 4096u)

static const gint64 time_steps[8] = {
    0, 1000, 50000, G_USEC_PER_SEC, 4 * G_USEC_PER_SEC, 11 * G_USEC_PER_SEC,
    31 * G_USEC_PER_SEC, 61 * G_USEC_PER_SEC,
};

static const guint8 fuzz_uuid[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

typedef enum {
    OUT_LINK,   /* link reply or link error */
    OUT_RESULT, /* the 4-byte link result (or a link error for the mechanism word) */
    OUT_MAIN,   /* data messages */
    OUT_END,    /* nothing may follow */
} OutPhase;

typedef struct {
    guint conf;
    guint split;
    guint events;
    guint more;
    guint32 rng;

    VmcMux *mux;
    VmcMuxConfig mcfg;
    VmcSessionConfig scfg;
    VmcSession *s;
    gint64 now;
    guint32 window;
    guint step;

    /* what the client sends, and how much of it was fed */
    GByteArray *stream;
    gsize fed;

    /* independent model of the client's main-channel messages */
    gsize model_off; /* G_MAXSIZE until the main channel is up */
    gboolean model_have_hdr;
    gboolean model_dispatched;
    VmcDataHeader model_hdr;
    gboolean model_fatal; /* a message the session must close on was fed */
    guint64 requests;     /* messages that get a reply */
    guint64 units;        /* AGENT_DATA messages */
    guint64 unit_bytes;

    /* session output */
    GByteArray *obuf;
    guint64 out_read; /* bytes taken from the session so far */
    OutPhase phase;
    gboolean mini;
    guint64 serial;
    gboolean saw_init;
    gboolean guest_at_admit;
    guint names;
    guint uuids;
    guint32 ping_id;
    guint64 replies;
    guint64 agent_data;
    guint64 tokens_back;
    gsize agent_need; /* bytes of the agent message being reassembled still to come */

    /* the token observer */
    guint64 client_grants; /* AGENT_START + AGENT_TOKEN values from the client */

    /* guest */
    guint canned_next;
    guint canned_sent;
    GByteArray *gbuf; /* guest output not yet parsed */
    gsize port_need[2];
    guint32 port2_type;
    guint64 port1_chunks;
    guint64 port1_bytes;

    /* after a fatal error */
    gboolean dead;
    guint64 produced_at_death;
    VmcMuxStats stats_at_death;
    gchar *error_at_death;
    VmcSessionState last_state;
} Harness;

/* ------------------------------------------------------------------------------------
 * canned guest traffic
 * ------------------------------------------------------------------------------------ */

static GPtrArray *canned; /* GBytes: whole chunks (header + payload); built once */

static void
put_agent_msg(GByteArray *a, guint32 type, const guint8 *payload, gsize len)
{
    guint8 h[VMC_AGENT_HEADER_SIZE];
    VmcAgentHeader ah = {.protocol = VMC_AGENT_PROTOCOL, .type = type, .size = (guint32)len};

    vmc_agent_header_encode(&ah, h);
    g_byte_array_append(a, h, sizeof(h));
    if (len > 0)
        g_byte_array_append(a, payload, (guint)len);
}

static void
add_chunk(guint32 port, const guint8 *payload, gsize len)
{
    guint8 *c = g_malloc(VMC_CHUNK_HEADER_SIZE + len);

    vmc_chunk_header_encode(port, (guint32)len, c);
    memcpy(c + VMC_CHUNK_HEADER_SIZE, payload, len);
    g_ptr_array_add(canned, g_bytes_new_take(c, VMC_CHUNK_HEADER_SIZE + len));
}

static void
build_canned(void)
{
    GByteArray *a;
    guint8 p[5000];

    if (canned != NULL)
        return;
    canned = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    for (gsize i = 0; i < sizeof(p); i++)
        p[i] = (guint8)(i * 7 + 1);

    /* ANNOUNCE_CAPABILITIES {request 1, caps of spice-vdagentd} */
    a = g_byte_array_new();
    vmc_put_u32le(p, 1);
    vmc_put_u32le(p + 4, 0x38DE7);
    put_agent_msg(a, VD_AGENT_ANNOUNCE_CAPABILITIES, p, 8);
    add_chunk(VMC_PORT_CLIENT, a->data, a->len);

    /* a 5000-byte CLIPBOARD (type UTF8) in chunks of 2048, 2048 and the rest */
    g_byte_array_set_size(a, 0);
    vmc_put_u32le(p, VD_AGENT_CLIPBOARD_UTF8_TEXT);
    put_agent_msg(a, VD_AGENT_CLIPBOARD, p, 5000);
    add_chunk(VMC_PORT_CLIENT, a->data, 2048);
    add_chunk(VMC_PORT_CLIENT, a->data + 2048, 2048);
    add_chunk(VMC_PORT_CLIENT, a->data + 4096, a->len - 4096);

    /* two messages in one chunk: a REPLY and an unknown type */
    g_byte_array_set_size(a, 0);
    vmc_put_u32le(p, VD_AGENT_MONITORS_CONFIG);
    vmc_put_u32le(p + 4, VD_AGENT_SUCCESS);
    put_agent_msg(a, VD_AGENT_REPLY, p, 8);
    put_agent_msg(a, 99, p + 100, 30);
    add_chunk(VMC_PORT_CLIENT, a->data, a->len);

    /* port 2: for the server, never for clients */
    g_byte_array_set_size(a, 0);
    put_agent_msg(a, 99, p, 8);
    add_chunk(VMC_PORT_SERVER, a->data, a->len);

    /* one oversized chunk (spice-vdagentd writes whole messages as one chunk) */
    g_byte_array_set_size(a, 0);
    put_agent_msg(a, 99, p, 3000);
    add_chunk(VMC_PORT_CLIENT, a->data, a->len);
    g_byte_array_unref(a);
}

/* ------------------------------------------------------------------------------------
 * checkers
 * ------------------------------------------------------------------------------------ */

/* One unit (chunk payload or AGENT_DATA body) of an agent message stream. *need: bytes
 * of the current message still to come, 0 between messages. Returns the message type
 * when the unit starts a message, else G_MAXUINT32. */
static guint32
agent_unit(gsize *need, const guint8 *p, gsize n)
{
    guint32 type = G_MAXUINT32;

    g_assert_cmpuint(n, >=, 1);
    g_assert_cmpuint(n, <=, VMC_CHUNK_MAX_PAYLOAD);
    if (*need == 0) {
        VmcAgentHeader h;

        g_assert_cmpuint(n, >=, VMC_AGENT_HEADER_SIZE);
        g_assert_cmpint(vmc_agent_header_decode(p, n, &h, NULL), ==, VMC_DECODE_OK);
        g_assert_cmpuint(h.protocol, ==, VMC_AGENT_PROTOCOL);
        *need = VMC_AGENT_HEADER_SIZE + (gsize)h.size;
        type = h.type;
    }
    g_assert_cmpuint(n, <=, *need);
    *need -= n;
    return type;
}

static void
guest_reset(Harness *h)
{
    g_byte_array_set_size(h->gbuf, 0);
    h->port_need[0] = h->port_need[1] = 0;
}

/* Bytes the guest read from its port. */
static void
guest_bytes(Harness *h, const guint8 *p, gsize n)
{
    gsize off = 0;

    g_byte_array_append(h->gbuf, p, (guint)n);
    while (h->gbuf->len - off >= VMC_CHUNK_HEADER_SIZE) {
        const guint8 *c = h->gbuf->data + off;
        guint32 port = vmc_get_u32le(c);
        guint32 size = vmc_get_u32le(c + 4);
        guint32 type;

        g_assert(port == VMC_PORT_CLIENT || port == VMC_PORT_SERVER);
        g_assert_cmpuint(size, >=, 1);
        g_assert_cmpuint(size, <=, VMC_CHUNK_MAX_PAYLOAD);
        if (h->gbuf->len - off - VMC_CHUNK_HEADER_SIZE < size)
            break;
        type = agent_unit(&h->port_need[port - 1], c + VMC_CHUNK_HEADER_SIZE, size);
        if (port == VMC_PORT_CLIENT) {
            h->port1_chunks++;
            h->port1_bytes += size;
        } else {
            if (type != G_MAXUINT32)
                h->port2_type = type;
            /* spice-vdagentd drops its half-built port-1 message on it */
            if (h->port_need[1] == 0 && h->port2_type == VD_AGENT_CLIENT_DISCONNECTED)
                h->port_need[0] = 0;
        }
        off += VMC_CHUNK_HEADER_SIZE + size;
    }
    g_byte_array_remove_range(h->gbuf, 0, (guint)off);
}

static void
write_guest(Harness *h, gsize max)
{
    while (max > 0) {
        GOutputVector vec[8];
        guint n = vmc_mux_guest_output_vec(h->mux, vec, G_N_ELEMENTS(vec));
        gsize total = 0;

        if (n == 0)
            break;
        for (guint i = 0; i < n && total < max; i++) {
            gsize take = MIN(vec[i].size, max - total);

            g_assert(vec[i].size > 0);
            guest_bytes(h, vec[i].buffer, take);
            total += take;
        }
        vmc_mux_guest_output_advance(h->mux, total);
        max -= total;
    }
}

static gboolean
client_main_cap(Harness *h, guint cap)
{
    return (vmc_session_get_channel_caps(h->s) >> cap) & 1u;
}

/* One whole message from the session in the main phase. */
static void
check_msg(Harness *h, guint16 type, const guint8 *body, gsize len)
{
    guint32 v = 0;

    if (!h->saw_init) {
        VmcMainInit init;

        if (type == SPICE_MSG_NOTIFY) {
            VmcNotify n;

            g_assert(h->events & EV_REFUSE);
            g_assert_cmpint(vmc_notify_decode(body, len, &n), ==, VMC_DECODE_OK);
            g_assert_cmpuint(n.severity, ==, SPICE_NOTIFY_SEVERITY_ERROR);
            g_assert_nonnull(vmc_session_get_error(h->s));
            h->phase = OUT_END;
            return;
        }
        g_assert(!(h->events & EV_REFUSE));
        g_assert_cmpuint(type, ==, SPICE_MSG_MAIN_INIT);
        g_assert_cmpuint(len, ==, VMC_MAIN_INIT_SIZE);
        g_assert_cmpint(vmc_main_init_decode(body, len, &init), ==, VMC_DECODE_OK);
        g_assert_cmpuint(init.session_id, !=, 0);
        g_assert_cmpuint(init.session_id, ==, vmc_session_get_session_id(h->s));
        g_assert_cmpuint(init.agent_tokens, ==, h->window);
        g_assert_cmpuint(init.agent_connected, ==, h->guest_at_admit ? 1 : 0);
        g_assert_cmpuint(init.current_mouse_mode, ==, SPICE_MOUSE_MODE_SERVER);
        h->saw_init = TRUE;
        return;
    }

    switch (type) {
    case SPICE_MSG_MAIN_NAME: {
        const char *name;
        guint32 name_len;

        g_assert(client_main_cap(h, SPICE_MAIN_CAP_NAME_AND_UUID));
        g_assert_cmpuint(++h->names, ==, 1);
        g_assert_cmpint(vmc_main_name_decode(body, len, &name, &name_len), ==, VMC_DECODE_OK);
        g_assert_cmpuint(name_len, ==, 5);
        g_assert_cmpmem(name, 4, "fuzz", 4);
        break;
    }
    case SPICE_MSG_MAIN_UUID: {
        guint8 uuid[16];

        g_assert(client_main_cap(h, SPICE_MAIN_CAP_NAME_AND_UUID));
        g_assert_cmpuint(++h->uuids, ==, 1);
        g_assert_cmpint(vmc_main_uuid_decode(body, len, uuid), ==, VMC_DECODE_OK);
        g_assert_cmpmem(uuid, 16, fuzz_uuid, 16);
        break;
    }
    case SPICE_MSG_MAIN_CHANNELS_LIST: {
        VmcChannelId ids[1];
        guint32 n = 1;

        g_assert_cmpint(vmc_main_channels_list_decode(body, len, ids, 1, &n), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(n, ==, 0);
        g_assert_cmpuint(len, ==, 4);
        h->replies++;
        break;
    }
    case SPICE_MSG_MAIN_MIGRATE_CANCEL:
    case SPICE_MSG_MAIN_MIGRATE_DST_SEAMLESS_NACK:
        g_assert_cmpuint(len, ==, 0);
        h->replies++;
        break;
    case SPICE_MSG_PING: {
        VmcPing ping;

        g_assert(h->conf & CONF_KEEPALIVE);
        g_assert_cmpint(vmc_ping_decode(body, len, &ping), ==, VMC_DECODE_OK);
        g_assert_cmpuint(ping.id, ==, ++h->ping_id);
        break;
    }
    case SPICE_MSG_MAIN_AGENT_DATA:
        agent_unit(&h->agent_need, body, len);
        h->agent_data++;
        /* never more than the client allowed (AGENT_START sets, AGENT_TOKEN adds) */
        g_assert_cmpuint(h->agent_data, <=, h->client_grants);
        break;
    case SPICE_MSG_MAIN_AGENT_TOKEN:
        g_assert_cmpint(vmc_u32_body_decode(body, len, &v), ==, VMC_DECODE_OK);
        g_assert_cmpuint(len, ==, 4);
        g_assert_cmpuint(v, >, 0);
        h->tokens_back += v;
        /* a token only comes back for an AGENT_DATA the client sent */
        g_assert_cmpuint(h->tokens_back, <=, h->units);
        break;
    case SPICE_MSG_MAIN_AGENT_CONNECTED:
        g_assert_cmpuint(len, ==, 0);
        g_assert(!client_main_cap(h, SPICE_MAIN_CAP_AGENT_CONNECTED_TOKENS));
        h->agent_need = 0;
        break;
    case SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS:
        g_assert_cmpint(vmc_u32_body_decode(body, len, &v), ==, VMC_DECODE_OK);
        g_assert_cmpuint(len, ==, 4);
        g_assert(client_main_cap(h, SPICE_MAIN_CAP_AGENT_CONNECTED_TOKENS));
        g_assert_cmpuint(v, ==, h->window);
        h->agent_need = 0;
        break;
    case SPICE_MSG_MAIN_AGENT_DISCONNECTED:
        g_assert_cmpint(vmc_u32_body_decode(body, len, &v), ==, VMC_DECODE_OK);
        g_assert_cmpuint(len, ==, 4);
        /* spice-gtk drops its half-built message */
        h->agent_need = 0;
        break;
    default:
        g_error("unexpected message %u (%s) of %" G_GSIZE_FORMAT " bytes", type,
                vmc_main_msg_name(type), len);
    }
}

/* A link reply or link error at the front of `p`; returns the bytes it used (0: more
 * are needed). */
static gsize
check_link_reply(Harness *h, const guint8 *p, gsize len)
{
    VmcLinkHeader lh;
    VmcLinkReply r;
    gsize used;
    guint32 common = vmc_session_get_common_caps(h->s);

    if (len < VMC_LINK_HEADER_SIZE)
        return 0;
    g_assert_cmpint(vmc_link_header_decode(p, len, FALSE, &lh, &used), ==, VMC_DECODE_OK);
    g_assert_cmpuint(lh.minor_version, ==, VMC_LINK_VERSION_MINOR);
    g_assert(lh.size == VMC_LINK_REPLY_SIZE || lh.size == VMC_LINK_REPLY_SIZE + 8);
    if (len - VMC_LINK_HEADER_SIZE < lh.size)
        return 0;
    g_assert_cmpint(vmc_link_reply_decode(p + VMC_LINK_HEADER_SIZE, lh.size, &r, &used), ==,
                    VMC_DECODE_OK);
    if (r.error != SPICE_LINK_ERR_OK) {
        /* a link error ends everything */
        g_assert_cmpuint(lh.size, ==, VMC_LINK_REPLY_SIZE);
        g_assert_cmpuint(r.num_common_caps + r.num_channel_caps, ==, 0);
        g_assert_nonnull(vmc_session_get_error(h->s));
        h->phase = OUT_END;
    } else {
        g_assert_cmpint(h->phase, ==, OUT_LINK);
        g_assert_cmpuint(lh.size, ==, VMC_LINK_REPLY_SIZE + 8);
        g_assert_cmpuint(r.num_common_caps, ==, 1);
        g_assert_cmpuint(r.num_channel_caps, ==, 1);
        g_assert_cmpuint(r.common_caps[0], ==,
                         (1u << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION) |
                             (1u << SPICE_COMMON_CAP_AUTH_SPICE) |
                             (1u << SPICE_COMMON_CAP_MINI_HEADER));
        /* no key pool: a zero key */
        for (guint i = 0; i < VMC_TICKET_PUBKEY_BYTES; i++)
            g_assert_cmpuint(r.pub_key[i], ==, 0);
        h->mini = (common >> SPICE_COMMON_CAP_MINI_HEADER) & 1u;
        if (!(h->conf & CONF_RAW)) {
            g_assert_cmpuint(h->mini, ==, !!(h->conf & CONF_MINI));
            g_assert_cmpuint((common >> SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION) & 1u, ==,
                             !!(h->conf & CONF_AUTH_SELECTION));
        }
        h->phase = OUT_RESULT;
    }
    return VMC_LINK_HEADER_SIZE + lh.size;
}

/* Parses what was read from the session so far. */
static void
parse_output(Harness *h)
{
    gsize off = 0;

    for (;;) {
        const guint8 *p = h->obuf->data + off;
        gsize len = h->obuf->len - off;
        gsize n = 0;

        if (h->phase == OUT_LINK) {
            n = check_link_reply(h, p, len);
        } else if (h->phase == OUT_RESULT) {
            guint32 result;

            if (len >= 4 && vmc_get_u32le(p) == VMC_LINK_MAGIC) {
                /* the mechanism word was refused */
                n = check_link_reply(h, p, len);
            } else if (vmc_link_u32_decode(p, len, &result, &n) == VMC_DECODE_OK) {
                /* no keys, no ticketing: every ticket passes */
                g_assert_cmpuint(result, ==, SPICE_LINK_ERR_OK);
                g_assert_cmpuint(vmc_session_get_client_id(h->s) != 0, ==,
                                 !(h->events & EV_REFUSE));
                h->phase = OUT_MAIN;
            } else {
                n = 0;
            }
        } else if (h->phase == OUT_MAIN) {
            gsize hs = vmc_data_header_size(h->mini);
            VmcDataHeader dh;
            gsize used;

            if (len < hs)
                break;
            g_assert_cmpint(vmc_data_header_decode(p, len, h->mini, &dh, &used), ==,
                            VMC_DECODE_OK);
            g_assert_cmpuint(used, ==, hs);
            /* nothing we send is large: the buffer stays bounded */
            g_assert_cmpuint(dh.size, <=, 4096);
            if (len - hs < dh.size)
                break;
            if (!h->mini) {
                g_assert_cmpuint(dh.serial, ==, ++h->serial);
                g_assert_cmpuint(dh.sub_list, ==, 0);
            }
            check_msg(h, dh.type, p + hs, dh.size);
            n = hs + dh.size;
        } else {
            g_assert_cmpuint(len, ==, 0);
        }
        if (n == 0)
            break;
        off += n;
    }
    g_byte_array_remove_range(h->obuf, 0, (guint)off);
}

/* Reads up to `max` bytes of session output. */
static void
read_session(Harness *h, gsize max)
{
    while (max > 0) {
        GOutputVector vec[4];
        guint n = vmc_session_output_vec(h->s, vec, G_N_ELEMENTS(vec));
        gsize total = 0;

        if (n == 0)
            break;
        for (guint i = 0; i < n && total < max; i++) {
            gsize take = MIN(vec[i].size, max - total);

            g_assert(vec[i].size > 0);
            g_byte_array_append(h->obuf, vec[i].buffer, (guint)take);
            total += take;
        }
        vmc_session_output_advance(h->s, total);
        h->out_read += total;
        max -= total;
        parse_output(h);
    }
}

/* Bytes the session has produced: read plus still pending. */
static guint64
produced(Harness *h)
{
    GOutputVector vec[4];
    guint n = vmc_session_output_vec(h->s, vec, G_N_ELEMENTS(vec));
    guint64 total = h->out_read;

    for (guint i = 0; i < n; i++)
        total += vec[i].size;
    return total;
}

/* ------------------------------------------------------------------------------------
 * the client stream model
 * ------------------------------------------------------------------------------------ */

/* Follows the client's main-channel messages in what was fed, independently of the
 * session: counts the ones that get replies and the AGENT_DATA, and notes the ones the
 * session must close on. */
static void
model_advance(Harness *h)
{
    gboolean mini;
    gsize hs;

    if (h->model_off == G_MAXSIZE) {
        guint32 common;
        gsize link_size;

        if (vmc_session_get_client_id(h->s) == 0)
            return;
        /* link header + message, [mechanism word], ticket */
        g_assert_cmpuint(h->fed, >=, VMC_LINK_HEADER_SIZE);
        common = vmc_session_get_common_caps(h->s);
        link_size = vmc_get_u32le(h->stream->data + 12);
        h->model_off = VMC_LINK_HEADER_SIZE + link_size +
                       (((common >> SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION) & 1u) ? 4 : 0) +
                       VMC_TICKET_CIPHER_BYTES;
        g_assert_cmpuint(h->model_off, <=, h->fed);
    }
    mini = (vmc_session_get_common_caps(h->s) >> SPICE_COMMON_CAP_MINI_HEADER) & 1u;
    hs = vmc_data_header_size(mini);
    while (!h->model_fatal) {
        const guint8 *p = h->stream->data + h->model_off;
        gsize avail = h->fed - h->model_off;
        gsize keep;

        if (!h->model_have_hdr) {
            gsize used;

            if (avail < hs)
                return;
            g_assert_cmpint(vmc_data_header_decode(p, avail, mini, &h->model_hdr, &used), ==,
                            VMC_DECODE_OK);
            if (vmc_main_client_msg_check(h->model_hdr.type, h->model_hdr.size) !=
                VMC_DECODE_OK) {
                h->model_fatal = TRUE;
                return;
            }
            h->model_have_hdr = TRUE;
            h->model_dispatched = FALSE;
        }
        keep = MIN((gsize)h->model_hdr.size, (gsize)VMC_AGENT_MAX_DATA_SIZE);
        if (avail - hs < keep)
            return;
        if (!h->model_dispatched) {
            h->model_dispatched = TRUE;
            switch (h->model_hdr.type) {
            case SPICE_MSGC_MAIN_AGENT_DATA:
                h->units++;
                h->unit_bytes += h->model_hdr.size;
                break;
            case SPICE_MSGC_MAIN_ATTACH_CHANNELS:
            case SPICE_MSGC_MAIN_MIGRATE_CONNECTED:
            case SPICE_MSGC_MAIN_MIGRATE_CONNECTED_SEAMLESS:
            case SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS:
                h->requests++;
                break;
            case SPICE_MSGC_ACK_SYNC:
            case SPICE_MSGC_ACK:
            case SPICE_MSGC_PONG:
            case SPICE_MSGC_DISCONNECTING:
            case SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST:
            case SPICE_MSGC_MAIN_MIGRATE_CONNECT_ERROR:
            case SPICE_MSGC_MAIN_MIGRATE_END:
            case SPICE_MSGC_MAIN_AGENT_START:
            case SPICE_MSGC_MAIN_AGENT_TOKEN:
                break;
            default:
                /* CLIENT_INFO, QUALITY_INDICATOR, MIGRATE_FLUSH_MARK, MIGRATE_DATA */
                h->model_fatal = TRUE;
                return;
            }
        }
        if (avail - hs < h->model_hdr.size)
            return;
        h->model_off += hs + h->model_hdr.size;
        h->model_have_hdr = FALSE;
    }
}

/* ------------------------------------------------------------------------------------
 * invariants
 * ------------------------------------------------------------------------------------ */

static void
check_bounds(Harness *h)
{
    GOutputVector vec[4];
    guint n = vmc_session_output_vec(h->s, vec, G_N_ELEMENTS(vec));
    gsize pending = 0;
    guint32 id = vmc_session_get_client_id(h->s);

    for (guint i = 0; i < n; i++)
        pending += vec[i].size;
    g_assert_cmpuint(pending, <=, SESSION_OUT_BOUND);
    g_assert_cmpuint(h->obuf->len, <=, 2 * 4096);
    g_assert_cmpuint(h->gbuf->len, <=, VMC_CHUNK_HEADER_SIZE + VMC_CHUNK_MAX_PAYLOAD);
    g_assert_cmpuint(vmc_mux_guest_output_size(h->mux), <=, h->mcfg.guest_out_limit + 128 * 1024);
    if (id != 0) {
        VmcMuxStats st;

        g_assert(vmc_mux_client_get_stats(h->mux, id, &st));
        g_assert_cmpuint(st.queued_bytes, <=, 2 * h->mcfg.client_out_limit + 64 * 1024);
        g_assert_cmpuint(st.tokens_in_use, <=, h->window);
        /* the mux saw no AGENT_DATA but those the model counted, which stops at the
         * first message the session must close on: nothing after it got through,
         * even in the same feed */
        g_assert_cmpuint(st.bytes_in, <=, h->unit_bytes);
    }
    /* every AGENT_DATA body becomes at most one port-1 chunk, verbatim */
    g_assert_cmpuint(h->port1_chunks, <=, h->units);
    g_assert_cmpuint(h->port1_bytes, <=, h->unit_bytes);
}

static void
check_state(Harness *h, gboolean fed_ok)
{
    VmcSessionState st = vmc_session_get_state(h->s);
    const GError *err = vmc_session_get_error(h->s);
    guint32 id = vmc_session_get_client_id(h->s);

    g_assert_cmpint(st, >=, h->last_state);
    h->last_state = st;
    g_assert_cmpuint(err == NULL, ==, st != VMC_SESSION_CLOSING && st != VMC_SESSION_CLOSED);
    g_assert_cmpuint(fed_ok, ==, err == NULL);
    if (st == VMC_SESSION_ACTIVE)
        g_assert_cmpuint(id, !=, 0);
    g_assert_cmpuint(vmc_session_is_done(h->s), ==,
                     st == VMC_SESSION_CLOSED ||
                         (st == VMC_SESSION_CLOSING && !vmc_session_wants_write(h->s)));
    /* a message the session must close on was fed: it has closed */
    if (h->model_fatal)
        g_assert_nonnull(err);

    if (err != NULL && !h->dead) {
        h->dead = TRUE;
        h->produced_at_death = produced(h);
        h->error_at_death = g_strdup(err->message);
        if (id != 0)
            g_assert(vmc_mux_client_get_stats(h->mux, id, &h->stats_at_death));
    } else if (h->dead) {
        /* nothing after the fatal error: no output, no mux input, the same reason */
        g_assert_cmpuint(produced(h), <=, h->produced_at_death);
        g_assert_cmpstr(err->message, ==, h->error_at_death);
        if (id != 0) {
            VmcMuxStats now;

            g_assert(vmc_mux_client_get_stats(h->mux, id, &now));
            g_assert_cmpuint(now.bytes_in, ==, h->stats_at_death.bytes_in);
            g_assert_cmpuint(now.messages_in, ==, h->stats_at_death.messages_in);
            g_assert_cmpuint(now.discarded, ==, h->stats_at_death.discarded);
        }
    }
}

static void
on_tokens(gpointer user_data, VmcSession *session, gboolean from_client, const char *what,
          guint32 tokens)
{
    Harness *h = user_data;

    g_assert(session == h->s);
    if (from_client) {
        g_assert(g_str_equal(what, "AGENT_START") || g_str_equal(what, "AGENT_TOKEN"));
        h->client_grants += tokens;
    } else if (g_str_equal(what, "INIT")) {
        g_assert_cmpuint(tokens, ==, h->window);
    }
}

static gboolean
admit(gpointer user_data, VmcSession *session, char **reason)
{
    Harness *h = user_data;

    g_assert(session == h->s);
    h->guest_at_admit = vmc_mux_guest_is_connected(h->mux);
    if (h->events & EV_REFUSE) {
        *reason = g_strdup("server full (fuzz)");
        return FALSE;
    }
    return TRUE;
}

/* ------------------------------------------------------------------------------------
 * driving
 * ------------------------------------------------------------------------------------ */

static void
build_handshake(Harness *h)
{
    guint32 common = (1u << SPICE_COMMON_CAP_AUTH_SPICE);
    guint32 main_caps = (1u << SPICE_MAIN_CAP_NAME_AND_UUID);
    VmcLinkMess m;
    VmcLinkHeader lh;
    guint8 buf[VMC_LINK_HEADER_SIZE + VMC_LINK_MESS_SIZE + 8];
    guint8 ticket[VMC_TICKET_CIPHER_BYTES];
    gsize n;

    if (h->conf & CONF_MINI)
        common |= 1u << SPICE_COMMON_CAP_MINI_HEADER;
    if (h->conf & CONF_AUTH_SELECTION)
        common |= 1u << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION;
    if (h->conf & CONF_CONNECTED_TOKENS)
        main_caps |= 1u << SPICE_MAIN_CAP_AGENT_CONNECTED_TOKENS;
    memset(&m, 0, sizeof(m));
    m.channel_type = SPICE_CHANNEL_MAIN;
    n = vmc_link_mess_encode(&m, &common, 1, &main_caps, 1, buf + VMC_LINK_HEADER_SIZE,
                             sizeof(buf) - VMC_LINK_HEADER_SIZE);
    g_assert_cmpuint(n, ==, VMC_LINK_MESS_SIZE + 8);
    lh.magic = VMC_LINK_MAGIC;
    lh.major_version = VMC_LINK_VERSION_MAJOR;
    lh.minor_version = VMC_LINK_VERSION_MINOR;
    lh.size = (guint32)n;
    vmc_link_header_encode(&lh, buf);
    g_byte_array_append(h->stream, buf, (guint)(VMC_LINK_HEADER_SIZE + n));
    if (h->conf & CONF_AUTH_SELECTION) {
        vmc_link_u32_encode(SPICE_COMMON_CAP_AUTH_SPICE, buf);
        g_byte_array_append(h->stream, buf, 4);
    }
    memset(ticket, 0, sizeof(ticket));
    g_byte_array_append(h->stream, ticket, sizeof(ticket));
}

static gsize
next_split(Harness *h, gsize left)
{
    guint p = h->split >> 2;
    gsize n = (gsize)p * p + 1;

    switch (h->split & 3) {
    case 0:
        return left;
    case 1:
        break;
    case 2:
        n = 1;
        break;
    default:
        h->rng ^= h->rng << 13;
        h->rng ^= h->rng >> 17;
        h->rng ^= h->rng << 5;
        n = 1 + h->rng % n;
        break;
    }
    /* long byte-by-byte runs cost time and find little more: past FEEDS_FINE feeds,
     * pieces are at least 64 bytes */
    if (h->step >= FEEDS_FINE)
        n = MAX(n, (gsize)64);
    return MIN(n, left);
}

static void
guest_turn(Harness *h)
{
    gboolean admitted, pushy;
    guint max;

    if ((h->events & EV_FLAPS) && h->step % 8 == 0) {
        if (vmc_mux_guest_is_connected(h->mux)) {
            vmc_mux_guest_disconnected(h->mux);
            guest_reset(h);
        } else {
            vmc_mux_guest_connected(h->mux);
            h->canned_next = 0;
        }
    }
    /* before the client is in, the guest talks now and then (the mux drops that); a
     * pushy guest sends 4 chunks a feed */
    admitted = vmc_session_get_client_id(h->s) != 0;
    pushy = (h->more & MORE_PUSHY_GUEST) != 0;
    max = pushy ? GUEST_CHUNKS_PUSHY : GUEST_CHUNKS_MAX;
    if (!(h->conf & CONF_GUEST_TALKS) || (!admitted && h->step % 8 != 0))
        return;
    for (guint i = 0; i < (pushy ? 4u : 1u); i++) {
        GBytes *c = g_ptr_array_index(canned, h->canned_next);
        gsize len;
        const guint8 *p = g_bytes_get_data(c, &len);
        GError *error = NULL;

        if ((admitted && h->canned_sent >= max) || !vmc_mux_guest_is_connected(h->mux) ||
            (!vmc_mux_guest_wants_input(h->mux) && !pushy))
            return;
        if (!vmc_mux_feed_guest(h->mux, p, len, &error))
            g_error("the mux refused a well-formed guest chunk: %s", error->message);
        h->canned_next = (h->canned_next + 1) % canned->len;
        if (admitted)
            h->canned_sent++;
    }
}

/* Time passes: whatever was due has been done, so the next deadlines are later. */
static void
tick(Harness *h)
{
    gint64 d;

    vmc_mux_tick(h->mux, h->now);
    vmc_session_tick(h->s, h->now);
    d = vmc_session_next_deadline(h->s);
    g_assert(d == -1 || d > h->now);
    d = vmc_mux_next_deadline(h->mux);
    g_assert(d == -1 || d > h->now);
}

/* One feed of the client stream, then everyone's turn and the checks. */
static void
step(Harness *h, gsize n)
{
    guint8 *piece = NULL;
    gboolean ok;

    h->step++;
    h->now += time_steps[h->events & 7];
    tick(h);
    if ((h->more & MORE_CLOSE) && h->step == CLOSE_AT_FEED)
        vmc_session_close(h->s, "replaced by a newer client");
    check_state(h, vmc_session_get_error(h->s) == NULL);

    /* an exact-size copy: ASan sees any read past the feed */
    if (n > 0)
        piece = g_memdup2(h->stream->data + h->fed, n);
    ok = vmc_session_feed(h->s, piece, n);
    g_free(piece);
    h->fed += n;
    model_advance(h);
    check_state(h, ok);

    guest_turn(h);
    write_guest(h, (h->events & EV_SLOW_GUEST) ? SLOW_GUEST_WRITE : G_MAXSIZE);
    if (!(h->more & MORE_DEAF))
        read_session(h, (h->events & EV_LAZY) ? LAZY_READ : G_MAXSIZE);
    check_state(h, vmc_session_get_error(h->s) == NULL);
    check_bounds(h);
}

static void
run(const guint8 *data, gsize size)
{
    Harness h;
    gsize off = 0;

    memset(&h, 0, sizeof(h));
    h.conf = size > 0 ? data[0] : 0;
    h.split = size > 1 ? data[1] : 0;
    h.events = size > 2 ? data[2] : 0;
    h.more = size > 3 ? data[3] : 0;
    h.rng = ((guint32)h.split << 8 | h.events) * 2654435761u | 1u;
    off = MIN(size, (gsize)4);
    build_canned();
    g_random_set_seed(1); /* the session id */

    vmc_mux_config_init(&h.mcfg);
    if (h.conf & CONF_SMALL) {
        h.mcfg.agent_window = 4;
        h.mcfg.client_out_limit = 16 * 1024;
        h.mcfg.guest_out_limit = 8 * 1024;
    }
    if (h.events & EV_POLICY_OFF) {
        h.mcfg.copy_paste = FALSE;
        h.mcfg.file_xfer = FALSE;
    }
    h.mcfg.stall_timeout_us = 10 * G_USEC_PER_SEC;
    h.mux = vmc_mux_new(&h.mcfg);
    h.window = vmc_mux_get_agent_window(h.mux);
    h.now = 1000 * G_USEC_PER_SEC;
    vmc_mux_tick(h.mux, h.now);
    if (h.conf & CONF_GUEST)
        vmc_mux_guest_connected(h.mux);

    vmc_session_config_init(&h.scfg);
    h.scfg.mux = h.mux;
    h.scfg.keys = NULL;
    h.scfg.ticketing = FALSE;
    h.scfg.name = "fuzz";
    h.scfg.have_uuid = TRUE;
    memcpy(h.scfg.uuid, fuzz_uuid, sizeof(fuzz_uuid));
    h.scfg.handshake_timeout_us = 200 * G_USEC_PER_SEC;
    h.scfg.ping_interval_us = 10 * G_USEC_PER_SEC;
    h.scfg.ping_timeout_us = 10 * G_USEC_PER_SEC;
    h.scfg.admit = admit;
    h.scfg.admit_data = &h;
    h.scfg.tokens = on_tokens;
    h.scfg.tokens_data = &h;
    h.s = vmc_session_new(&h.scfg, !!(h.conf & CONF_KEEPALIVE), h.now);
    h.last_state = VMC_SESSION_LINK;

    h.stream = g_byte_array_new();
    if (!(h.conf & CONF_RAW))
        build_handshake(&h);
    g_byte_array_append(h.stream, data + off, (guint)(size - off));
    h.model_off = G_MAXSIZE;
    h.obuf = g_byte_array_new();
    h.gbuf = g_byte_array_new();

    while (h.fed < h.stream->len)
        step(&h, next_split(&h, h.stream->len - h.fed));
    if (h.stream->len == 0)
        step(&h, 0);

    /* the client goes quiet for a few time steps (PING, its timeout, stalls), then
     * everything is drained through the checkers until nothing moves */
    for (guint i = 0; i < 64; i++) {
        guint64 before = h.out_read + h.port1_bytes;
        gsize gout = vmc_mux_guest_output_size(h.mux);

        if (i < 4) {
            h.now += time_steps[h.events & 7];
            tick(&h);
        }
        write_guest(&h, G_MAXSIZE);
        read_session(&h, G_MAXSIZE);
        check_state(&h, vmc_session_get_error(h.s) == NULL);
        check_bounds(&h);
        if (i >= 4 && h.out_read + h.port1_bytes == before && gout == 0)
            break;
    }
    if (g_getenv("VMC_FUZZ_VERBOSE") != NULL)
        g_printerr("fed %" G_GSIZE_FORMAT " in %u feeds, state %d, read %" G_GUINT64_FORMAT
                   ", init %d, replies %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
                   ", units %" G_GUINT64_FORMAT ", to guest %" G_GUINT64_FORMAT
                   " chunks, agent data %" G_GUINT64_FORMAT ", tokens back %" G_GUINT64_FORMAT
                   ", grants %" G_GUINT64_FORMAT ", pings %u: %s\n",
                   h.fed, h.step, vmc_session_get_state(h.s), h.out_read, h.saw_init, h.replies,
                   h.requests, h.units, h.port1_chunks, h.agent_data, h.tokens_back,
                   h.client_grants, h.ping_id,
                   h.error_at_death ? h.error_at_death : "alive");
    if (!h.dead) {
        /* all fed and all read: every request has its reply */
        g_assert_cmpuint(h.replies, ==, h.requests);
        g_assert_cmpuint(h.obuf->len, ==, 0);
    }

    /* the client leaves: the agent may hear CLIENT_DISCONNECTED */
    vmc_session_free(h.s);
    h.s = NULL;
    write_guest(&h, G_MAXSIZE);
    g_assert_cmpuint(vmc_mux_guest_output_size(h.mux), ==, 0);

    vmc_mux_free(h.mux);
    g_byte_array_unref(h.stream);
    g_byte_array_unref(h.obuf);
    g_byte_array_unref(h.gbuf);
    g_free(h.error_at_death);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size);
    return 0;
}
