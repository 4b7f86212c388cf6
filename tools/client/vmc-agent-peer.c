/* vmc-agent-peer.c — sans-I/O guest agent end of the port (see vmc-agent-peer.h). */
#include "tools/client/vmc-agent-peer.h"

#include <string.h>

#include "tools/client/vmc-assemble.h"

struct _VmcAgentPeer {
    VmcChunkDecoder dec;
    VmcAssembler rx[2];        /* ports 1 and 2 */
    gboolean ended_in_chunk;   /* a message ended inside the current chunk */
    gboolean chunk_flagged;    /* the current chunk already produced a violation */
    gboolean record_chunks;
    GByteArray *chunk;         /* current chunk's bytes when recording */
    gsize max_chunk;
    GQueue events;
    GByteArray *out;
    gsize out_off;
    VmcAgentPeerNotifyFunc notify;
    gpointer notify_data;
    guint64 violations;
    guint64 chunks;
};

void
vmc_agent_peer_event_clear(VmcAgentPeerEvent *ev)
{
    if (ev->body)
        g_bytes_unref(ev->body);
    g_free(ev->detail);
    memset(ev, 0, sizeof(*ev));
}

VmcAgentPeer *
vmc_agent_peer_new(void)
{
    VmcAgentPeer *p = g_new0(VmcAgentPeer, 1);
    vmc_chunk_decoder_init(&p->dec);
    vmc_assembler_init(&p->rx[0], 64u * 1024u * 1024u);
    vmc_assembler_init(&p->rx[1], 64u * 1024u * 1024u);
    p->chunk = g_byte_array_new();
    p->max_chunk = VMC_CHUNK_MAX_PAYLOAD;
    g_queue_init(&p->events);
    p->out = g_byte_array_new();
    return p;
}

void
vmc_agent_peer_free(VmcAgentPeer *p)
{
    VmcAgentPeerEvent *ev;

    if (!p)
        return;
    while ((ev = g_queue_pop_head(&p->events))) {
        vmc_agent_peer_event_clear(ev);
        g_free(ev);
    }
    vmc_assembler_clear(&p->rx[0]);
    vmc_assembler_clear(&p->rx[1]);
    g_byte_array_unref(p->chunk);
    g_byte_array_unref(p->out);
    g_free(p);
}

void
vmc_agent_peer_set_max_chunk(VmcAgentPeer *p, gsize max_chunk)
{
    p->max_chunk = max_chunk;
}

void
vmc_agent_peer_set_record_chunks(VmcAgentPeer *p, gboolean record)
{
    p->record_chunks = record;
}

void
vmc_agent_peer_set_max_message(VmcAgentPeer *p, gsize max)
{
    p->rx[0].max = max;
    p->rx[1].max = max;
}

void
vmc_agent_peer_set_output_notify(VmcAgentPeer *p, VmcAgentPeerNotifyFunc func, gpointer user_data)
{
    p->notify = func;
    p->notify_data = user_data;
}

static VmcAgentPeerEvent *
push_event(VmcAgentPeer *p, VmcAgentPeerEventType type)
{
    VmcAgentPeerEvent *ev = g_new0(VmcAgentPeerEvent, 1);
    ev->type = type;
    g_queue_push_tail(&p->events, ev);
    return ev;
}

