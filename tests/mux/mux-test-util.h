/* mux-test-util.h — small helpers shared by the mux suites: build agent messages
 * and chunks, feed the guest side, drain the guest output as bytes, pop a
 * client's messages. Header-only (static) so each suite stays one source file. */
#pragma once

#include <string.h>
#include <glib.h>
#include <spice/enums.h>
#include <spice/vd_agent.h>

#include "server/vmc-mux.h"
#include "protocol/vmc-chunk.h"

#define MT_UNUSED G_GNUC_UNUSED

/* ---- building bytes ---- */

/* Header + payload of one agent message; payload bytes are `fill`+i if payload is NULL. */
static MT_UNUSED GByteArray *
mt_msg(guint32 type, const guint8 *payload, gsize len)
{
    GByteArray *a = g_byte_array_sized_new((guint)(VMC_AGENT_HEADER_SIZE + len));
    VmcAgentHeader h = { VMC_AGENT_PROTOCOL, type, 0, (guint32)len };
    guint8 hdr[VMC_AGENT_HEADER_SIZE];

    vmc_agent_header_encode(&h, hdr);
    g_byte_array_append(a, hdr, sizeof(hdr));
    if (payload) {
        g_byte_array_append(a, payload, (guint)len);
    } else {
        g_byte_array_set_size(a, (guint)(VMC_AGENT_HEADER_SIZE + len));
        for (gsize i = 0; i < len; i++)
            a->data[VMC_AGENT_HEADER_SIZE + i] = (guint8)(type * 31 + i * 7 + (i >> 8));
    }
    return a;
}

/* A message of `len` payload bytes of pattern `seed`. */
static MT_UNUSED GByteArray *
mt_msg_pattern(guint32 type, gsize len, guint32 seed)
{
    GByteArray *a = mt_msg(type, NULL, len);

    for (gsize i = 0; i < len; i++)
        a->data[VMC_AGENT_HEADER_SIZE + i] = (guint8)(seed * 131 + i * 7 + (i >> 9));
    return a;
}

/* ANNOUNCE_CAPABILITIES with request and one caps word. */
static MT_UNUSED GByteArray *
mt_caps(guint32 request, guint32 caps0)
{
    guint8 p[8];

    vmc_put_u32le(p, request);
    vmc_put_u32le(p + 4, caps0);
    return mt_msg(VD_AGENT_ANNOUNCE_CAPABILITIES, p, sizeof(p));
}

static MT_UNUSED GByteArray *
mt_u32_msg(guint32 type, guint32 a, guint32 b, gsize n)
{
    guint8 p[8];

    vmc_put_u32le(p, a);
    vmc_put_u32le(p + 4, b);
    return mt_msg(type, p, n);
}

static MT_UNUSED void
mt_append_chunk(GByteArray *out, guint32 port, const guint8 *data, gsize len)
{
    guint8 hdr[VMC_CHUNK_HEADER_SIZE];

    vmc_chunk_header_encode(port, (guint32)len, hdr);
    g_byte_array_append(out, hdr, sizeof(hdr));
    if (len > 0)
        g_byte_array_append(out, data, (guint)len);
}

/* The chunks the mux writes for one client AGENT_DATA body. */
static MT_UNUSED GByteArray *
mt_chunk(guint32 port, const guint8 *data, gsize len)
{
    GByteArray *a = g_byte_array_new();

    mt_append_chunk(a, port, data, len);
    return a;
}

/* ---- the guest side ---- */

static MT_UNUSED gboolean
mt_feed_guest(VmcMux *mux, const guint8 *data, gsize len)
{
    GError *error = NULL;
    gboolean ok = vmc_mux_feed_guest(mux, data, len, &error);

    if (!ok) {
        g_assert_nonnull(error);
        g_test_message("guest error: %s", error->message);
        g_error_free(error);
    } else {
        g_assert_null(error);
    }
    return ok;
}

/* One chunk on `port` holding `len` bytes of `data`. */
static MT_UNUSED gboolean
mt_feed_chunk(VmcMux *mux, guint32 port, const guint8 *data, gsize len)
{
    g_autoptr(GByteArray) c = mt_chunk(port, data, len);

    return mt_feed_guest(mux, c->data, c->len);
}

