/* vmc-record.c — the traffic recorder: reassembles tapped agent traffic into whole
 * messages and writes them, with lifecycle and token events, as trace lines
 * (vmc-trace.h, docs/trace-format.md).
 *
 * The recorder tracks message boundaries itself on each (direction, client, port)
 * stream, so it does not depend on how a backend cuts its pieces; a piece flagged
 * VMC_AGENT_SPAN_START while a message is still open closes that message as
 * "partial" (the sender gave up on it). Payloads beyond VMC_TRACE_MAX_PAYLOAD are
 * counted but not kept ("truncated"). Bytes that cannot be agent messages (a header
 * with protocol != 1) are written as "raw" events until the next message start.
 */
#include "server/vmc-record.h"

#include <string.h>

#include "protocol/vmc-agent.h"
#include "server/vmc-trace.h"

G_STATIC_ASSERT((int)VMC_MUX_DIR_CLIENT_AGENT == (int)VMC_TRACE_DIR_CLIENT_AGENT);
G_STATIC_ASSERT((int)VMC_MUX_DIR_AGENT_CLIENT == (int)VMC_TRACE_DIR_AGENT_CLIENT);
G_STATIC_ASSERT((int)VMC_MUX_DIR_SERVER_AGENT == (int)VMC_TRACE_DIR_SERVER_AGENT);
G_STATIC_ASSERT((int)VMC_MUX_DIR_AGENT_SERVER == (int)VMC_TRACE_DIR_AGENT_SERVER);

typedef struct {
    VmcTraceDir dir;
    guint32 client;
    guint32 port;
    guint8 hdr[VMC_AGENT_HEADER_SIZE];
    guint hdr_have;
    gboolean in_payload;
    VmcAgentHeader header;
    guint32 left;        /* payload bytes of the open message still to come */
    GByteArray *payload; /* kept payload bytes (at most VMC_TRACE_MAX_PAYLOAD) */
    gboolean truncated;
    gboolean raw;        /* after a bad header, until the next message start */
} Stream;

struct _VmcRecorder {
    VmcTraceWriter *writer;
    GPtrArray *streams; /* Stream* */
    gboolean reported;  /* a write error was logged */
};

static void
stream_free(gpointer p)
{
    Stream *s = p;
    g_byte_array_unref(s->payload);
    g_free(s);
}

VmcRecorder *
vmc_recorder_new(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, NULL);
    const char *source = g_get_prgname();
    VmcTraceWriter *w = vmc_trace_writer_new(path, source ? source : "vmcmux", error);
    if (!w)
        return NULL;
    VmcRecorder *rec = g_new0(VmcRecorder, 1);
    rec->writer = w;
    rec->streams = g_ptr_array_new_with_free_func(stream_free);
    return rec;
}

static void
write_event(VmcRecorder *rec, const VmcTraceEvent *ev)
{
    g_autoptr(GError) error = NULL;

    if (!vmc_trace_writer_write(rec->writer, ev, &error) && !rec->reported) {
        rec->reported = TRUE;
        g_debug("recorder: %s; recording stops", error->message);
    }
}

static void
emit_raw(VmcRecorder *rec, const Stream *s, const guint8 *data, gsize len, const char *why)
{
    VmcTraceEvent ev;

    vmc_trace_event_set_simple(&ev, vmc_trace_writer_now(rec->writer), VMC_TRACE_EV_RAW, TRUE,
                               s->client, why);
    ev.dir = s->dir;
    ev.port = s->port;
    ev.present |= VMC_TRACE_HAS_DIR | VMC_TRACE_HAS_PORT | VMC_TRACE_HAS_DATA;
    ev.data = g_bytes_new(data, len);
    write_event(rec, &ev);
    vmc_trace_event_clear(&ev);
}

static void
stream_reset(Stream *s)
{
    s->hdr_have = 0;
    s->in_payload = FALSE;
    s->left = 0;
    s->truncated = FALSE;
    g_byte_array_set_size(s->payload, 0);
}

static void
emit_message(VmcRecorder *rec, Stream *s, gboolean partial)
{
    VmcTraceEvent ev;

    vmc_trace_event_set_msg(&ev, vmc_trace_writer_now(rec->writer), s->dir, s->client, s->port,
                            s->header.protocol, s->header.type, s->header.opaque,
                            s->header.size, s->payload->data, s->payload->len);
    if (s->truncated) {
        ev.truncated = TRUE;
        ev.present |= VMC_TRACE_HAS_TRUNCATED;
    }
    if (partial) {
        ev.partial = TRUE;
        ev.present |= VMC_TRACE_HAS_PARTIAL;
    }
    write_event(rec, &ev);
    vmc_trace_event_clear(&ev);
    stream_reset(s);
}

/* Closes whatever is open on `s` (the stream ended or restarted). */
static void
stream_flush(VmcRecorder *rec, Stream *s)
{
    if (s->in_payload)
        emit_message(rec, s, TRUE);
    else if (s->hdr_have > 0)
        emit_raw(rec, s, s->hdr, s->hdr_have, "incomplete message header");
    stream_reset(s);
}

static Stream *
stream_get(VmcRecorder *rec, VmcTraceDir dir, guint32 client, guint32 port)
{
    for (guint i = 0; i < rec->streams->len; i++) {
        Stream *s = g_ptr_array_index(rec->streams, i);
        if (s->dir == dir && s->client == client && s->port == port)
            return s;
    }
    Stream *s = g_new0(Stream, 1);
    s->dir = dir;
    s->client = client;
    s->port = port;
    s->payload = g_byte_array_new();
    g_ptr_array_add(rec->streams, s);
    return s;
}