static void violation(VmcAgentPeer *p, guint32 port, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
violation(VmcAgentPeer *p, guint32 port, const char *fmt, ...)
{
    va_list ap;
    VmcAgentPeerEvent *ev = push_event(p, VMC_AGENT_PEER_EV_VIOLATION);

    ev->port = port;
    va_start(ap, fmt);
    ev->detail = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    p->violations++;
    g_debug("agent peer: %s", ev->detail);
}

void
vmc_agent_peer_reset(VmcAgentPeer *p)
{
    vmc_chunk_decoder_init(&p->dec);
    vmc_assembler_reset(&p->rx[0]);
    vmc_assembler_reset(&p->rx[1]);
    p->ended_in_chunk = FALSE;
    p->chunk_flagged = FALSE;
    g_byte_array_set_size(p->chunk, 0);
}

static void
piece(VmcAgentPeer *p, const VmcChunkPiece *pc)
{
    VmcAssembler *a = &p->rx[pc->port - 1];
    gsize off = 0;

    if (pc->chunk_start) {
        p->ended_in_chunk = FALSE;
        p->chunk_flagged = FALSE;
        g_byte_array_set_size(p->chunk, 0);
        if (pc->chunk_size > VMC_CHUNK_MAX_PAYLOAD) {
            violation(p, pc->port, "chunk of %u bytes on port %u (over %u)", pc->chunk_size,
                      pc->port, VMC_CHUNK_MAX_PAYLOAD);
        }
        if (pc->chunk_size == 0)
            violation(p, pc->port, "empty chunk on port %u", pc->port);
    }
    if (p->record_chunks && pc->len > 0)
        g_byte_array_append(p->chunk, pc->data, (guint)pc->len);
    /* a chunk is reported before the messages it completes */
    if (pc->chunk_end) {
        p->chunks++;
        if (p->record_chunks) {
            VmcAgentPeerEvent *ev = push_event(p, VMC_AGENT_PEER_EV_CHUNK);
            ev->port = pc->port;
            ev->body = g_bytes_new(p->chunk->data, p->chunk->len);
            g_byte_array_set_size(p->chunk, 0);
        }
    }

    while (off < pc->len) {
        gsize span;
        guint flags;
        if (p->ended_in_chunk && !p->chunk_flagged) {
            violation(p, pc->port, "bytes of two messages in one chunk on port %u", pc->port);
            p->chunk_flagged = TRUE;
        }
        VmcDecodeResult r = vmc_assembler_advance(a, pc->data + off, pc->len - off, &span,
                                                  &flags);
        if (r != VMC_DECODE_OK) {
            violation(p, pc->port, "agent message with protocol %u on port %u",
                      a->tracker.header.protocol, pc->port);
            vmc_assembler_reset(a);
            break;
        }
        off += span;
        if (flags & VMC_AGENT_SPAN_END) {
            VmcAgentPeerEvent *ev = push_event(p, VMC_AGENT_PEER_EV_MESSAGE);
            ev->port = pc->port;
            ev->body = vmc_assembler_take(a, &ev->header, &ev->truncated);
            p->ended_in_chunk = TRUE;
            if (pc->port == VMC_PORT_SERVER && ev->header.type == VD_AGENT_CLIENT_DISCONNECTED)
                vmc_assembler_reset(&p->rx[0]);
        }
    }
}

void
vmc_agent_peer_feed(VmcAgentPeer *p, const guint8 *buf, gsize len)
{
    gsize off = 0;

    while (off < len) {
        VmcChunkPiece pc;
        gsize used = 0;
        VmcDecodeResult r = vmc_chunk_decoder_next(&p->dec, buf + off, len - off, 0, &pc, &used);
        if (r == VMC_DECODE_NEED_MORE)
            break;
        if (r != VMC_DECODE_OK) {
            violation(p, p->dec.port, "chunk header with port %u (size %u)", p->dec.port,
                      p->dec.size);
            /* No way to find the next chunk: drop what we have, as a real agent reopens. */
            vmc_agent_peer_reset(p);
            return;
        }
        off += used;
        piece(p, &pc);
    }
}

gboolean
vmc_agent_peer_next_event(VmcAgentPeer *p, VmcAgentPeerEvent *ev)
{
    VmcAgentPeerEvent *e = g_queue_pop_head(&p->events);
    if (!e)
        return FALSE;
    *ev = *e;
    g_free(e);
    return TRUE;
}

guint
vmc_agent_peer_pending_events(VmcAgentPeer *p)
{
    return g_queue_get_length(&p->events);
}

guint64
vmc_agent_peer_violations(VmcAgentPeer *p)
{
    return p->violations;
}

guint64
vmc_agent_peer_chunks_received(VmcAgentPeer *p)
{
    return p->chunks;
}

const guint8 *
vmc_agent_peer_output(VmcAgentPeer *p, gsize *len)
{
    *len = p->out->len - p->out_off;
    return p->out->data + p->out_off;
}

void
vmc_agent_peer_output_consume(VmcAgentPeer *p, gsize n)
{
    g_return_if_fail(n <= p->out->len - p->out_off);
    p->out_off += n;
    if (p->out_off == p->out->len) {
        g_byte_array_set_size(p->out, 0);
        p->out_off = 0;
    } else if (p->out_off > 65536 && p->out->len - p->out_off <= p->out_off / 4) {
        /* compact only when little is left to move (a queue kept full by its
         * producer would otherwise be moved once per byte sent) */
        g_byte_array_remove_range(p->out, 0, (guint)p->out_off);
        p->out_off = 0;
    }
}

void
vmc_agent_peer_send_raw(VmcAgentPeer *p, const guint8 *bytes, gsize len)
{
    gboolean was_empty = p->out->len == p->out_off;

    if (len == 0)
        return;
    g_byte_array_append(p->out, bytes, (guint)len);
    if (was_empty && p->notify)
        p->notify(p->notify_data);
}

void
vmc_agent_peer_send_chunk(VmcAgentPeer *p, guint32 port, const guint8 *data, gsize len)
{
    guint8 hdr[VMC_CHUNK_HEADER_SIZE];

    g_return_if_fail(len <= G_MAXUINT32);
    vmc_chunk_header_encode(port, (guint32)len, hdr);
    vmc_agent_peer_send_raw(p, hdr, sizeof(hdr));
    vmc_agent_peer_send_raw(p, data, len);
}

void
vmc_agent_peer_send_full(VmcAgentPeer *p, guint32 port, guint32 protocol, guint32 type,
                         guint64 opaque, guint32 size, const guint8 *payload, gsize len,
                         gsize max_chunk)
{
    VmcAgentHeader h = {protocol, type, opaque, size};
    guint8 hdr[VMC_AGENT_HEADER_SIZE];
    gsize total = VMC_AGENT_HEADER_SIZE + len;

    g_return_if_fail(len <= G_MAXUINT32 - VMC_AGENT_HEADER_SIZE);
    vmc_agent_header_encode(&h, hdr);
    if (max_chunk == 0)
        max_chunk = total;
    /* chunks over header + payload, written straight into the output */
    for (gsize off = 0; off < total; off += max_chunk) {
        gsize n = MIN(max_chunk, total - off);
        guint8 ch[VMC_CHUNK_HEADER_SIZE];
        gsize from_hdr = off < VMC_AGENT_HEADER_SIZE ? MIN(n, VMC_AGENT_HEADER_SIZE - off) : 0;

        vmc_chunk_header_encode(port, (guint32)n, ch);
        vmc_agent_peer_send_raw(p, ch, sizeof(ch));
        if (from_hdr > 0)
            vmc_agent_peer_send_raw(p, hdr + off, from_hdr);
        if (n > from_hdr)
            vmc_agent_peer_send_raw(p, payload + (off + from_hdr - VMC_AGENT_HEADER_SIZE),
                                    n - from_hdr);
    }
}

void
vmc_agent_peer_send(VmcAgentPeer *p, guint32 port, guint32 type, guint64 opaque,
                    const guint8 *payload, gsize len)
{
    g_return_if_fail(len <= G_MAXUINT32 - VMC_AGENT_HEADER_SIZE);
    vmc_agent_peer_send_full(p, port, VMC_AGENT_PROTOCOL, type, opaque, (guint32)len, payload,
                             len, p->max_chunk);
}

void
vmc_agent_peer_announce_caps(VmcAgentPeer *p, gboolean request, guint32 caps0)
{
    guint8 payload[8];
    vmc_put_u32le(payload, request ? 1 : 0);
    vmc_put_u32le(payload + 4, caps0);
    vmc_agent_peer_send(p, VMC_PORT_CLIENT, VD_AGENT_ANNOUNCE_CAPABILITIES, 0, payload,
                        sizeof(payload));
}