/* Everything queued towards the guest, written in full. */
static MT_UNUSED GByteArray *
mt_guest_out(VmcMux *mux)
{
    GByteArray *a = g_byte_array_new();

    for (;;) {
        GOutputVector vec[8];
        guint n = vmc_mux_guest_output_vec(mux, vec, G_N_ELEMENTS(vec));
        gsize total = 0;

        if (n == 0)
            break;
        for (guint i = 0; i < n; i++) {
            g_byte_array_append(a, vec[i].buffer, (guint)vec[i].size);
            total += vec[i].size;
        }
        vmc_mux_guest_output_advance(mux, total);
    }
    g_assert_cmpuint(vmc_mux_guest_output_size(mux), ==, 0);
    return a;
}

/* Writes at most `max` bytes of the guest output; returns them. */
static MT_UNUSED GByteArray *
mt_guest_out_some(VmcMux *mux, gsize max)
{
    GByteArray *a = g_byte_array_new();

    while (a->len < max) {
        GOutputVector vec[1];
        guint n = vmc_mux_guest_output_vec(mux, vec, 1);
        gsize take;

        if (n == 0)
            break;
        take = MIN(vec[0].size, max - a->len);
        g_byte_array_append(a, vec[0].buffer, (guint)take);
        vmc_mux_guest_output_advance(mux, take);
    }
    return a;
}

static MT_UNUSED void
mt_assert_bytes(const GByteArray *got, const guint8 *want, gsize want_len)
{
    if (got->len != want_len || (want_len > 0 && memcmp(got->data, want, want_len) != 0)) {
        g_autofree gchar *g = g_strdup_printf("%u bytes", got->len);

        for (gsize i = 0; i < MIN(got->len, want_len); i++) {
            if (got->data[i] != want[i]) {
                g_test_message("first difference at %" G_GSIZE_FORMAT ": got %02x want %02x", i,
                               got->data[i], want[i]);
                break;
            }
        }
        g_test_message("got %s, want %" G_GSIZE_FORMAT, g, want_len);
        g_assert_not_reached();
    }
}

/* Parses guest output into (port, payload) chunks. */
typedef struct {
    guint32 port;
    GByteArray *data;
} MtChunk;

static MT_UNUSED void
mt_chunk_free(gpointer p)
{
    MtChunk *c = p;

    g_byte_array_unref(c->data);
    g_free(c);
}

static MT_UNUSED GPtrArray *
mt_parse_chunks(const GByteArray *out)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(mt_chunk_free);
    gsize off = 0;

    while (off < out->len) {
        MtChunk *c = g_new0(MtChunk, 1);
        guint32 size;

        g_assert_cmpuint(out->len - off, >=, 8);
        c->port = vmc_get_u32le(out->data + off);
        size = vmc_get_u32le(out->data + off + 4);
        g_assert_cmpuint(size, <=, VMC_CHUNK_MAX_PAYLOAD);
        g_assert_cmpuint(out->len - off - 8, >=, size);
        c->data = g_byte_array_new();
        g_byte_array_append(c->data, out->data + off + 8, size);
        off += 8 + size;
        g_ptr_array_add(a, c);
    }
    return a;
}

/* ---- the client side ---- */

typedef struct {
    guint16 type;
    GByteArray *body;
} MtMsg;

static MT_UNUSED void
mt_msg_free(gpointer p)
{
    MtMsg *m = p;

    g_byte_array_unref(m->body);
    g_free(m);
}

/* Pops every message queued for a client. */
static MT_UNUSED GPtrArray *
mt_pop_all(VmcMux *mux, guint32 id)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(mt_msg_free);
    VmcMuxMsg m;

    while (vmc_mux_client_peek(mux, id, &m)) {
        MtMsg *r = g_new0(MtMsg, 1);

        r->type = m.type;
        r->body = g_byte_array_new();
        g_byte_array_append(r->body, m.data, (guint)m.len);
        g_ptr_array_add(a, r);
        vmc_mux_client_pop(mux, id);
    }
    return a;
}

