/* fuzz-agent-msg.c — agent message headers, the boundary tracker (streaming and per
 * unit), size rules, content validation and capability decoding.
 *
 * Input: byte 0 chooses how the stream is sliced (low 3 bits: largest slice, high
 * bits: seed of the slice lengths), byte 1 the VMC_AGENT_CHECK_* flags (bits 0-1);
 * the rest is a stream of VDAgentMessages. Checks:
 * - vmc_agent_tracker_advance over the slices agrees with a whole-buffer model:
 *   spans sum to the bytes consumed, each message's START / HEADER_DONE / END come
 *   once and in place, never more than the 20 header bytes held;
 * - vmc_agent_tracker_unit over the same slices: an error leaves the tracker as it
 *   was; when every unit passes, the stream is well formed and both trackers agree;
 * - every complete payload, copied to a buffer of its exact size, goes through
 *   vmc_agent_msg_validate and friends without reading outside it.
 */
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "protocol/vmc-agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    gsize start; /* stream offset of the header */
    gsize have;  /* bytes of the message present (header included) */
    guint32 size;
    gboolean complete;
} ModelMsg;

typedef struct {
    ModelMsg msgs[512];
    guint n;
    guint total; /* messages started (at least one byte present) */
    guint complete;
    guint headers;  /* messages whose header is complete */
    gboolean error; /* a header with protocol != 1 */
    gsize end;      /* bytes consumed by the tracker */
    gboolean boundary;
} Model;

static void
model_parse(Model *m, const guint8 *buf, gsize len)
{
    gsize off = 0;

    memset(m, 0, sizeof(*m));
    m->boundary = TRUE;
    while (off < len) {
        VmcAgentHeader h;
        gsize have;
        ModelMsg mm = {off, 0, 0, FALSE};

        m->total++;
        m->boundary = FALSE;
        if (len - off < VMC_AGENT_HEADER_SIZE) {
            mm.have = len - off;
            if (m->n < G_N_ELEMENTS(m->msgs))
                m->msgs[m->n++] = mm;
            off = len;
            break;
        }
        g_assert(vmc_agent_header_decode(buf + off, len - off, &h, NULL) == VMC_DECODE_OK);
        m->headers++;
        if (h.protocol != VMC_AGENT_PROTOCOL) {
            m->error = TRUE;
            m->end = off + VMC_AGENT_HEADER_SIZE;
            return;
        }
        have = MIN((gsize)h.size, len - off - VMC_AGENT_HEADER_SIZE);
        mm.have = VMC_AGENT_HEADER_SIZE + have;
        mm.size = h.size;
        mm.complete = have == h.size;
        if (m->n < G_N_ELEMENTS(m->msgs))
            m->msgs[m->n++] = mm;
        if (mm.complete) {
            m->complete++;
            m->boundary = TRUE;
        }
        off += mm.have;
    }
    m->end = len;
}

