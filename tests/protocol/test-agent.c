/* test-agent.c — VDAgentMessage headers, the boundary tracker (streaming and per
 * unit), per-type size rules, content validation, capabilities and names.
 *
 * Stream vectors are fed whole, split at every offset, byte by byte and in random
 * slices (g_test_rand, reproducible with --seed), each slice copied against a guard
 * page. Payload checks run on guarded copies too, so any over-read faults.
 */
#include <string.h>

#include "protocol/vmc-agent.h"
#include "protocol/vmc-chunk.h"
#include "vmc-test-util.h"

#define MAX_EXP 4

#define S VMC_AGENT_SPAN_START
#define H VMC_AGENT_SPAN_HEADER_DONE
#define E VMC_AGENT_SPAN_END

/* spice-vdagentd 0.22.1's ANNOUNCE_CAPABILITIES (request=1), without the chunk header */
#define VDAGENTD_CAPS "01000000 06000000 0000000000000000 08000000 | 01000000 e78d0300"
/* the reference's CLIENT_DISCONNECTED message */
#define CLIENT_DISC "01000000 0d000000 00000000 00000000 00000000"

static guint8
fill_byte(gsize i)
{
    return (guint8)(i * 13 + 5);
}

static void
append_fill(GByteArray *a, gsize n)
{
    for (gsize i = 0; i < n; i++) {
        guint8 b = fill_byte(i);

        g_byte_array_append(a, &b, 1);
    }
}

static GByteArray *
hex_fill(const char *hex, gsize fill)
{
    GByteArray *a = vmc_test_hex(hex ? hex : "");

    append_fill(a, fill);
    return a;
}

static void
append_header(GByteArray *a, guint32 protocol, guint32 type, guint64 opaque, guint32 size)
{
    VmcAgentHeader h = {protocol, type, opaque, size};
    guint8 b[VMC_AGENT_HEADER_SIZE];

    vmc_agent_header_encode(&h, b);
    g_byte_array_append(a, b, sizeof(b));
}

/* ------------------------------------------------------------------------- */
/* header codec */

static void
test_header_decode(void)
{
    GByteArray *b = vmc_test_hex("01000000 06000000 8877665544332211 08000000 ffff");
    VmcAgentHeader h;
    gsize consumed = 0;

    for (gsize p = 0; p < VMC_AGENT_HEADER_SIZE; p++) {
        guint8 *g = vmc_test_guarded_dup(b->data, p);

        memset(&h, 0x5a, sizeof(h));
        consumed = 77;
        g_assert_cmpint(vmc_agent_header_decode(g, p, &h, &consumed), ==, VMC_DECODE_NEED_MORE);
        g_assert_cmpuint(consumed, ==, 77); /* outputs untouched */
        g_assert_cmpuint(h.protocol, ==, 0x5a5a5a5a);
        vmc_test_guarded_free(g, p);
    }
    for (gsize p = VMC_AGENT_HEADER_SIZE; p <= b->len; p++) {
        guint8 *g = vmc_test_guarded_dup(b->data, p);

        g_assert_cmpint(vmc_agent_header_decode(g, p, &h, &consumed), ==, VMC_DECODE_OK);
        g_assert_cmpuint(consumed, ==, 20);
        g_assert_cmpuint(h.protocol, ==, 1);
        g_assert_cmpuint(h.type, ==, 6);
        g_assert_cmpuint(h.opaque, ==, G_GUINT64_CONSTANT(0x1122334455667788));
        g_assert_cmpuint(h.size, ==, 8);
        vmc_test_guarded_free(g, p);
    }
    g_byte_array_unref(b);

    /* the decoder does not judge the fields */
    b = vmc_test_hex("ffffffff ffffffff ffffffffffffffff ffffffff");
    g_assert_cmpint(vmc_agent_header_decode(b->data, b->len, &h, NULL), ==, VMC_DECODE_OK);
    g_assert_cmpuint(h.protocol, ==, G_MAXUINT32);
    g_assert_cmpuint(h.size, ==, G_MAXUINT32);
    g_assert_cmpuint(h.opaque, ==, G_MAXUINT64);
    g_byte_array_unref(b);
}

static void
test_header_encode(void)
{
    static const struct {
        VmcAgentHeader h;
        const char *hex;
    } cases[] = {
        {{1, 6, 0, 8}, "01000000 06000000 0000000000000000 08000000"},
        {{1, 13, 0, 0}, CLIENT_DISC},
        {{1, 16, 0, 4}, "01000000 10000000 0000000000000000 04000000"},
        {{0, 0, G_MAXUINT64, G_MAXUINT32}, "00000000 00000000 ffffffffffffffff ffffffff"},
        {{0x04030201, 0x08070605, G_GUINT64_CONSTANT(0x100f0e0d0c0b0a09), 0x14131211},
         "01020304 05060708 090a0b0c0d0e0f10 11121314"},
    };

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        GByteArray *want = vmc_test_hex(cases[i].hex);
        guint8 out[VMC_AGENT_HEADER_SIZE];
        VmcAgentHeader back;

        vmc_agent_header_encode(&cases[i].h, out);
        g_assert_cmpmem(out, sizeof(out), want->data, want->len);
        g_assert_cmpint(vmc_agent_header_decode(out, sizeof(out), &back, NULL), ==, VMC_DECODE_OK);
        g_assert_cmpuint(back.protocol, ==, cases[i].h.protocol);
        g_assert_cmpuint(back.type, ==, cases[i].h.type);
        g_assert_cmpuint(back.opaque, ==, cases[i].h.opaque);
        g_assert_cmpuint(back.size, ==, cases[i].h.size);
        g_byte_array_unref(want);
    }
    for (guint i = 0; i < 1000; i++) {
        VmcAgentHeader h, back;
        guint8 out[VMC_AGENT_HEADER_SIZE];

        h.protocol = g_test_rand_int();
        h.type = g_test_rand_int();
        h.opaque = (guint64)g_test_rand_int() << 32 | (guint32)g_test_rand_int();
        h.size = g_test_rand_int();
        vmc_agent_header_encode(&h, out);
        g_assert_cmpint(vmc_agent_header_decode(out, sizeof(out), &back, NULL), ==, VMC_DECODE_OK);
        g_assert_true(back.protocol == h.protocol && back.type == h.type &&
                      back.opaque == h.opaque && back.size == h.size);
    }
}

/* ------------------------------------------------------------------------- */
/* streaming tracker: table vectors */

typedef struct {
    guint32 type;
    guint32 size; /* announced */
    gsize seen;   /* payload bytes present in the stream */
    gboolean complete;
} ExpMsg;

typedef struct {
    const char *name;
    const char *why;
    const char *hex;
    gsize fill;
    const char *tail;
    ExpMsg msgs[MAX_EXP];
    VmcDecodeResult end; /* OK or ERR_PROTOCOL */
    gsize err_offset;    /* stream offset just past the bad header */
    gboolean boundary;
} AgentVector;