static MT_UNUSED MtMsg *
mt_get(GPtrArray *msgs, guint i)
{
    g_assert_cmpuint(i, <, msgs->len);
    return g_ptr_array_index(msgs, i);
}

static MT_UNUSED void
mt_assert_u32_msg(GPtrArray *msgs, guint i, guint16 type, guint32 value)
{
    MtMsg *m = mt_get(msgs, i);

    g_assert_cmpuint(m->type, ==, type);
    g_assert_cmpuint(m->body->len, ==, 4);
    g_assert_cmpuint(vmc_get_u32le(m->body->data), ==, value);
}

static MT_UNUSED void
mt_assert_data_msg(GPtrArray *msgs, guint i, const guint8 *data, gsize len)
{
    MtMsg *m = mt_get(msgs, i);

    g_assert_cmpuint(m->type, ==, SPICE_MSG_MAIN_AGENT_DATA);
    mt_assert_bytes(m->body, data, len);
}

/* Concatenated AGENT_DATA bodies; every other message type is counted in *other. */
static MT_UNUSED GByteArray *
mt_data_stream(GPtrArray *msgs, guint *other)
{
    GByteArray *a = g_byte_array_new();

    if (other)
        *other = 0;
    for (guint i = 0; i < msgs->len; i++) {
        MtMsg *m = g_ptr_array_index(msgs, i);

        if (m->type == SPICE_MSG_MAIN_AGENT_DATA)
            g_byte_array_append(a, m->body->data, m->body->len);
        else if (other)
            (*other)++;
    }
    return a;
}

/* Sum of AGENT_TOKEN values in msgs. */
static MT_UNUSED guint32
mt_tokens(GPtrArray *msgs)
{
    guint32 n = 0;

    for (guint i = 0; i < msgs->len; i++) {
        MtMsg *m = g_ptr_array_index(msgs, i);

        if (m->type == SPICE_MSG_MAIN_AGENT_TOKEN)
            n += vmc_get_u32le(m->body->data);
    }
    return n;
}

static MT_UNUSED guint
mt_count_type(GPtrArray *msgs, guint16 type)
{
    guint n = 0;

    for (guint i = 0; i < msgs->len; i++) {
        MtMsg *m = g_ptr_array_index(msgs, i);

        n += m->type == type;
    }
    return n;
}

static MT_UNUSED void
mt_data_ok(VmcMux *mux, guint32 id, const guint8 *body, gsize len)
{
    GError *error = NULL;

    if (!vmc_mux_client_agent_data(mux, id, body, len, &error))
        g_error("agent_data: %s", error->message);
}

/* Sends one whole agent message as AGENT_DATA bodies of at most 2048 bytes (the
 * way spice-gtk cuts them). */
static MT_UNUSED void
mt_send_msg(VmcMux *mux, guint32 id, const GByteArray *msg)
{
    gsize off = 0;

    while (off < msg->len) {
        gsize n = MIN((gsize)msg->len - off, (gsize)VMC_CHUNK_MAX_PAYLOAD);

        mt_data_ok(mux, id, msg->data + off, n);
        off += n;
    }
}

static MT_UNUSED GError *
mt_data_err(VmcMux *mux, guint32 id, const guint8 *body, gsize len)
{
    GError *error = NULL;

    g_assert_false(vmc_mux_client_agent_data(mux, id, body, len, &error));
    g_assert_nonnull(error);
    return error;
}

static MT_UNUSED void
mt_start(VmcMux *mux, guint32 id, guint32 tokens)
{
    g_assert_true(vmc_mux_client_agent_start(mux, id, tokens, NULL));
}

static MT_UNUSED VmcMuxStats
mt_stats(VmcMux *mux, guint32 id)
{
    VmcMuxStats s;

    g_assert_true(vmc_mux_client_get_stats(mux, id, &s));
    return s;
}

static MT_UNUSED VmcMuxStats
mt_gstats(VmcMux *mux)
{
    VmcMuxStats s;

    vmc_mux_guest_get_stats(mux, &s);
    return s;
}