static guint32
next_rand(guint32 *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static const gsize slice_limits[8] = {1, 2, 3, 7, 19, 20, 2048, G_MAXSIZE};

/* The slice lengths for this input, the same for both trackers. */
typedef struct {
    gsize max;
    guint32 seed;
} Slicer;

static gsize
slicer_next(Slicer *s, gsize left)
{
    gsize n = s->max == G_MAXSIZE ? left : 1 + next_rand(&s->seed) % s->max;

    return MIN(n, left);
}

static void
run_advance(const Model *m, const guint8 *buf, gsize len, Slicer sl, VmcAgentTracker *t)
{
    gsize fed = 0;
    gsize consumed = 0;
    guint starts = 0, headers = 0, ends = 0;
    gboolean failed = FALSE;
    gsize pos = 0; /* bytes of the current message seen */

    vmc_agent_tracker_init(t);
    while (fed < len && !failed) {
        gsize slice = slicer_next(&sl, len - fed);
        gsize off = 0;

        while (off < slice) {
            gsize span = G_MAXSIZE;
            guint flags = 0;
            gboolean was_boundary = vmc_agent_tracker_at_boundary(t);
            guint64 before = t->messages;
            VmcDecodeResult r =
                vmc_agent_tracker_advance(t, buf + fed + off, slice - off, &span, &flags);

            g_assert(t->hdr_have <= VMC_AGENT_HEADER_SIZE);
            g_assert(span <= slice - off);
            if (r == VMC_DECODE_ERR_PROTOCOL) {
                g_assert(m->error);
                g_assert(((flags & VMC_AGENT_SPAN_START) != 0) == was_boundary);
                starts += (flags & VMC_AGENT_SPAN_START) != 0;
                headers++;
                g_assert(span > 0 && (flags & VMC_AGENT_SPAN_HEADER_DONE));
                g_assert(t->header.protocol != VMC_AGENT_PROTOCOL);
                consumed += span;
                g_assert(vmc_agent_tracker_advance(t, buf, len, &span, &flags) == r);
                g_assert(span == 0);
                failed = TRUE;
                break;
            }
            g_assert(r == VMC_DECODE_OK);
            g_assert(span >= 1);
            g_assert(((flags & VMC_AGENT_SPAN_START) != 0) == was_boundary);
            if (flags & VMC_AGENT_SPAN_START) {
                g_assert(starts == ends);
                starts++;
                pos = 0;
            }
            pos += span;
            if (starts <= m->n) {
                const ModelMsg *mm = &m->msgs[starts - 1];

                g_assert(fed + off == mm->start + pos - span);
                g_assert(pos <= mm->have);
            }
            if (flags & VMC_AGENT_SPAN_HEADER_DONE) {
                headers++;
                g_assert(pos >= VMC_AGENT_HEADER_SIZE);
                g_assert(pos - span < VMC_AGENT_HEADER_SIZE);
            }
            if (flags & VMC_AGENT_SPAN_END) {
                ends++;
                g_assert(t->messages == before + 1);
                g_assert(pos == VMC_AGENT_HEADER_SIZE + (gsize)t->header.size);
                g_assert(vmc_agent_tracker_at_boundary(t));
            } else {
                g_assert(t->messages == before);
                g_assert(!vmc_agent_tracker_at_boundary(t));
            }
            consumed += span;
            off += span;
        }
        fed += slice;
    }
    g_assert(failed == m->error);
    g_assert(consumed == m->end);
    g_assert(starts == m->total);
    g_assert(headers == m->headers);
    g_assert(ends == m->complete);
    g_assert(t->messages == m->complete);
    if (!failed)
        g_assert(vmc_agent_tracker_at_boundary(t) == m->boundary);
}

/* Returns TRUE when every unit passed. */
static gboolean
run_units(const guint8 *buf, gsize len, Slicer sl, VmcAgentTracker *t)
{
    gsize fed = 0;
    gboolean all_ok = TRUE;

    vmc_agent_tracker_init(t);
    while (fed < len) {
        gsize unit = slicer_next(&sl, len - fed);
        VmcAgentTracker before = *t;
        gboolean was_boundary = vmc_agent_tracker_at_boundary(t);
        guint flags = 0xdead;
        VmcDecodeResult r = vmc_agent_tracker_unit(t, buf + fed, unit, &flags);

        if (r != VMC_DECODE_OK) {
            g_assert(r == VMC_DECODE_ERR_TOO_LARGE || r == VMC_DECODE_ERR_BOUNDARY ||
                     r == VMC_DECODE_ERR_PROTOCOL);
            g_assert(r != VMC_DECODE_ERR_TOO_LARGE || unit > VD_AGENT_MAX_DATA_SIZE);
            g_assert(flags == 0xdead);
            g_assert(memcmp(&before, t, sizeof(before)) == 0);
            all_ok = FALSE;
        } else {
            g_assert(unit <= VD_AGENT_MAX_DATA_SIZE);
            g_assert(((flags & VMC_AGENT_SPAN_START) != 0) == was_boundary);
            g_assert(((flags & VMC_AGENT_SPAN_HEADER_DONE) != 0) == was_boundary);
            g_assert(((flags & VMC_AGENT_SPAN_END) != 0) == vmc_agent_tracker_at_boundary(t));
            g_assert(!was_boundary || unit >= VMC_AGENT_HEADER_SIZE);
            g_assert(t->hdr_have == (vmc_agent_tracker_at_boundary(t) ? 0 : VMC_AGENT_HEADER_SIZE));
        }
        fed += unit;
    }
    return all_ok;
}

static void
check_payload(guint32 type, const guint8 *payload, gsize len, guint check_flags)
{
    /* an exact-size copy, so that reading past the end is caught */
    guint8 *copy = g_memdup2(payload, len);
    VmcDecodeResult sz = len <= G_MAXUINT32
                             ? vmc_agent_msg_check_size(type, (guint32)len, check_flags)
                             : VMC_DECODE_ERR_TOO_LARGE;
    VmcDecodeResult v = vmc_agent_msg_validate(type, copy, len, check_flags);
    guint32 min = 0;
    gboolean exact = FALSE;

    if (sz != VMC_DECODE_OK)
        g_assert(v == sz);
    g_assert(v == VMC_DECODE_OK || v == VMC_DECODE_ERR_TRUNCATED || v == VMC_DECODE_ERR_SIZE ||
             v == VMC_DECODE_ERR_TYPE || v == VMC_DECODE_ERR_INVALID);
    g_assert((vmc_agent_msg_type_name(type) != NULL) ==
             vmc_agent_msg_size_rule(type, check_flags, &min, &exact));
    if (v == VMC_DECODE_OK) {
        g_assert(len >= min && (!exact || len == min));
    }
    if (type == VD_AGENT_ANNOUNCE_CAPABILITIES) {
        guint32 request;
        const guint8 *words;
        gsize nwords;

        if (vmc_agent_caps_decode(copy, len, &request, &words, &nwords) == VMC_DECODE_OK) {
            g_assert(v == VMC_DECODE_OK);
            g_assert(words == copy + 4 && 4 + nwords * 4 <= len);
            for (gsize i = 0; i < nwords * 32 && i < 64; i++) {
                if (vmc_get_u32le(words + (i / 32) * 4) & (1u << (i % 32)))
                    (void)vmc_agent_cap_name((guint)i);
            }
        } else {
            g_assert(len < 4);
        }
    }
    if (type == VD_AGENT_FILE_XFER_STATUS && len >= 8)
        (void)vmc_file_xfer_status_name(vmc_get_u32le(copy + 4));
    g_free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Model *m;
    VmcAgentTracker ta, tu;
    Slicer sl;
    const guint8 *buf;
    gsize len;
    guint check_flags;

    if (size < 2)
        return 0;
    sl.max = slice_limits[data[0] & 7];
    sl.seed = 0x9e3779b9u ^ ((guint32)data[0] << 8) ^ (guint32)size;
    check_flags = data[1] & (VMC_AGENT_CHECK_SELECTION | VMC_AGENT_CHECK_GRAB_SERIAL);
    buf = data + 2;
    len = size - 2;

    m = g_new(Model, 1);
    model_parse(m, buf, len);
    run_advance(m, buf, len, sl, &ta);
    if (run_units(buf, len, sl, &tu)) {
        /* every unit passed: the unit filter is the stricter one */
        g_assert(!m->error);
        g_assert(tu.messages == ta.messages);
        g_assert(vmc_agent_tracker_at_boundary(&tu) == vmc_agent_tracker_at_boundary(&ta));
    }

    for (guint i = 0; i < m->n; i++) {
        const ModelMsg *mm = &m->msgs[i];
        VmcAgentHeader h;

        if (mm->have < VMC_AGENT_HEADER_SIZE)
            continue;
        g_assert(vmc_agent_header_decode(buf + mm->start, mm->have, &h, NULL) == VMC_DECODE_OK);
        /* complete payloads, and the present part of a cut one */
        check_payload(h.type, buf + mm->start + VMC_AGENT_HEADER_SIZE,
                      mm->have - VMC_AGENT_HEADER_SIZE, check_flags);
    }
    g_free(m);
    return 0;
}