/* clang-format off */
static const AgentVector agent_vectors[] = {
    { "empty-stream", "nothing fed: still between messages",
      "", 0, NULL, { { 0 } }, VMC_DECODE_OK, 0, TRUE },
    { "vdagentd-caps", "spice-vdagentd's capabilities (peers.md 4.2)",
      VDAGENTD_CAPS, 0, NULL, { { 6, 8, 8, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "client-disconnected", "size 0: the header is the whole message",
      CLIENT_DISC, 0, NULL, { { 13, 0, 0, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "back-to-back", "three messages without gaps, one of them empty",
      VDAGENTD_CAPS CLIENT_DISC
      "01000000 03000000 0000000000000000 08000000 02000000 01000000", 0, NULL,
      { { 6, 8, 8, TRUE }, { 13, 0, 0, TRUE }, { 3, 8, 8, TRUE } },
      VMC_DECODE_OK, 0, TRUE },
    { "clipboard-3000", "a message longer than one 2048 piece",
      "01000000 04000000 0000000000000000 b80b0000", 3000, NULL,
      { { 4, 3000, 3000, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "then-mouse", "a long message then a MOUSE_STATE",
      "01000000 04000000 0000000000000000 01090000", 2305,
      "01000000 01000000 0000000000000000 0d000000 0a000000 14000000 02000000 00",
      { { 4, 2305, 2305, TRUE }, { 1, 13, 13, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "unknown-type", "the tracker does not care about types",
      "01000000 63000000 0102030405060708 02000000 abcd", 0, NULL,
      { { 99, 2, 2, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "size-max-open", "size 0xFFFFFFFF: payload is followed, never buffered",
      "01000000 04000000 0000000000000000 ffffffff 0102030405060708090a", 0, NULL,
      { { 4, 0xffffffff, 10, FALSE } }, VMC_DECODE_OK, 0, FALSE },
    { "size-2g-open", "a size over 2^31 is not negative here",
      "01000000 0c000000 0000000000000000 00000080", 40, NULL,
      { { 12, 0x80000000u, 40, FALSE } }, VMC_DECODE_OK, 0, FALSE },
    { "partial-header", "a cut header: inside a message",
      "01000000 06000000 00", 0, NULL, { { 0 } }, VMC_DECODE_OK, 0, FALSE },
    { "protocol-0", "protocol must be 1",
      "00000000 06000000 0000000000000000 08000000 01000000 e78d0300", 0, NULL,
      { { 0 } }, VMC_DECODE_ERR_PROTOCOL, 20, FALSE },
    { "protocol-2", "not even a later version is accepted (the reference refuses it too)",
      "02000000 0d000000 0000000000000000 00000000", 0, NULL,
      { { 0 } }, VMC_DECODE_ERR_PROTOCOL, 20, FALSE },
    { "protocol-be", "0x01000000 is not protocol 1",
      "00000001 0d000000 0000000000000000 00000000", 0, NULL,
      { { 0 } }, VMC_DECODE_ERR_PROTOCOL, 20, FALSE },
    { "protocol-bad-second", "a good message then a bad header",
      VDAGENTD_CAPS "ffffffff 01000000 0000000000000000 00000000 99", 0, NULL,
      { { 6, 8, 8, TRUE } }, VMC_DECODE_ERR_PROTOCOL, 48, FALSE },
};
/* clang-format on */

static GByteArray *
agent_vector_stream(const AgentVector *v)
{
    GByteArray *a = hex_fill(v->hex, v->fill);

    if (v->tail) {
        GByteArray *t = vmc_test_hex(v->tail);

        g_byte_array_append(a, t->data, t->len);
        g_byte_array_unref(t);
    }
    return a;
}

static guint
agent_vector_n(const AgentVector *v)
{
    guint n = 0;

    while (n < MAX_EXP && v->msgs[n].type != 0)
        n++;
    return n;
}

typedef struct {
    GByteArray *bytes; /* header + payload as seen */
    VmcAgentHeader header;
    gboolean header_done;
    gboolean ended;
} MsgRec;

typedef struct {
    GArray *msgs;
    VmcDecodeResult end;
    gsize consumed;
    VmcAgentTracker t;
} TRun;

static void
msg_rec_clear(gpointer p)
{
    MsgRec *m = p;

    g_byte_array_unref(m->bytes);
}

static void
trun_init(TRun *run)
{
    run->msgs = g_array_new(FALSE, TRUE, sizeof(MsgRec));
    g_array_set_clear_func(run->msgs, msg_rec_clear);
    run->end = VMC_DECODE_OK;
    run->consumed = 0;
    vmc_agent_tracker_init(&run->t);
}

static void
trun_clear(TRun *run)
{
    g_array_unref(run->msgs);
}

static MsgRec *
last_msg(TRun *run)
{
    return run->msgs->len ? &g_array_index(run->msgs, MsgRec, run->msgs->len - 1) : NULL;
}

static void
record_span(TRun *run, const guint8 *p, gsize span, guint flags, gboolean was_boundary)
{
    MsgRec *m = last_msg(run);

    g_assert_cmpint((flags & S) != 0, ==, was_boundary);
    if (flags & S) {
        MsgRec rec = {g_byte_array_new(), {0}, FALSE, FALSE};

        g_assert_true(m == NULL || m->ended);
        g_array_append_val(run->msgs, rec);
        m = last_msg(run);
    } else {
        g_assert_nonnull(m);
        g_assert_false(m->ended);
    }
    g_byte_array_append(m->bytes, p, (guint)span);
    if (flags & H) {
        g_assert_false(m->header_done);
        g_assert_cmpuint(m->bytes->len, >=, VMC_AGENT_HEADER_SIZE);
        g_assert_cmpint(vmc_agent_header_decode(m->bytes->data, m->bytes->len, &m->header, NULL),
                        ==, VMC_DECODE_OK);
        g_assert_cmpuint(run->t.header.type, ==, m->header.type);
        g_assert_cmpuint(run->t.header.size, ==, m->header.size);
        g_assert_cmpuint(run->t.header.opaque, ==, m->header.opaque);
        m->header_done = TRUE;
    } else if (!m->header_done) {
        g_assert_cmpuint(m->bytes->len, <, VMC_AGENT_HEADER_SIZE);
    }
    if (flags & E) {
        g_assert_true(m->header_done);
        g_assert_cmpuint(m->bytes->len, ==, VMC_AGENT_HEADER_SIZE + (gsize)m->header.size);
        m->ended = TRUE;
    }
    if (m->header_done)
        g_assert_cmpuint(m->bytes->len, <=, VMC_AGENT_HEADER_SIZE + (gsize)m->header.size);
}

static gboolean
trun_slice(TRun *run, const guint8 *buf, gsize len)
{
    gsize off = 0;

    while (off < len) {
        gsize span = G_MAXSIZE;
        guint flags = 0xff;
        gboolean was_boundary = vmc_agent_tracker_at_boundary(&run->t);
        guint64 before = run->t.messages;
        VmcDecodeResult r = vmc_agent_tracker_advance(&run->t, buf + off, len - off, &span, &flags);

        g_assert_cmpuint(run->t.hdr_have, <=, VMC_AGENT_HEADER_SIZE);
        g_assert_cmpuint(span, <=, len - off);
        if (r == VMC_DECODE_ERR_PROTOCOL) {
            gsize again = 1;
            guint f2;

            g_assert_cmpuint(span, >, 0);
            g_assert_true(flags & H);
            g_assert_cmpuint(run->t.header.protocol, !=, VMC_AGENT_PROTOCOL);
            run->consumed += span;
            run->end = r;
            g_assert_cmpint(
                vmc_agent_tracker_advance(&run->t, buf + off + span, len - off - span, &again, &f2),
                ==, r);
            g_assert_cmpuint(again, ==, 0);
            g_assert_false(vmc_agent_tracker_at_boundary(&run->t));
            return FALSE;
        }
        g_assert_cmpint(r, ==, VMC_DECODE_OK);
        g_assert_cmpuint(span, >=, 1);
        record_span(run, buf + off, span, flags, was_boundary);
        g_assert_cmpuint(run->t.messages, ==, before + ((flags & E) ? 1 : 0));
        g_assert_cmpint(vmc_agent_tracker_at_boundary(&run->t), ==, (flags & E) != 0);
        run->consumed += span;
        off += span;
    }
    return TRUE;
}

static void
trun_cuts(TRun *run, const GByteArray *stream, const gsize *cuts, gsize n_cuts)
{
    gsize start = 0;

    trun_init(run);
    for (gsize i = 0; i <= n_cuts; i++) {
        gsize end = i < n_cuts ? cuts[i] : stream->len;
        guint8 *g = vmc_test_guarded_dup(stream->data + start, end - start);
        gboolean go_on = trun_slice(run, g, end - start);

        vmc_test_guarded_free(g, end - start);
        if (!go_on)
            break;
        start = end;
    }
}

static void
check_trun(const AgentVector *v, TRun *run, const GByteArray *stream)
{
    guint n = agent_vector_n(v);
    gsize off = 0;
    guint complete = 0;

    g_assert_cmpint(run->end, ==, v->end);
    if (v->end == VMC_DECODE_OK) {
        g_assert_cmpuint(run->consumed, ==, stream->len);
        g_assert_cmpint(vmc_agent_tracker_at_boundary(&run->t), ==, v->boundary);
    } else {
        g_assert_cmpuint(run->consumed, ==, v->err_offset);
    }
    /* a partial header (or a bad one) shows up as one more, unfinished record */
    g_assert_cmpuint(run->msgs->len, >=, n);
    g_assert_cmpuint(run->msgs->len, <=, n + 1);
    for (guint i = 0; i < run->msgs->len; i++) {
        MsgRec *m = &g_array_index(run->msgs, MsgRec, i);

        if (i >= n) {
            g_assert_false(m->ended);
            g_assert_true(!m->header_done || v->end != VMC_DECODE_OK);
            g_assert_cmpmem(m->bytes->data, m->bytes->len, stream->data + off, m->bytes->len);
            continue;
        }
        g_assert_true(m->header_done);
        g_assert_cmpuint(m->header.protocol, ==, 1);
        g_assert_cmpuint(m->header.type, ==, v->msgs[i].type);
        g_assert_cmpuint(m->header.size, ==, v->msgs[i].size);
        g_assert_cmpint(m->ended, ==, v->msgs[i].complete);
        g_assert_cmpuint(m->bytes->len, ==, VMC_AGENT_HEADER_SIZE + v->msgs[i].seen);
        g_assert_cmpmem(m->bytes->data, m->bytes->len, stream->data + off, m->bytes->len);
        off += m->bytes->len;
        complete += m->ended;
    }
    g_assert_cmpuint(run->t.messages, ==, complete);
}

static void
test_tracker_vector(gconstpointer data)
{
    const AgentVector *v = data;
    GByteArray *stream = agent_vector_stream(v);
    gsize len = stream->len;
    gsize *cuts = g_new0(gsize, len + 1);
    TRun run;

    trun_cuts(&run, stream, NULL, 0);
    check_trun(v, &run, stream);
    trun_clear(&run);

    for (gsize k = 1; k < len; k++) {
        trun_cuts(&run, stream, &k, 1);
        check_trun(v, &run, stream);
        trun_clear(&run);
    }

    for (gsize k = 1; k < len; k++)
        cuts[k - 1] = k;
    trun_cuts(&run, stream, cuts, len ? len - 1 : 0);
    check_trun(v, &run, stream);
    trun_clear(&run);

    for (guint iter = 0; iter < 50 && len > 1; iter++) {
        gsize n_cuts = 0;

        for (gsize k = 1; k < len; k++) {
            if (g_test_rand_int_range(0, 6) == 0)
                cuts[n_cuts++] = k;
        }
        trun_cuts(&run, stream, cuts, n_cuts);
        check_trun(v, &run, stream);
        trun_clear(&run);
    }
    g_free(cuts);
    g_byte_array_unref(stream);
}

/* Every strict prefix of a valid stream leaves the tracker inside a message unless
 * the prefix ends exactly where a message ends; only those messages count. */
static void
test_tracker_prefixes(gconstpointer data)
{
    const AgentVector *v = data;
    GByteArray *stream = agent_vector_stream(v);
    guint n = agent_vector_n(v);
    gsize ends[MAX_EXP];
    gsize off = 0;

    for (guint i = 0; i < n; i++) {
        off += VMC_AGENT_HEADER_SIZE + (gsize)v->msgs[i].size;
        ends[i] = off;
    }
    for (gsize p = 0; p < stream->len; p++) {
        guint8 *g = vmc_test_guarded_dup(stream->data, p);
        guint complete = 0;
        gboolean at_end = p == 0;
        gsize span = 5;
        guint flags = 5;
        TRun run;

        trun_init(&run);
        g_assert_true(trun_slice(&run, g, p));
        g_assert_cmpint(vmc_agent_tracker_advance(&run.t, g + p, 0, &span, &flags), ==,
                        VMC_DECODE_NEED_MORE);
        g_assert_cmpuint(span, ==, 0);
        g_assert_cmpuint(flags, ==, 0);
        for (guint i = 0; i < n; i++) {
            complete += ends[i] <= p;
            at_end |= ends[i] == p;
        }
        g_assert_cmpuint(run.t.messages, ==, complete);
        g_assert_cmpint(vmc_agent_tracker_at_boundary(&run.t), ==, at_end);
        trun_clear(&run);
        vmc_test_guarded_free(g, p);
    }
    g_byte_array_unref(stream);
}

/* Random message streams (random types, sizes, opaques) in random slices. */
static void
test_tracker_random(void)
{
    for (guint iter = 0; iter < 100; iter++) {
        GByteArray *stream = g_byte_array_new();
        guint n = (guint)g_test_rand_int_range(1, 6);
        guint32 sizes[6];
        gsize *cuts;
        gsize n_cuts = 0;
        TRun run;

        for (guint i = 0; i < n; i++) {
            sizes[i] =
                g_test_rand_int_range(0, 3) == 0 ? 0 : (guint32)g_test_rand_int_range(1, 6000);
            append_header(stream, 1, (guint32)g_test_rand_int_range(1, 20),
                          (guint64)g_test_rand_int(), sizes[i]);
            append_fill(stream, sizes[i]);
        }
        cuts = g_new(gsize, stream->len + 1);
        for (gsize k = 1; k < stream->len; k++) {
            if (g_test_rand_int_range(0, 100) == 0)
                cuts[n_cuts++] = k;
        }
        trun_cuts(&run, stream, cuts, n_cuts);
        g_assert_cmpint(run.end, ==, VMC_DECODE_OK);
        g_assert_cmpuint(run.consumed, ==, stream->len);
        g_assert_true(vmc_agent_tracker_at_boundary(&run.t));
        g_assert_cmpuint(run.t.messages, ==, n);
        g_assert_cmpuint(run.msgs->len, ==, n);
        for (guint i = 0; i < n; i++)
            g_assert_cmpuint(g_array_index(run.msgs, MsgRec, i).header.size, ==, sizes[i]);
        trun_clear(&run);
        g_free(cuts);
        g_byte_array_unref(stream);
    }
}

/* The tracker keeps 20 header bytes at most, however big the announced message. */
static void
test_tracker_huge(void)
{
    const gsize slice = 1024 * 1024;
    guint8 *buf = g_malloc0(slice);
    GByteArray *hdr = g_byte_array_new();
    VmcAgentTracker t;
    gsize span;
    guint flags;

    append_header(hdr, 1, VD_AGENT_FILE_XFER_DATA, 7, G_MAXUINT32);
    vmc_agent_tracker_init(&t);
    g_assert_cmpint(vmc_agent_tracker_advance(&t, hdr->data, hdr->len, &span, &flags), ==,
                    VMC_DECODE_OK);
    g_assert_cmpuint(span, ==, 20);
    g_assert_cmpuint(flags, ==, S | H);
    for (guint i = 0; i < 8; i++) {
        g_assert_cmpint(vmc_agent_tracker_advance(&t, buf, slice, &span, &flags), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(span, ==, slice);
        g_assert_cmpuint(flags, ==, 0);
    }
    g_assert_cmpuint(t.payload_left, ==, G_MAXUINT32 - 8 * slice);
    g_assert_cmpuint(t.messages, ==, 0);
    g_assert_false(vmc_agent_tracker_at_boundary(&t));
    g_byte_array_unref(hdr);
    g_free(buf);
}

/* ------------------------------------------------------------------------- */
/* per-unit filter */

typedef struct {
    const char *hex; /* NULL ends the list */
    gsize fill;
    VmcDecodeResult r;
    guint flags; /* on OK */
} UnitStep;

typedef struct {
    const char *name;
    const char *why;
    UnitStep steps[6];
    guint64 messages; /* whole messages at the end */
    gboolean boundary;
} UnitCase;

/* clang-format off */
static const UnitCase unit_cases[] = {
    { "whole", "a message in one unit",
      { { VDAGENTD_CAPS, 0, VMC_DECODE_OK, S | H | E }, { NULL } }, 1, TRUE },
    { "size-0", "a 20-byte unit with size 0 is a whole message",
      { { CLIENT_DISC, 0, VMC_DECODE_OK, S | H | E }, { NULL } }, 1, TRUE },
    { "header-then-payload", "header alone, then its payload",
      { { "01000000 06000000 0000000000000000 08000000", 0, VMC_DECODE_OK, S | H },
        { "01000000 e78d0300", 0, VMC_DECODE_OK, E }, { NULL } }, 1, TRUE },
    { "three-units", "header + part, middle, end",
      { { "01000000 04000000 0000000000000000 08000000 01000000", 0, VMC_DECODE_OK, S | H },
        { "4142", 0, VMC_DECODE_OK, 0 }, { "4300", 0, VMC_DECODE_OK, E },
        { CLIENT_DISC, 0, VMC_DECODE_OK, S | H | E }, { NULL } }, 2, TRUE },
    { "size-0-junk", "STRICTER than the reference: size 0 plus 8 junk bytes is a boundary error",
      { { CLIENT_DISC "deadbeef deadbeef", 0, VMC_DECODE_ERR_BOUNDARY, 0 },
        { CLIENT_DISC, 0, VMC_DECODE_OK, S | H | E }, { NULL } }, 1, TRUE },
    { "size-0-one-junk", "even one byte after a size-0 header",
      { { CLIENT_DISC "00", 0, VMC_DECODE_ERR_BOUNDARY, 0 }, { NULL } }, 0, TRUE },
    { "two-in-one", "bytes of two messages in one unit",
      { { VDAGENTD_CAPS CLIENT_DISC, 0, VMC_DECODE_ERR_BOUNDARY, 0 }, { NULL } }, 0, TRUE },
    { "past-end-first", "the first unit runs past the message end",
      { { "01000000 03000000 0000000000000000 08000000 02000000 01000000 ff", 0,
          VMC_DECODE_ERR_BOUNDARY, 0 }, { NULL } }, 0, TRUE },
    { "past-end-continuation", "a continuation longer than what is left",
      { { "01000000 04000000 0000000000000000 08000000 01000000", 0, VMC_DECODE_OK, S | H },
        { "4142434400", 0, VMC_DECODE_ERR_BOUNDARY, 0 },
        { "41424344", 0, VMC_DECODE_OK, E }, { NULL } }, 1, TRUE },
    { "next-header-glued", "the end of one message plus the next header",
      { { "01000000 04000000 0000000000000000 08000000 01000000", 0, VMC_DECODE_OK, S | H },
        { "41424344" CLIENT_DISC, 0, VMC_DECODE_ERR_BOUNDARY, 0 }, { NULL } }, 0, FALSE },
    { "short-header-19", "19 bytes at a message start",
      { { "01000000 06000000 0000000000000000 080000", 0, VMC_DECODE_ERR_BOUNDARY, 0 },
        { NULL } }, 0, TRUE },
    { "short-header-1", "1 byte at a message start",
      { { "01", 0, VMC_DECODE_ERR_BOUNDARY, 0 }, { NULL } }, 0, TRUE },
    { "protocol-0", "protocol 0",
      { { "00000000 0d000000 0000000000000000 00000000", 0, VMC_DECODE_ERR_PROTOCOL, 0 },
        { NULL } }, 0, TRUE },
    { "protocol-2", "protocol 2, no skipping of unknown protocols",
      { { "02000000 0d000000 0000000000000000 00000000", 0, VMC_DECODE_ERR_PROTOCOL, 0 },
        { NULL } }, 0, TRUE },
    { "protocol-before-size", "a bad protocol is reported before a bad length",
      { { "ffffffff 0d000000 0000000000000000 00000000 0102", 0, VMC_DECODE_ERR_PROTOCOL, 0 },
        { NULL } }, 0, TRUE },
    { "empty-unit-start", "a 0-byte unit at a message start",
      { { "", 0, VMC_DECODE_ERR_SIZE, 0 }, { NULL } }, 0, TRUE },
    { "empty-unit-middle", "a 0-byte unit inside a message",
      { { "01000000 04000000 0000000000000000 08000000", 0, VMC_DECODE_OK, S | H },
        { "", 0, VMC_DECODE_ERR_SIZE, 0 }, { "", 8, VMC_DECODE_OK, E }, { NULL } }, 1, TRUE },
    { "unit-2048", "exactly 2048 bytes: header + 2028",
      { { "01000000 04000000 0000000000000000 ec070000", 2028, VMC_DECODE_OK, S | H | E },
        { NULL } }, 1, TRUE },
    { "unit-2049", "2049 bytes: too large, even though the message says so",
      { { "01000000 04000000 0000000000000000 ed070000", 2029, VMC_DECODE_ERR_TOO_LARGE, 0 },
        { NULL } }, 0, TRUE },
    { "continuation-2049", "a 2049-byte continuation is too large before anything else",
      { { "01000000 04000000 0000000000000000 00100000", 0, VMC_DECODE_OK, S | H },
        { "", 2049, VMC_DECODE_ERR_TOO_LARGE, 0 }, { "", 2048, VMC_DECODE_OK, 0 },
        { "", 2048, VMC_DECODE_OK, E }, { NULL } }, 1, TRUE },
    { "size-2g", "a size over 2^31 does not turn the next unit into a header",
      { { "01000000 0c000000 0000000000000000 00000080", 2028, VMC_DECODE_OK, S | H },
        { CLIENT_DISC, 0, VMC_DECODE_OK, 0 }, { "", 2048, VMC_DECODE_OK, 0 }, { NULL } },
      0, FALSE },
    { "unknown-type", "unknown types pass the filter",
      { { "01000000 63000000 0000000000000000 01000000 00", 0, VMC_DECODE_OK, S | H | E },
        { NULL } }, 1, TRUE },
};
/* clang-format on */

static void
test_unit_case(gconstpointer data)
{
    const UnitCase *c = data;
    VmcAgentTracker t;

    vmc_agent_tracker_init(&t);
    for (guint i = 0; c->steps[i].hex; i++) {
        const UnitStep *s = &c->steps[i];
        GByteArray *unit = hex_fill(s->hex, s->fill);
        guint8 *g = vmc_test_guarded_dup(unit->data, unit->len);
        VmcAgentTracker before = t;
        guint flags = 0xdead;
        VmcDecodeResult r = vmc_agent_tracker_unit(&t, g, unit->len, &flags);

        g_test_message("step %u: %u bytes -> %s", i, unit->len, vmc_decode_result_to_string(r));
        g_assert_cmpint(r, ==, s->r);
        if (r == VMC_DECODE_OK) {
            g_assert_cmpuint(flags, ==, s->flags);
            g_assert_cmpint(vmc_agent_tracker_at_boundary(&t), ==, (flags & E) != 0);
            if (flags & H) {
                g_assert_cmpuint(t.header.protocol, ==, 1);
                g_assert_cmpmem(t.hdr, VMC_AGENT_HEADER_SIZE, unit->data, VMC_AGENT_HEADER_SIZE);
            }
        } else {
            /* errors change nothing, outputs untouched */
            g_assert_cmpuint(flags, ==, 0xdead);
            g_assert_cmpmem(&t, sizeof(t), &before, sizeof(before));
        }
        vmc_test_guarded_free(g, unit->len);
        g_byte_array_unref(unit);
    }
    g_assert_cmpuint(t.messages, ==, c->messages);
    g_assert_cmpint(vmc_agent_tracker_at_boundary(&t), ==, c->boundary);
}

/* Every length 1..19 at a message start is a boundary error; 20 is fine. */
static void
test_unit_short_headers(void)
{
    GByteArray *msg = vmc_test_hex(CLIENT_DISC);
    VmcAgentTracker t;
    guint flags;

    vmc_agent_tracker_init(&t);
    for (gsize n = 1; n < VMC_AGENT_HEADER_SIZE; n++) {
        guint8 *g = vmc_test_guarded_dup(msg->data, n);

        g_assert_cmpint(vmc_agent_tracker_unit(&t, g, n, &flags), ==, VMC_DECODE_ERR_BOUNDARY);
        g_assert_true(vmc_agent_tracker_at_boundary(&t));
        vmc_test_guarded_free(g, n);
    }
    g_assert_cmpint(vmc_agent_tracker_unit(&t, msg->data, msg->len, &flags), ==, VMC_DECODE_OK);
    g_assert_cmpuint(flags, ==, S | H | E);
    g_byte_array_unref(msg);
}

/* Units of a stream cut at every offset: every unit inside one message passes,
 * every unit holding a message end and more bytes fails. */
static void
test_unit_every_cut(void)
{
    GByteArray *stream = vmc_test_hex(VDAGENTD_CAPS CLIENT_DISC);

    for (gsize k = 1; k < stream->len; k++) {
        VmcAgentTracker t;
        guint flags;
        VmcDecodeResult r1, r2;

        vmc_agent_tracker_init(&t);
        r1 = vmc_agent_tracker_unit(&t, stream->data, k, &flags);
        if (k < VMC_AGENT_HEADER_SIZE)
            g_assert_cmpint(r1, ==, VMC_DECODE_ERR_BOUNDARY);
        else if (k <= 28)
            g_assert_cmpint(r1, ==, VMC_DECODE_OK);
        else
            g_assert_cmpint(r1, ==, VMC_DECODE_ERR_BOUNDARY);
        if (r1 != VMC_DECODE_OK)
            continue;
        r2 = vmc_agent_tracker_unit(&t, stream->data + k, stream->len - k, &flags);
        if (k == 28)
            g_assert_cmpint(r2, ==, VMC_DECODE_OK);
        else
            g_assert_cmpint(r2, ==, VMC_DECODE_ERR_BOUNDARY);
    }
    g_byte_array_unref(stream);
}

/* A sticky advance() error is returned by unit() too; a header half-read by
 * advance() is a split header for unit(). */
static void
test_unit_mixed_with_advance(void)
{
    GByteArray *bad = vmc_test_hex("05000000 0d000000 0000000000000000 00000000");
    GByteArray *good = vmc_test_hex(CLIENT_DISC);
    VmcAgentTracker t;
    gsize span;
    guint flags;

    vmc_agent_tracker_init(&t);
    g_assert_cmpint(vmc_agent_tracker_advance(&t, bad->data, bad->len, &span, &flags), ==,
                    VMC_DECODE_ERR_PROTOCOL);
    g_assert_cmpuint(span, ==, 20);
    g_assert_cmpint(vmc_agent_tracker_unit(&t, good->data, good->len, &flags), ==,
                    VMC_DECODE_ERR_PROTOCOL);

    vmc_agent_tracker_init(&t);
    g_assert_cmpint(vmc_agent_tracker_advance(&t, good->data, 7, &span, &flags), ==, VMC_DECODE_OK);
    g_assert_cmpuint(flags, ==, S);
    g_assert_cmpint(vmc_agent_tracker_unit(&t, good->data + 7, 13, &flags), ==,
                    VMC_DECODE_ERR_BOUNDARY);
    g_byte_array_unref(bad);
    g_byte_array_unref(good);
}

/* Chunks → pieces → tracker: messages split with vmc_chunk_encode_split, then
 * - the whole wire decoded with a 2048 piece limit: each piece is a whole
 *   min(remaining, 2048) piece, as the reference reads them, and passes the unit
 *   filter;
 * - the wire decoded in random slices: pieces then follow the slices (a header may
 *   be cut), and the streaming tracker follows them all the same. */
static void
test_unit_pipeline(void)
{
    for (guint iter = 0; iter < 50; iter++) {
        GByteArray *wire = g_byte_array_new();
        guint n = (guint)g_test_rand_int_range(1, 5);
        VmcChunkDecoder d;
        VmcAgentTracker t;
        gsize off = 0;

        for (guint i = 0; i < n; i++) {
            GByteArray *msg = g_byte_array_new();
            guint32 size = (guint32)g_test_rand_int_range(0, 7000);
            gsize need;

            append_header(msg, 1, VD_AGENT_CLIPBOARD, i, size);
            append_fill(msg, size);
            need = vmc_chunk_split_size(msg->len);
            g_byte_array_set_size(wire, wire->len + (guint)need);
            g_assert_cmpuint(vmc_chunk_encode_split(VMC_PORT_CLIENT, msg->data, msg->len,
                                                    wire->data + wire->len - need, need),
                             ==, need);
            g_byte_array_unref(msg);
        }

        /* whole pieces through the unit filter */
        vmc_chunk_decoder_init(&d);
        vmc_agent_tracker_init(&t);
        while (off < wire->len) {
            VmcChunkPiece piece;
            gsize consumed;
            guint flags;

            g_assert_cmpint(vmc_chunk_decoder_next(&d, wire->data + off, wire->len - off, 2048,
                                                   &piece, &consumed),
                            ==, VMC_DECODE_OK);
            g_assert_true(piece.chunk_start && piece.chunk_end);
            g_assert_cmpint(vmc_agent_tracker_unit(&t, piece.data, piece.len, &flags), ==,
                            VMC_DECODE_OK);
            off += consumed;
        }
        g_assert_true(vmc_chunk_decoder_at_boundary(&d));
        g_assert_true(vmc_agent_tracker_at_boundary(&t));
        g_assert_cmpuint(t.messages, ==, n);

        /* random slices through the streaming tracker */
        vmc_chunk_decoder_init(&d);
        vmc_agent_tracker_init(&t);
        off = 0;
        while (off < wire->len) {
            gsize want = (gsize)g_test_rand_int_range(1, 5000);
            gsize n_in = MIN(wire->len - off, want);
            gsize o = 0;

            while (o < n_in) {
                VmcChunkPiece piece;
                gsize consumed;
                VmcDecodeResult r = vmc_chunk_decoder_next(&d, wire->data + off + o, n_in - o, 2048,
                                                           &piece, &consumed);
                gsize p = 0;

                o += consumed;
                if (r == VMC_DECODE_NEED_MORE)
                    break;
                g_assert_cmpint(r, ==, VMC_DECODE_OK);
                while (p < piece.len) {
                    gsize span;
                    guint flags;

                    g_assert_cmpint(
                        vmc_agent_tracker_advance(&t, piece.data + p, piece.len - p, &span, &flags),
                        ==, VMC_DECODE_OK);
                    p += span;
                }
            }
            off += n_in;
        }
        g_assert_true(vmc_chunk_decoder_at_boundary(&d));
        g_assert_true(vmc_agent_tracker_at_boundary(&t));
        g_assert_cmpuint(t.messages, ==, n);
        g_byte_array_unref(wire);
    }
}

/* ------------------------------------------------------------------------- */
/* size rules */

typedef struct {
    guint32 type;
    guint flags;
    guint32 min;
    gboolean exact;
} SizeRule;

#define SEL VMC_AGENT_CHECK_SELECTION
#define SER VMC_AGENT_CHECK_GRAB_SERIAL

/* clang-format off */
static const SizeRule size_rules[] = {
    { VD_AGENT_MOUSE_STATE, 0, 13, TRUE },
    { VD_AGENT_MONITORS_CONFIG, 0, 8, FALSE },
    { VD_AGENT_REPLY, 0, 8, TRUE },
    { VD_AGENT_CLIPBOARD, 0, 4, FALSE },
    { VD_AGENT_CLIPBOARD, SEL, 8, FALSE },
    { VD_AGENT_CLIPBOARD, SER, 4, FALSE },
    { VD_AGENT_DISPLAY_CONFIG, 0, 8, TRUE },
    { VD_AGENT_ANNOUNCE_CAPABILITIES, 0, 4, FALSE },
    { VD_AGENT_CLIPBOARD_GRAB, 0, 0, FALSE },
    { VD_AGENT_CLIPBOARD_GRAB, SEL, 4, FALSE },
    { VD_AGENT_CLIPBOARD_GRAB, SER, 4, FALSE },
    { VD_AGENT_CLIPBOARD_GRAB, SEL | SER, 8, FALSE },
    { VD_AGENT_CLIPBOARD_REQUEST, 0, 4, TRUE },
    { VD_AGENT_CLIPBOARD_REQUEST, SEL, 8, TRUE },
    { VD_AGENT_CLIPBOARD_REQUEST, SEL | SER, 8, TRUE },
    { VD_AGENT_CLIPBOARD_RELEASE, 0, 0, TRUE },
    { VD_AGENT_CLIPBOARD_RELEASE, SEL, 4, TRUE },
    { VD_AGENT_FILE_XFER_START, 0, 4, FALSE },
    { VD_AGENT_FILE_XFER_STATUS, 0, 8, FALSE },
    { VD_AGENT_FILE_XFER_DATA, 0, 12, FALSE },
    { VD_AGENT_CLIENT_DISCONNECTED, 0, 0, TRUE },
    { VD_AGENT_CLIENT_DISCONNECTED, SEL | SER, 0, TRUE },
    { VD_AGENT_MAX_CLIPBOARD, 0, 4, TRUE },
    { VD_AGENT_AUDIO_VOLUME_SYNC, 0, 3, FALSE },
    { VD_AGENT_GRAPHICS_DEVICE_INFO, 0, 4, FALSE },
    { VD_AGENT_MOUSE_STATE, SEL | SER, 13, TRUE },
};
/* clang-format on */

static void
test_size_rules(void)
{
    gboolean covered[VD_AGENT_END_MESSAGE] = {FALSE};

    for (guint i = 0; i < G_N_ELEMENTS(size_rules); i++) {
        const SizeRule *r = &size_rules[i];
        guint32 min = 0xdead;
        gboolean exact = 7;

        g_assert_true(vmc_agent_msg_size_rule(r->type, r->flags, &min, &exact));
        g_assert_cmpuint(min, ==, r->min);
        g_assert_cmpint(exact, ==, r->exact);
        g_assert_true(vmc_agent_msg_size_rule(r->type, r->flags, NULL, NULL));
        covered[r->type] = TRUE;

        if (r->min > 0)
            g_assert_cmpint(vmc_agent_msg_check_size(r->type, r->min - 1, r->flags), ==,
                            VMC_DECODE_ERR_TRUNCATED);
        g_assert_cmpint(vmc_agent_msg_check_size(r->type, 0, r->flags), ==,
                        r->min == 0 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED);
        g_assert_cmpint(vmc_agent_msg_check_size(r->type, r->min, r->flags), ==, VMC_DECODE_OK);
        g_assert_cmpint(vmc_agent_msg_check_size(r->type, r->min + 1, r->flags), ==,
                        r->exact ? VMC_DECODE_ERR_SIZE : VMC_DECODE_OK);
        g_assert_cmpint(vmc_agent_msg_check_size(r->type, G_MAXUINT32, r->flags), ==,
                        r->exact ? VMC_DECODE_ERR_SIZE : VMC_DECODE_OK);
    }
    for (guint32 type = 1; type < VD_AGENT_END_MESSAGE; type++)
        g_assert_true(covered[type]);
}

static void
test_size_unknown_types(void)
{
    static const guint32 unknown[] = {0, VD_AGENT_END_MESSAGE, 99, 0x100, G_MAXUINT32};

    for (guint i = 0; i < G_N_ELEMENTS(unknown); i++) {
        guint32 min = 0xdead;
        gboolean exact = 7;

        g_assert_false(vmc_agent_msg_size_rule(unknown[i], 0, &min, &exact));
        g_assert_cmpuint(min, ==, 0xdead);
        g_assert_cmpint(exact, ==, 7);
        g_assert_cmpint(vmc_agent_msg_check_size(unknown[i], 0, 0), ==, VMC_DECODE_ERR_TYPE);
        g_assert_cmpint(vmc_agent_msg_check_size(unknown[i], 100, SEL), ==, VMC_DECODE_ERR_TYPE);
        g_assert_cmpint(vmc_agent_msg_validate(unknown[i], (const guint8 *)"abcd", 4, 0), ==,
                        VMC_DECODE_ERR_TYPE);
        g_assert_null(vmc_agent_msg_type_name(unknown[i]));
    }
}

/* ------------------------------------------------------------------------- */
/* content validation */

typedef struct {
    const char *name;
    guint32 type;
    guint flags;
    const char *hex;
    gsize fill;
    VmcDecodeResult want;
} ValidateCase;

#define MON "00040000 00030000 20000000 00000000 00000000" /* 1024x768x32 at 0,0 */
#define GDI_ADDR "70636930 2f303030 302f3032 2e3000"       /* "pci0/0000/02.0\0", 15 bytes */

/* clang-format off */
static const ValidateCase validate_cases[] = {
    /* MONITORS_CONFIG (CVE-2017-7506 shapes) */
    { "monitors-none", VD_AGENT_MONITORS_CONFIG, 0, "00000000 00000000", 0, VMC_DECODE_OK },
    { "monitors-one", VD_AGENT_MONITORS_CONFIG, 0, "01000000 00000000" MON, 0, VMC_DECODE_OK },
    { "monitors-one-use-pos", VD_AGENT_MONITORS_CONFIG, 0, "01000000 01000000" MON, 0,
      VMC_DECODE_OK },
    { "monitors-two-short", VD_AGENT_MONITORS_CONFIG, 0, "02000000 00000000" MON, 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "monitors-one-partial", VD_AGENT_MONITORS_CONFIG, 0, "01000000 00000000 00040000", 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "monitors-physical-short", VD_AGENT_MONITORS_CONFIG, 0, "01000000 02000000" MON, 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "monitors-physical-ok", VD_AGENT_MONITORS_CONFIG, 0, "01000000 02000000" MON "2c015802", 0,
      VMC_DECODE_OK },
    { "monitors-both-flags-ok", VD_AGENT_MONITORS_CONFIG, 0, "01000000 03000000" MON "2c015802",
      0, VMC_DECODE_OK },
    { "monitors-two-physical-short", VD_AGENT_MONITORS_CONFIG, 0,
      "02000000 02000000" MON MON "2c015802", 0, VMC_DECODE_ERR_TRUNCATED },
    { "monitors-size-7", VD_AGENT_MONITORS_CONFIG, 0, "00000000 000000", 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "monitors-count-huge", VD_AGENT_MONITORS_CONFIG, 0, "ffffffff 00000000" MON, 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "monitors-256", VD_AGENT_MONITORS_CONFIG, 0, "00010000 00000000", 256 * 20, VMC_DECODE_OK },
    /* ANNOUNCE_CAPABILITIES */
    { "caps-vdagentd", VD_AGENT_ANNOUNCE_CAPABILITIES, 0, "01000000 e78d0300", 0, VMC_DECODE_OK },
    { "caps-request-only", VD_AGENT_ANNOUNCE_CAPABILITIES, 0, "00000000", 0, VMC_DECODE_OK },
    { "caps-3", VD_AGENT_ANNOUNCE_CAPABILITIES, 0, "010000", 0, VMC_DECODE_ERR_TRUNCATED },
    { "caps-0", VD_AGENT_ANNOUNCE_CAPABILITIES, 0, "", 0, VMC_DECODE_ERR_TRUNCATED },
    /* AUDIO_VOLUME_SYNC */
    { "audio-0ch", VD_AGENT_AUDIO_VOLUME_SYNC, 0, "010000", 0, VMC_DECODE_OK },
    { "audio-2ch", VD_AGENT_AUDIO_VOLUME_SYNC, 0, "010002 ffff0080", 0, VMC_DECODE_OK },
    { "audio-2ch-odd-tail", VD_AGENT_AUDIO_VOLUME_SYNC, 0, "010002 ffff0080 00", 0,
      VMC_DECODE_OK },
    { "audio-3ch-short", VD_AGENT_AUDIO_VOLUME_SYNC, 0, "010003 ffff0080 00", 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "audio-255ch", VD_AGENT_AUDIO_VOLUME_SYNC, 0, "0001ff", 0, VMC_DECODE_ERR_TRUNCATED },
    { "audio-2-bytes", VD_AGENT_AUDIO_VOLUME_SYNC, 0, "0100", 0, VMC_DECODE_ERR_TRUNCATED },
    /* GRAPHICS_DEVICE_INFO */
    { "gdi-none", VD_AGENT_GRAPHICS_DEVICE_INFO, 0, "00000000", 0, VMC_DECODE_OK },
    { "gdi-one", VD_AGENT_GRAPHICS_DEVICE_INFO, 0,
      "01000000 00000000 00000000 00000000 0f000000" GDI_ADDR, 0, VMC_DECODE_OK },
    { "gdi-two", VD_AGENT_GRAPHICS_DEVICE_INFO, 0,
      "02000000 00000000 00000000 00000000 0f000000" GDI_ADDR
      "01000000 00000000 01000000 0f000000" GDI_ADDR, 0, VMC_DECODE_OK },
    { "gdi-addr-len-0", VD_AGENT_GRAPHICS_DEVICE_INFO, 0,
      "01000000 00000000 00000000 00000000 00000000", 0, VMC_DECODE_ERR_INVALID },
    { "gdi-addr-too-long", VD_AGENT_GRAPHICS_DEVICE_INFO, 0,
      "01000000 00000000 00000000 00000000 10000000" GDI_ADDR, 0, VMC_DECODE_ERR_TRUNCATED },
    { "gdi-addr-len-huge", VD_AGENT_GRAPHICS_DEVICE_INFO, 0,
      "01000000 00000000 00000000 00000000 ffffffff" GDI_ADDR, 0, VMC_DECODE_ERR_TRUNCATED },
    { "gdi-entry-cut", VD_AGENT_GRAPHICS_DEVICE_INFO, 0, "01000000 00000000 00000000 000000", 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "gdi-count-over", VD_AGENT_GRAPHICS_DEVICE_INFO, 0,
      "02000000 00000000 00000000 00000000 0f000000" GDI_ADDR, 0, VMC_DECODE_ERR_TRUNCATED },
    { "gdi-count-huge", VD_AGENT_GRAPHICS_DEVICE_INFO, 0,
      "ffffffff 00000000 00000000 00000000 0f000000" GDI_ADDR, 0, VMC_DECODE_ERR_TRUNCATED },
    { "gdi-size-3", VD_AGENT_GRAPHICS_DEVICE_INFO, 0, "000000", 0, VMC_DECODE_ERR_TRUNCATED },
    /* FILE_XFER_START: id + key file text, NUL-terminated */
    { "xfer-start-ok", VD_AGENT_FILE_XFER_START, 0,
      "01000000 5b766461 67656e74 2d66696c 652d7866 65725d0a 6e616d65 3d610a00", 0,
      VMC_DECODE_OK },
    { "xfer-start-just-nul", VD_AGENT_FILE_XFER_START, 0, "01000000 00", 0, VMC_DECODE_OK },
    { "xfer-start-no-nul", VD_AGENT_FILE_XFER_START, 0, "01000000 5b766461", 0,
      VMC_DECODE_ERR_INVALID },
    { "xfer-start-nul-inside", VD_AGENT_FILE_XFER_START, 0, "01000000 5b00 6461", 0,
      VMC_DECODE_ERR_INVALID },
    { "xfer-start-id-only", VD_AGENT_FILE_XFER_START, 0, "01000000", 0, VMC_DECODE_ERR_INVALID },
    { "xfer-start-3", VD_AGENT_FILE_XFER_START, 0, "010000", 0, VMC_DECODE_ERR_TRUNCATED },
    /* the other types: their size rule only */
    { "mouse-13", VD_AGENT_MOUSE_STATE, 0, "0a000000 14000000 02000000 00", 0, VMC_DECODE_OK },
    { "mouse-12", VD_AGENT_MOUSE_STATE, 0, "0a000000 14000000 02000000", 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "mouse-14", VD_AGENT_MOUSE_STATE, 0, "0a000000 14000000 02000000 0000", 0,
      VMC_DECODE_ERR_SIZE },
    { "reply", VD_AGENT_REPLY, 0, "02000000 01000000", 0, VMC_DECODE_OK },
    { "client-disconnected", VD_AGENT_CLIENT_DISCONNECTED, 0, "", 0, VMC_DECODE_OK },
    { "client-disconnected-1", VD_AGENT_CLIENT_DISCONNECTED, 0, "00", 0, VMC_DECODE_ERR_SIZE },
    { "request-sel", VD_AGENT_CLIPBOARD_REQUEST, SEL, "01000000 01000000", 0, VMC_DECODE_OK },
    { "request-sel-missing", VD_AGENT_CLIPBOARD_REQUEST, SEL, "01000000", 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "grab-serial-sel", VD_AGENT_CLIPBOARD_GRAB, SEL | SER, "00000000 07000000 01000000", 0,
      VMC_DECODE_OK },
    { "grab-serial-sel-short", VD_AGENT_CLIPBOARD_GRAB, SEL | SER, "00000000 0700", 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "release-sel", VD_AGENT_CLIPBOARD_RELEASE, SEL, "01000000", 0, VMC_DECODE_OK },
    { "release-nosel-4", VD_AGENT_CLIPBOARD_RELEASE, 0, "01000000", 0, VMC_DECODE_ERR_SIZE },
    { "xfer-data", VD_AGENT_FILE_XFER_DATA, 0, "01000000 0300000000000000 616263", 0,
      VMC_DECODE_OK },
    { "xfer-data-11", VD_AGENT_FILE_XFER_DATA, 0, "01000000 03000000000000", 0,
      VMC_DECODE_ERR_TRUNCATED },
    { "max-clipboard", VD_AGENT_MAX_CLIPBOARD, 0, "ffffffff", 0, VMC_DECODE_OK },
    { "display-config-short", VD_AGENT_DISPLAY_CONFIG, 0, "00000000", 0,
      VMC_DECODE_ERR_TRUNCATED },
};
/* clang-format on */

static void
test_validate_case(gconstpointer data)
{
    const ValidateCase *c = data;
    GByteArray *p = hex_fill(c->hex, c->fill);
    guint8 *g = vmc_test_guarded_dup(p->data, p->len);

    g_assert_cmpint(vmc_agent_msg_validate(c->type, g, p->len, c->flags), ==, c->want);
    /* the size rule is part of validation: validation never passes what it fails */
    if (vmc_agent_msg_check_size(c->type, p->len, c->flags) != VMC_DECODE_OK)
        g_assert_cmpint(c->want, ==, vmc_agent_msg_check_size(c->type, p->len, c->flags));
    vmc_test_guarded_free(g, p->len);
    g_byte_array_unref(p);
}

/* Every prefix of every valid payload is validated without an over-read. */
static void
test_validate_prefixes(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(validate_cases); i++) {
        const ValidateCase *c = &validate_cases[i];
        GByteArray *p = hex_fill(c->hex, c->fill);

        for (gsize n = 0; n <= p->len && n < 64; n++) {
            guint8 *g = vmc_test_guarded_dup(p->data, n);
            VmcDecodeResult r = vmc_agent_msg_validate(c->type, g, n, c->flags);

            g_assert_true(r == VMC_DECODE_OK || r == VMC_DECODE_ERR_TRUNCATED ||
                          r == VMC_DECODE_ERR_SIZE || r == VMC_DECODE_ERR_INVALID);
            vmc_test_guarded_free(g, n);
        }
        g_byte_array_unref(p);
    }
}

/* ------------------------------------------------------------------------- */
/* capabilities and names */

static void
test_caps_decode(void)
{
    GByteArray *p = vmc_test_hex("01000000 e78d0300");
    guint8 *g = vmc_test_guarded_dup(p->data, p->len);
    guint32 request = 7;
    const guint8 *words = NULL;
    gsize nwords = 7;
    guint32 w;

    g_assert_cmpint(vmc_agent_caps_decode(g, p->len, &request, &words, &nwords), ==, VMC_DECODE_OK);
    g_assert_cmpuint(request, ==, 1);
    g_assert_cmpuint(nwords, ==, 1);
    g_assert_true(words == g + 4);
    w = vmc_get_u32le(words);
    g_assert_cmpuint(w, ==, 0x00038de7);
    g_assert_true(vmc_caps_test(&w, 1, VD_AGENT_CAP_GRAPHICS_DEVICE_INFO));
    g_assert_true(vmc_caps_test(&w, 1, VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL));
    g_assert_false(vmc_caps_test(&w, 1, VD_AGENT_CAP_CLIPBOARD));
    vmc_test_guarded_free(g, p->len);
    g_byte_array_unref(p);

    /* no words; trailing partial words ignored */
    p = vmc_test_hex("00000000 e78d03");
    for (gsize n = 0; n <= p->len; n++) {
        g = vmc_test_guarded_dup(p->data, n);
        request = 7;
        nwords = 7;
        if (n < 4) {
            g_assert_cmpint(vmc_agent_caps_decode(g, n, &request, &words, &nwords), ==,
                            VMC_DECODE_ERR_TRUNCATED);
            g_assert_cmpuint(request, ==, 7);
            g_assert_cmpuint(nwords, ==, 7);
        } else {
            g_assert_cmpint(vmc_agent_caps_decode(g, n, &request, &words, &nwords), ==,
                            VMC_DECODE_OK);
            g_assert_cmpuint(request, ==, 0);
            g_assert_cmpuint(nwords, ==, 0);
        }
        vmc_test_guarded_free(g, n);
    }
    g_byte_array_unref(p);
    g_assert_cmpint(vmc_agent_caps_decode((const guint8 *)"\1\0\0\0", 4, NULL, NULL, NULL), ==,
                    VMC_DECODE_OK);
}

static void
test_names(void)
{
    static const struct {
        guint32 v;
        const char *name;
    } types[] =
        {
            {1, "MOUSE_STATE"},
            {2, "MONITORS_CONFIG"},
            {3, "REPLY"},
            {4, "CLIPBOARD"},
            {5, "DISPLAY_CONFIG"},
            {6, "ANNOUNCE_CAPABILITIES"},
            {7, "CLIPBOARD_GRAB"},
            {8, "CLIPBOARD_REQUEST"},
            {9, "CLIPBOARD_RELEASE"},
            {10, "FILE_XFER_START"},
            {11, "FILE_XFER_STATUS"},
            {12, "FILE_XFER_DATA"},
            {13, "CLIENT_DISCONNECTED"},
            {14, "MAX_CLIPBOARD"},
            {15, "AUDIO_VOLUME_SYNC"},
            {16, "GRAPHICS_DEVICE_INFO"},
        },
      caps[] =
          {
              {0, "MOUSE_STATE"},           {3, "CLIPBOARD"},
              {9, "GUEST_LINEEND_CRLF"},    {13, "FILE_XFER_DISABLED"},
              {15, "GRAPHICS_DEVICE_INFO"}, {17, "CLIPBOARD_GRAB_SERIAL"},
          },
      statuses[] = {
          {0, "CAN_SEND_DATA"},
          {3, "SUCCESS"},
          {6, "VDAGENT_NOT_CONNECTED"},
          {7, "DISABLED"},
      };

    for (guint i = 0; i < G_N_ELEMENTS(types); i++)
        g_assert_cmpstr(vmc_agent_msg_type_name(types[i].v), ==, types[i].name);
    g_assert_null(vmc_agent_msg_type_name(0));
    g_assert_null(vmc_agent_msg_type_name(17));
    g_assert_null(vmc_agent_msg_type_name(G_MAXUINT32));

    for (guint i = 0; i < G_N_ELEMENTS(caps); i++)
        g_assert_cmpstr(vmc_agent_cap_name(caps[i].v), ==, caps[i].name);
    for (guint cap = 0; cap < VD_AGENT_END_CAP; cap++)
        g_assert_nonnull(vmc_agent_cap_name(cap));
    g_assert_null(vmc_agent_cap_name(VD_AGENT_END_CAP));
    g_assert_null(vmc_agent_cap_name(G_MAXUINT));

    for (guint i = 0; i < G_N_ELEMENTS(statuses); i++)
        g_assert_cmpstr(vmc_file_xfer_status_name(statuses[i].v), ==, statuses[i].name);
    for (guint32 s = 0; s <= VD_AGENT_FILE_XFER_STATUS_DISABLED; s++)
        g_assert_nonnull(vmc_file_xfer_status_name(s));
    g_assert_null(vmc_file_xfer_status_name(8));
    g_assert_null(vmc_file_xfer_status_name(G_MAXUINT32));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("VDAgentMessage headers, boundary tracking, size rules and validation");

    g_test_add_func("/protocol/agent/header/decode", test_header_decode);
    g_test_add_func("/protocol/agent/header/encode", test_header_encode);
    for (guint i = 0; i < G_N_ELEMENTS(agent_vectors); i++) {
        const AgentVector *v = &agent_vectors[i];
        gchar *path = g_strdup_printf("/protocol/agent/tracker/vector/%s", v->name);

        g_test_add_data_func(path, v, test_tracker_vector);
        g_free(path);
        if (v->end == VMC_DECODE_OK) {
            path = g_strdup_printf("/protocol/agent/tracker/prefix/%s", v->name);
            g_test_add_data_func(path, v, test_tracker_prefixes);
            g_free(path);
        }
    }
    g_test_add_func("/protocol/agent/tracker/random", test_tracker_random);
    g_test_add_func("/protocol/agent/tracker/huge", test_tracker_huge);
    for (guint i = 0; i < G_N_ELEMENTS(unit_cases); i++) {
        gchar *path = g_strdup_printf("/protocol/agent/unit/%s", unit_cases[i].name);

        g_test_add_data_func(path, &unit_cases[i], test_unit_case);
        g_free(path);
    }
    g_test_add_func("/protocol/agent/unit/short-headers", test_unit_short_headers);
    g_test_add_func("/protocol/agent/unit/every-cut", test_unit_every_cut);
    g_test_add_func("/protocol/agent/unit/mixed-with-advance", test_unit_mixed_with_advance);
    g_test_add_func("/protocol/agent/unit/pipeline", test_unit_pipeline);
    g_test_add_func("/protocol/agent/size/rules", test_size_rules);
    g_test_add_func("/protocol/agent/size/unknown-types", test_size_unknown_types);
    for (guint i = 0; i < G_N_ELEMENTS(validate_cases); i++) {
        gchar *path = g_strdup_printf("/protocol/agent/validate/%s", validate_cases[i].name);

        g_test_add_data_func(path, &validate_cases[i], test_validate_case);
        g_free(path);
    }
    g_test_add_func("/protocol/agent/validate/prefixes", test_validate_prefixes);
    g_test_add_func("/protocol/agent/caps/decode", test_caps_decode);
    g_test_add_func("/protocol/agent/names", test_names);
    return g_test_run();
}