void
vmc_recorder_tap(gpointer recorder, VmcMuxDirection dir, guint32 client_id, guint32 port,
                 const guint8 *data, gsize len, guint span_flags)
{
    VmcRecorder *rec = recorder;

    if (!rec || (guint)dir > VMC_MUX_DIR_AGENT_SERVER)
        return;
    g_return_if_fail(data != NULL || len == 0);

    Stream *s = stream_get(rec, (VmcTraceDir)dir, client_id, port);
    if (span_flags & VMC_AGENT_SPAN_START) {
        if (s->in_payload || s->hdr_have > 0)
            stream_flush(rec, s);
        s->raw = FALSE;
    }
    if (s->raw) {
        if (len > 0)
            emit_raw(rec, s, data, len, NULL);
        return;
    }

    gsize off = 0;
    while (off < len) {
        if (!s->in_payload) {
            gsize take = MIN((gsize)(VMC_AGENT_HEADER_SIZE - s->hdr_have), len - off);
            memcpy(s->hdr + s->hdr_have, data + off, take);
            s->hdr_have += (guint)take;
            off += take;
            if (s->hdr_have < VMC_AGENT_HEADER_SIZE)
                break;
            gsize used;
            vmc_agent_header_decode(s->hdr, VMC_AGENT_HEADER_SIZE, &s->header, &used);
            if (s->header.protocol != VMC_AGENT_PROTOCOL) {
                /* Not an agent message stream: keep the bytes as they are. */
                g_autoptr(GByteArray) bad = g_byte_array_new();
                g_byte_array_append(bad, s->hdr, VMC_AGENT_HEADER_SIZE);
                g_byte_array_append(bad, data + off, (guint)(len - off));
                emit_raw(rec, s, bad->data, bad->len, "agent message protocol is not 1");
                stream_reset(s);
                s->raw = TRUE;
                return;
            }
            s->hdr_have = 0;
            s->in_payload = TRUE;
            s->left = s->header.size;
            s->truncated = FALSE;
            g_byte_array_set_size(s->payload, 0);
            if (s->left == 0)
                emit_message(rec, s, FALSE);
            continue;
        }
        gsize take = MIN((gsize)s->left, len - off);
        gsize room = VMC_TRACE_MAX_PAYLOAD - s->payload->len;
        gsize keep = MIN(take, room);
        if (keep > 0)
            g_byte_array_append(s->payload, data + off, (guint)keep);
        if (keep < take)
            s->truncated = TRUE;
        s->left -= (guint32)take;
        off += take;
        if (s->left == 0)
            emit_message(rec, s, FALSE);
    }
}

static void
flush_matching(VmcRecorder *rec, gboolean all, guint32 client_id)
{
    for (guint i = 0; i < rec->streams->len; i++) {
        Stream *s = g_ptr_array_index(rec->streams, i);
        if (all || s->client == client_id) {
            stream_flush(rec, s);
            s->raw = FALSE;
        }
    }
}

void
vmc_recorder_event(VmcRecorder *rec, VmcRecordEvent event, guint32 client_id, const char *detail)
{
    VmcTraceEvent ev;

    if (!rec)
        return;
    guint64 now = vmc_trace_writer_now(rec->writer);
    switch (event) {
    case VMC_RECORD_AGENT_CONNECTED:
        vmc_trace_event_set_simple(&ev, now, VMC_TRACE_EV_AGENT_CONNECT, FALSE, 0, detail);
        break;
    case VMC_RECORD_AGENT_DISCONNECTED:
        flush_matching(rec, TRUE, 0);
        vmc_trace_event_set_simple(&ev, vmc_trace_writer_now(rec->writer),
                                   VMC_TRACE_EV_AGENT_DISCONNECT, FALSE, 0, detail);
        break;
    case VMC_RECORD_CLIENT_CONNECTED:
        vmc_trace_event_set_simple(&ev, now, VMC_TRACE_EV_CLIENT_CONNECT, TRUE, client_id,
                                   detail);
        break;
    case VMC_RECORD_CLIENT_DISCONNECTED:
        if (client_id != 0)
            flush_matching(rec, FALSE, client_id);
        vmc_trace_event_set_simple(&ev, vmc_trace_writer_now(rec->writer),
                                   VMC_TRACE_EV_CLIENT_DISCONNECT, TRUE, client_id, detail);
        break;
    default:
        return;
    }
    write_event(rec, &ev);
    vmc_trace_event_clear(&ev);
}

void
vmc_recorder_tokens(VmcRecorder *rec, VmcMuxDirection dir, guint32 client_id, const char *what,
                    guint32 tokens)
{
    VmcTraceEvent ev;

    if (!rec)
        return;
    vmc_trace_event_set_simple(&ev, vmc_trace_writer_now(rec->writer), VMC_TRACE_EV_TOKENS, TRUE,
                               client_id, NULL);
    ev.dir = (VmcTraceDir)dir;
    ev.what = g_strdup(what ? what : "");
    ev.tokens = tokens;
    ev.present |= VMC_TRACE_HAS_DIR | VMC_TRACE_HAS_WHAT | VMC_TRACE_HAS_TOKENS;
    write_event(rec, &ev);
    vmc_trace_event_clear(&ev);
}

void
vmc_recorder_free(VmcRecorder *rec)
{
    if (!rec)
        return;
    flush_matching(rec, TRUE, 0);
    g_ptr_array_unref(rec->streams);
    vmc_trace_writer_free(rec->writer);
    g_free(rec);
}
