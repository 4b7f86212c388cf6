/* test-chunk.c — the VDIChunkHeader stream decoder and the chunk encoders.
 *
 * Every table vector is fed whole, split at every offset, byte by byte and in
 * random slices (g_test_rand, reproducible with --seed), each slice copied against
 * a guard page so that reading one byte too far faults; and with several piece
 * limits. The pieces of each chunk must reassemble to exactly the expected payload.
 */
#include <string.h>

#include "protocol/vmc-chunk.h"
#include "vmc-test-util.h"

#define MAX_EXP 5

/* pattern bytes used for payloads too long to write in hex */
static guint8
fill_byte(gsize i)
{
    return (guint8)(i * 7 + 3);
}

static void
append_fill(GByteArray *a, gsize n)
{
    for (gsize i = 0; i < n; i++) {
        guint8 b = fill_byte(i);

        g_byte_array_append(a, &b, 1);
    }
}

typedef struct {
    guint32 port;
    guint32 size;      /* the announced size */
    const char *hex;   /* payload seen (hex) ... */
    gsize fill;        /* ... followed by this many pattern bytes */
    gboolean complete; /* the chunk's last byte is in the stream */
} ExpChunk;

typedef struct {
    const char *name;
    const char *why;
    const char *hex;  /* stream: hex ... */
    gsize fill;       /* ... then pattern bytes ... */
    const char *tail; /* ... then more hex (may be NULL) */
    ExpChunk chunks[MAX_EXP];
    VmcDecodeResult end; /* OK (clean) or the error the stream ends in */
    gsize err_offset;    /* stream offset just past the bad header */
    gboolean boundary;   /* at_boundary() after a clean end */
} ChunkVector;

/* clang-format off */
static const ChunkVector chunk_vectors[] = {
    { "empty-stream", "no bytes at all: nothing happens, still at a boundary",
      "", 0, NULL, { { 0 } }, VMC_DECODE_OK, 0, TRUE },
    { "vdagentd-caps", "spice-vdagentd's ANNOUNCE_CAPABILITIES on port open (peers.md 4.2)",
      "01000000 1c000000 | 01000000 06000000 0000000000000000 08000000 | 01000000 e78d0300",
      0, NULL,
      { { 1, 28, "01000000 06000000 0000000000000000 08000000 01000000 e78d0300", 0, TRUE } },
      VMC_DECODE_OK, 0, TRUE },
    { "server-client-disconnected", "the reference's CLIENT_DISCONNECTED on port 2",
      "02000000 14000000 01000000 0d000000 00000000 00000000 00000000", 0, NULL,
      { { 2, 20, "01000000 0d000000 00000000 00000000 00000000", 0, TRUE } },
      VMC_DECODE_OK, 0, TRUE },
    { "size-zero", "a chunk of size 0 is one empty piece",
      "01000000 00000000", 0, NULL,
      { { 1, 0, "", 0, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "size-zero-run", "three empty chunks back to back, both ports",
      "01000000 00000000 02000000 00000000 01000000 00000000", 0, NULL,
      { { 1, 0, "", 0, TRUE }, { 2, 0, "", 0, TRUE }, { 1, 0, "", 0, TRUE } },
      VMC_DECODE_OK, 0, TRUE },
    { "size-zero-then-data", "an empty chunk does not swallow the next header",
      "02000000 00000000 01000000 03000000 aabbcc", 0, NULL,
      { { 2, 0, "", 0, TRUE }, { 1, 3, "aabbcc", 0, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "two-ports", "ports 1 and 2 interleaved chunk by chunk",
      "01000000 02000000 1122 02000000 01000000 33 01000000 01000000 44", 0, NULL,
      { { 1, 2, "1122", 0, TRUE }, { 2, 1, "33", 0, TRUE }, { 1, 1, "44", 0, TRUE } },
      VMC_DECODE_OK, 0, TRUE },
    { "little-endian", "port and size are little-endian",
      "02000000 03010000", 0x103, NULL,
      { { 2, 0x103, "", 0x103, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "size-2048", "exactly VD_AGENT_MAX_DATA_SIZE",
      "01000000 00080000", 2048, NULL,
      { { 1, 2048, "", 2048, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "size-2049", "the decoder takes chunks over 2048 (vdagentd sends them)",
      "01000000 01080000", 2049, "02000000 01000000 ee",
      { { 1, 2049, "", 2049, TRUE }, { 2, 1, "ee", 0, TRUE } }, VMC_DECODE_OK, 0, TRUE },
    { "size-max-open", "size 0xFFFFFFFF streams: pieces come out, the chunk stays open",
      "01000000 ffffffff 0102030405", 0, NULL,
      { { 1, 0xffffffff, "0102030405", 0, FALSE } }, VMC_DECODE_OK, 0, FALSE },
    { "partial-header", "six header bytes: nothing yet",
      "01000000 0400", 0, NULL, { { 0 } }, VMC_DECODE_OK, 0, FALSE },
    { "open-after-complete", "a complete chunk then a started one",
      "01000000 01000000 aa 02000000 04000000 bbcc", 0, NULL,
      { { 1, 1, "aa", 0, TRUE }, { 2, 4, "bbcc", 0, FALSE } }, VMC_DECODE_OK, 0, FALSE },
    { "port-0", "port 0 is not a VDI port",
      "00000000 04000000 deadbeef", 0, NULL, { { 0 } }, VMC_DECODE_ERR_PORT, 8, FALSE },
    { "port-3", "VDP_END_PORT is not a port",
      "03000000 04000000 deadbeef", 0, NULL, { { 0 } }, VMC_DECODE_ERR_PORT, 8, FALSE },
    { "port-ffffffff", "all ones",
      "ffffffff 00000000", 0, NULL, { { 0 } }, VMC_DECODE_ERR_PORT, 8, FALSE },
    { "port-big-endian-1", "0x01000000 is not port 1",
      "00000001 00000000", 0, NULL, { { 0 } }, VMC_DECODE_ERR_PORT, 8, FALSE },
    { "port-bad-after-chunk", "a bad header after a good chunk: the good one is delivered",
      "01000000 02000000 1122 03000000 00000000 99", 0, NULL,
      { { 1, 2, "1122", 0, TRUE } }, VMC_DECODE_ERR_PORT, 18, FALSE },
    { "port-bad-after-empty", "a bad header right after an empty chunk",
      "02000000 00000000 07000000 ffffffff", 0, NULL,
      { { 2, 0, "", 0, TRUE } }, VMC_DECODE_ERR_PORT, 16, FALSE },
};
/* clang-format on */

static GByteArray *
vector_stream(const ChunkVector *v)
{
    GByteArray *a = vmc_test_hex(v->hex);

    append_fill(a, v->fill);
    if (v->tail) {
        GByteArray *t = vmc_test_hex(v->tail);

        g_byte_array_append(a, t->data, t->len);
        g_byte_array_unref(t);
    }
    return a;
}

static guint
vector_n_chunks(const ChunkVector *v)
{
    guint n = 0;

    while (n < MAX_EXP && (v->chunks[n].port != 0))
        n++;
    return n;
}

/* ---- recording a run ---- */

typedef struct {
    guint32 port;
    guint32 size;
    GByteArray *payload;
    gboolean ended;
    guint pieces;
} ChunkRec;

typedef struct {
    GArray *chunks; /* ChunkRec */
    VmcDecodeResult end;
    gsize consumed; /* stream bytes consumed in total */
    gboolean boundary;
    VmcChunkDecoder d;
} Run;

static void
chunk_rec_clear(gpointer p)
{
    ChunkRec *c = p;

    g_byte_array_unref(c->payload);
}

static void
run_init(Run *run)
{
    run->chunks = g_array_new(FALSE, TRUE, sizeof(ChunkRec));
    g_array_set_clear_func(run->chunks, chunk_rec_clear);
    run->end = VMC_DECODE_OK;
    run->consumed = 0;
    run->boundary = TRUE;
    vmc_chunk_decoder_init(&run->d);
}

static void
run_clear(Run *run)
{
    g_array_unref(run->chunks);
}

static void
record_piece(Run *run, const VmcChunkPiece *piece)
{
    ChunkRec *last =
        run->chunks->len ? &g_array_index(run->chunks, ChunkRec, run->chunks->len - 1) : NULL;

    if (piece->chunk_start) {
        ChunkRec c = {piece->port, piece->chunk_size, g_byte_array_new(), FALSE, 0};

        g_assert_true(last == NULL || last->ended);
        g_array_append_val(run->chunks, c);
        last = &g_array_index(run->chunks, ChunkRec, run->chunks->len - 1);
    } else {
        g_assert_nonnull(last);
        g_assert_false(last->ended);
        g_assert_cmpuint(last->port, ==, piece->port);
        g_assert_cmpuint(last->size, ==, piece->chunk_size);
    }
    if (piece->len)
        g_byte_array_append(last->payload, piece->data, (guint)piece->len);
    last->pieces++;
    g_assert_cmpuint(last->payload->len, <=, last->size);
    if (piece->chunk_end) {
        g_assert_cmpuint(last->payload->len, ==, last->size);
        last->ended = TRUE;
    }
}

/* Feeds one slice (already in a guarded buffer) until it is used up or an error. */
static gboolean
run_slice(Run *run, const guint8 *buf, gsize len, gsize max_piece)
{
    gsize off = 0;

    while (off < len) {
        VmcChunkPiece piece;
        gsize consumed = G_MAXSIZE;
        VmcDecodeResult r;

        r = vmc_chunk_decoder_next(&run->d, buf + off, len - off, max_piece, &piece, &consumed);
        g_assert_cmpuint(run->d.hdr_have, <, VMC_CHUNK_HEADER_SIZE);
        g_assert_cmpuint(consumed, <=, len - off);
        if (r == VMC_DECODE_NEED_MORE) {
            g_assert_cmpuint(consumed, ==, len - off);
            g_assert_null(piece.data);
            g_assert_cmpuint(piece.len, ==, 0);
            g_assert_false(piece.chunk_start);
            g_assert_false(piece.chunk_end);
            run->consumed += consumed;
            return TRUE;
        }
        if (r != VMC_DECODE_OK) {
            gsize again = 1;

            run->end = r;
            run->consumed += consumed;
            /* sticky: nothing more is consumed, the same error comes back */
            g_assert_cmpint(vmc_chunk_decoder_next(&run->d, buf + off + consumed,
                                                   len - off - consumed, max_piece, &piece, &again),
                            ==, r);
            g_assert_cmpuint(again, ==, 0);
            g_assert_false(vmc_chunk_decoder_at_boundary(&run->d));
            return FALSE;
        }
        g_assert_true(piece.port == VMC_PORT_CLIENT || piece.port == VMC_PORT_SERVER);
        if (max_piece)
            g_assert_cmpuint(piece.len, <=, max_piece);
        if (piece.len == 0) {
            /* only a size-0 chunk gives an empty piece */
            g_assert_cmpuint(piece.chunk_size, ==, 0);
            g_assert_true(piece.chunk_start && piece.chunk_end);
            g_assert_null(piece.data);
        } else {
            /* the piece is the tail of the consumed bytes, inside this slice */
            g_assert_true(piece.data == buf + off + consumed - piece.len);
            g_assert_cmpuint(consumed, >=, piece.len);
        }
        g_assert_cmpuint(consumed, >, 0);
        record_piece(run, &piece);
        run->consumed += consumed;
        off += consumed;
    }
    return TRUE;
}

/* Feeds `stream` cut at the given offsets (sorted, each in 1..len-1). */
static void
run_cuts(Run *run, const GByteArray *stream, const gsize *cuts, gsize n_cuts, gsize max_piece)
{
    gsize start = 0;

    run_init(run);
    for (gsize i = 0; i <= n_cuts; i++) {
        gsize end = i < n_cuts ? cuts[i] : stream->len;
        guint8 *g = vmc_test_guarded_dup(stream->data + start, end - start);
        gboolean go_on = run_slice(run, g, end - start, max_piece);

        vmc_test_guarded_free(g, end - start);
        if (!go_on)
            break;
        start = end;
    }
    run->boundary = vmc_chunk_decoder_at_boundary(&run->d);
}

static void
check_run(const ChunkVector *v, const Run *run, const GByteArray *stream)
{
    guint n = vector_n_chunks(v);

    g_assert_cmpint(run->end, ==, v->end);
    if (v->end == VMC_DECODE_OK) {
        g_assert_cmpuint(run->consumed, ==, stream->len);
        g_assert_cmpint(run->boundary, ==, v->boundary);
    } else {
        g_assert_cmpuint(run->consumed, ==, v->err_offset);
        g_assert_false(run->boundary);
    }
    g_assert_cmpuint(run->chunks->len, ==, n);
    for (guint i = 0; i < n; i++) {
        const ExpChunk *e = &v->chunks[i];
        const ChunkRec *c = &g_array_index(run->chunks, ChunkRec, i);
        GByteArray *want = vmc_test_hex(e->hex);

        append_fill(want, e->fill);
        g_assert_cmpuint(c->port, ==, e->port);
        g_assert_cmpuint(c->size, ==, e->size);
        g_assert_cmpint(c->ended, ==, e->complete);
        g_assert_cmpmem(c->payload->data, c->payload->len, want->data, want->len);
        g_byte_array_unref(want);
    }
}

static const gsize piece_limits[] = {0, 1, 3, 2048};

static void
test_vector(gconstpointer data)
{
    const ChunkVector *v = data;
    GByteArray *stream = vector_stream(v);
    gsize len = stream->len;
    gsize *cuts = g_new0(gsize, len + 1);
    Run run;

    for (guint m = 0; m < G_N_ELEMENTS(piece_limits); m++) {
        gsize max_piece = piece_limits[m];

        /* whole */
        run_cuts(&run, stream, NULL, 0, max_piece);
        check_run(v, &run, stream);
        run_clear(&run);

        /* split in two at every offset (with tiny piece limits on long vectors,
         * every 17th offset: those runs cost a call per byte already) */
        for (gsize k = 1; k < len; k += (max_piece && max_piece < 8 && len > 512) ? 17 : 1) {
            run_cuts(&run, stream, &k, 1, max_piece);
            check_run(v, &run, stream);
            run_clear(&run);
        }

        /* byte by byte */
        for (gsize k = 1; k < len; k++)
            cuts[k - 1] = k;
        run_cuts(&run, stream, cuts, len ? len - 1 : 0, max_piece);
        check_run(v, &run, stream);
        run_clear(&run);

        /* random slices */
        for (guint iter = 0; iter < 20 && len > 1; iter++) {
            gsize n_cuts = 0;

            for (gsize k = 1; k < len; k++) {
                if (g_test_rand_int_range(0, 8) == 0)
                    cuts[n_cuts++] = k;
            }
            run_cuts(&run, stream, cuts, n_cuts, max_piece);
            check_run(v, &run, stream);
            run_clear(&run);
        }
    }
    g_free(cuts);
    g_byte_array_unref(stream);
}

/* Every strict prefix of a valid stream: no error, NEED_MORE at its end, exactly the
 * chunks that end inside the prefix completed, a boundary only between chunks. */
static void
test_prefixes(gconstpointer data)
{
    const ChunkVector *v = data;
    GByteArray *stream = vector_stream(v);
    guint n = vector_n_chunks(v);
    gsize ends[MAX_EXP];
    gsize off = 0;

    g_assert_cmpint(v->end, ==, VMC_DECODE_OK);
    for (guint i = 0; i < n; i++) {
        off += VMC_CHUNK_HEADER_SIZE + (gsize)v->chunks[i].size;
        ends[i] = off;
    }
    for (gsize p = 0; p < stream->len; p++) {
        guint8 *g = vmc_test_guarded_dup(stream->data, p);
        guint complete = 0;
        gboolean at_end = p == 0;
        Run run;
        VmcChunkPiece piece;
        gsize consumed = G_MAXSIZE;

        run_init(&run);
        g_assert_true(run_slice(&run, g, p, 0));
        g_assert_cmpuint(run.consumed, ==, p);
        /* the decoder has used up the prefix: more input is needed */
        g_assert_cmpint(vmc_chunk_decoder_next(&run.d, g + p, 0, 0, &piece, &consumed), ==,
                        VMC_DECODE_NEED_MORE);
        g_assert_cmpuint(consumed, ==, 0);
        for (guint i = 0; i < n; i++) {
            if (ends[i] <= p)
                complete++;
            if (ends[i] == p)
                at_end = TRUE;
        }
        for (guint i = 0; i < run.chunks->len; i++)
            g_assert_cmpint(g_array_index(run.chunks, ChunkRec, i).ended, ==, i < complete);
        g_assert_cmpint(vmc_chunk_decoder_at_boundary(&run.d), ==, at_end);
        run_clear(&run);
        vmc_test_guarded_free(g, p);
    }
    g_byte_array_unref(stream);
}

/* ---- focused tests ---- */

static void
test_bad_port_sticky(void)
{
    static const guint32 bad[] = {0, 3, 4, 0x100, 0x80000000u, G_MAXUINT32};

    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        VmcChunkDecoder d;
        VmcChunkPiece piece;
        guint8 buf[12];
        gsize consumed = 0;

        vmc_chunk_header_encode(bad[i], 4, buf);
        memset(buf + 8, 0xab, 4);
        vmc_chunk_decoder_init(&d);
        g_assert_cmpint(vmc_chunk_decoder_next(&d, buf, sizeof(buf), 0, &piece, &consumed), ==,
                        VMC_DECODE_ERR_PORT);
        g_assert_cmpuint(consumed, ==, VMC_CHUNK_HEADER_SIZE);
        /* the offending header stays readable for the log */
        g_assert_cmpuint(d.port, ==, bad[i]);
        g_assert_cmpuint(d.size, ==, 4);
        /* sticky, even with a valid header offered */
        vmc_chunk_header_encode(VMC_PORT_CLIENT, 0, buf);
        g_assert_cmpint(vmc_chunk_decoder_next(&d, buf, 8, 0, &piece, &consumed), ==,
                        VMC_DECODE_ERR_PORT);
        g_assert_cmpuint(consumed, ==, 0);
        g_assert_false(vmc_chunk_decoder_at_boundary(&d));
        /* re-initialising recovers */
        vmc_chunk_decoder_init(&d);
        g_assert_true(vmc_chunk_decoder_at_boundary(&d));
        g_assert_cmpint(vmc_chunk_decoder_next(&d, buf, 8, 0, &piece, &consumed), ==,
                        VMC_DECODE_OK);
        g_assert_true(piece.chunk_start && piece.chunk_end);
        g_assert_cmpuint(piece.port, ==, VMC_PORT_CLIENT);
    }
}

/* A chunk larger than anything we would buffer: the decoder streams it in pieces
 * that point into the input and its state never grows. */
static void
test_huge_chunk_streams(void)
{
    const gsize total = 3 * 1024 * 1024 + 17; /* a big vdagentd clipboard */
    const gsize slice = 65536;
    guint8 *buf = g_malloc(slice);
    VmcChunkDecoder d;
    VmcChunkPiece piece;
    guint8 hdr[VMC_CHUNK_HEADER_SIZE];
    gsize consumed;
    gsize seen = 0;
    guint pieces = 0;
    gboolean ended = FALSE;

    vmc_chunk_decoder_init(&d);
    vmc_chunk_header_encode(VMC_PORT_CLIENT, (guint32)total, hdr);
    g_assert_cmpint(vmc_chunk_decoder_next(&d, hdr, sizeof(hdr), 2048, &piece, &consumed), ==,
                    VMC_DECODE_NEED_MORE);
    g_assert_cmpuint(consumed, ==, sizeof(hdr));
    g_assert_cmpuint(piece.port, ==, VMC_PORT_CLIENT);
    g_assert_cmpuint(piece.chunk_size, ==, total);

    while (seen < total) {
        gsize n = MIN(slice, total - seen);
        gsize off = 0;

        for (gsize i = 0; i < n; i++)
            buf[i] = fill_byte(seen + i);
        while (off < n) {
            g_assert_cmpint(vmc_chunk_decoder_next(&d, buf + off, n - off, 2048, &piece, &consumed),
                            ==, VMC_DECODE_OK);
            g_assert_true(piece.data == buf + off);
            g_assert_cmpuint(piece.len, ==, consumed);
            g_assert_cmpuint(piece.len, <=, 2048);
            g_assert_cmpint(piece.chunk_start, ==, seen == 0 && off == 0);
            g_assert_cmpuint(piece.data[0], ==, fill_byte(seen + off));
            g_assert_cmpuint(piece.data[piece.len - 1], ==, fill_byte(seen + off + piece.len - 1));
            g_assert_cmpuint(d.hdr_have, ==, 0);
            ended = piece.chunk_end;
            off += consumed;
            pieces++;
        }
        seen += n;
        g_assert_cmpuint(d.remaining, ==, total - seen);
    }
    g_assert_true(ended);
    g_assert_cmpuint(pieces, ==, (total + 2047) / 2048);
    g_assert_true(vmc_chunk_decoder_at_boundary(&d));
    g_free(buf);
}

/* size 0xFFFFFFFF: 8 MiB go through as pieces and the chunk is still open. */
static void
test_max_size_chunk(void)
{
    const gsize slice = 1024 * 1024;
    guint8 *buf = g_malloc0(slice);
    VmcChunkDecoder d;
    VmcChunkPiece piece;
    guint8 hdr[VMC_CHUNK_HEADER_SIZE];
    gsize consumed;
    guint64 seen = 0;

    vmc_chunk_decoder_init(&d);
    vmc_chunk_header_encode(VMC_PORT_SERVER, G_MAXUINT32, hdr);
    g_assert_cmpint(vmc_chunk_decoder_next(&d, hdr, sizeof(hdr), 0, &piece, &consumed), ==,
                    VMC_DECODE_NEED_MORE);
    for (guint i = 0; i < 8; i++) {
        g_assert_cmpint(vmc_chunk_decoder_next(&d, buf, slice, 0, &piece, &consumed), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(consumed, ==, slice);
        g_assert_cmpuint(piece.len, ==, slice);
        g_assert_cmpuint(piece.chunk_size, ==, G_MAXUINT32);
        g_assert_cmpint(piece.chunk_start, ==, i == 0);
        g_assert_false(piece.chunk_end);
        seen += slice;
        g_assert_cmpuint(d.remaining, ==, G_MAXUINT32 - seen);
        g_assert_false(vmc_chunk_decoder_at_boundary(&d));
    }
    g_free(buf);
}

/* The reference's 5000-byte chunk becomes pieces of 2048 + 2048 + 904. */
static void
test_max_piece_split(void)
{
    GByteArray *stream = g_byte_array_new();
    guint8 hdr[VMC_CHUNK_HEADER_SIZE];
    static const gsize want[] = {2048, 2048, 904};
    VmcChunkDecoder d;
    gsize off = 0;

    vmc_chunk_header_encode(VMC_PORT_CLIENT, 5000, hdr);
    g_byte_array_append(stream, hdr, sizeof(hdr));
    append_fill(stream, 5000);
    vmc_chunk_decoder_init(&d);
    for (guint i = 0; i < G_N_ELEMENTS(want); i++) {
        VmcChunkPiece piece;
        gsize consumed;

        g_assert_cmpint(vmc_chunk_decoder_next(&d, stream->data + off, stream->len - off, 2048,
                                               &piece, &consumed),
                        ==, VMC_DECODE_OK);
        g_assert_cmpuint(piece.len, ==, want[i]);
        g_assert_cmpint(piece.chunk_start, ==, i == 0);
        g_assert_cmpint(piece.chunk_end, ==, i == 2);
        off += consumed;
    }
    g_assert_cmpuint(off, ==, stream->len);
    g_byte_array_unref(stream);
}

static void
test_header_encode(void)
{
    static const struct {
        guint32 port, size;
        const char *hex;
    } cases[] = {
        {1, 0, "01000000 00000000"},           {2, 20, "02000000 14000000"},
        {1, 2048, "01000000 00080000"},        {1, 2049, "01000000 01080000"},
        {2, G_MAXUINT32, "02000000 ffffffff"}, {0x04030201, 0x08070605, "01020304 05060708"},
    };

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        GByteArray *want = vmc_test_hex(cases[i].hex);
        guint8 out[VMC_CHUNK_HEADER_SIZE];

        vmc_chunk_header_encode(cases[i].port, cases[i].size, out);
        g_assert_cmpmem(out, sizeof(out), want->data, want->len);
        g_byte_array_unref(want);
    }
}

static void
test_encode_limits(void)
{
    guint8 payload[2049];
    guint8 out[8 + 2049 + 1];

    for (gsize i = 0; i < sizeof(payload); i++)
        payload[i] = fill_byte(i);

    /* size 0: a bare header */
    memset(out, 0x55, sizeof(out));
    g_assert_cmpuint(vmc_chunk_encode(VMC_PORT_SERVER, NULL, 0, out, 8), ==, 8);
    g_assert_cmpmem(out, 8, "\2\0\0\0\0\0\0\0", 8);
    g_assert_cmpuint(out[8], ==, 0x55);
    g_assert_cmpuint(vmc_chunk_encode(VMC_PORT_SERVER, NULL, 0, out, 7), ==, 0);

    /* 2048: the largest chunk, with exactly enough room */
    g_assert_cmpuint(vmc_chunk_encode(VMC_PORT_CLIENT, payload, 2048, out, 8 + 2048), ==, 8 + 2048);
    g_assert_cmpmem(out, 8, "\1\0\0\0\0\x08\0\0", 8);
    g_assert_cmpmem(out + 8, 2048, payload, 2048);

    /* one byte of room short: refused, nothing written */
    memset(out, 0x55, sizeof(out));
    g_assert_cmpuint(vmc_chunk_encode(VMC_PORT_CLIENT, payload, 2048, out, 8 + 2047), ==, 0);
    g_assert_cmpuint(vmc_chunk_encode(VMC_PORT_CLIENT, payload, 1, out, 0), ==, 0);
    for (gsize i = 0; i < sizeof(out); i++)
        g_assert_cmpuint(out[i], ==, 0x55);

    /* 2049: over the limit whatever the room */
    g_assert_cmpuint(vmc_chunk_encode(VMC_PORT_CLIENT, payload, 2049, out, sizeof(out)), ==, 0);
    g_assert_cmpuint(vmc_chunk_encode(VMC_PORT_CLIENT, payload, G_MAXSIZE, out, G_MAXSIZE), ==, 0);
    g_assert_cmpuint(out[0], ==, 0x55);
}

static void
test_split_size(void)
{
    static const struct {
        gsize len, size;
    } cases[] = {
        {0, 0},       {1, 9},       {2047, 2055}, {2048, 2056},   {2049, 2065},
        {4096, 4112}, {4097, 4121}, {5000, 5024}, {10028, 10068},
    };

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++)
        g_assert_cmpuint(vmc_chunk_split_size(cases[i].len), ==, cases[i].size);
    /* totals that do not fit a gsize */
    g_assert_cmpuint(vmc_chunk_split_size(G_MAXSIZE), ==, 0);
    g_assert_cmpuint(vmc_chunk_split_size(G_MAXSIZE - 7), ==, 0);
    /* the largest length that still fits */
    {
        gsize chunks = G_MAXSIZE / 2056;
        gsize len = chunks * 2048;

        g_assert_cmpuint(vmc_chunk_split_size(len), ==, len + chunks * 8);
    }
}

/* encode_split → decode: chunks of at most 2048, payload back byte for byte. */
static void
check_split_roundtrip(guint32 port, const guint8 *payload, gsize len, gsize max_slice)
{
    gsize need = vmc_chunk_split_size(len);
    guint8 *out = g_malloc(need + 1);
    GByteArray *back = g_byte_array_new();
    VmcChunkDecoder d;
    gsize off = 0;
    guint chunks = 0;

    if (len == 0) {
        g_assert_cmpuint(vmc_chunk_encode_split(port, payload, 0, out, 16), ==, 0);
        g_free(out);
        g_byte_array_unref(back);
        return;
    }
    /* too small: refused, untouched */
    memset(out, 0x55, need + 1);
    g_assert_cmpuint(vmc_chunk_encode_split(port, payload, len, out, need - 1), ==, 0);
    g_assert_cmpuint(out[0], ==, 0x55);
    g_assert_cmpuint(vmc_chunk_encode_split(port, payload, len, out, need + 1), ==, need);
    g_assert_cmpuint(out[need], ==, 0x55);

    vmc_chunk_decoder_init(&d);
    while (off < need) {
        gsize want = max_slice ? (gsize)g_test_rand_int_range(1, (gint)max_slice + 1) : need;
        gsize n = MIN(need - off, want);
        guint8 *g = vmc_test_guarded_dup(out + off, n);
        gsize o = 0;

        while (o < n) {
            VmcChunkPiece piece;
            gsize consumed;
            VmcDecodeResult r = vmc_chunk_decoder_next(&d, g + o, n - o, 0, &piece, &consumed);

            g_assert_cmpint(r, !=, VMC_DECODE_ERR_PORT);
            o += consumed;
            if (r == VMC_DECODE_NEED_MORE)
                break;
            g_assert_cmpuint(piece.port, ==, port);
            g_assert_cmpuint(piece.chunk_size, <=, VMC_CHUNK_MAX_PAYLOAD);
            g_assert_cmpuint(piece.chunk_size, >, 0);
            if (piece.chunk_start)
                chunks++;
            g_byte_array_append(back, piece.data, (guint)piece.len);
        }
        vmc_test_guarded_free(g, n);
        off += n;
    }
    g_assert_true(vmc_chunk_decoder_at_boundary(&d));
    g_assert_cmpuint(chunks, ==, (len + 2047) / 2048);
    g_assert_cmpmem(back->data, back->len, payload, len);
    g_byte_array_unref(back);
    g_free(out);
}

static void
test_split_roundtrip(void)
{
    static const gsize lens[] = {0, 1, 19, 20, 2047, 2048, 2049, 4095, 4096, 4097, 5000, 10028};
    guint8 *payload = g_malloc(10028);

    for (gsize i = 0; i < 10028; i++)
        payload[i] = fill_byte(i);
    for (guint i = 0; i < G_N_ELEMENTS(lens); i++) {
        check_split_roundtrip(VMC_PORT_CLIENT, payload, lens[i], 0);
        check_split_roundtrip(VMC_PORT_SERVER, payload, lens[i], 7);
    }
    g_free(payload);
}

/* random payloads, random ports, random re-slicing */
static void
test_random_roundtrip(void)
{
    for (guint iter = 0; iter < 200; iter++) {
        gsize len = (gsize)g_test_rand_int_range(1, 7000);
        guint8 *payload = g_malloc(len);
        guint32 port = g_test_rand_bit() ? VMC_PORT_CLIENT : VMC_PORT_SERVER;

        for (gsize i = 0; i < len; i++)
            payload[i] = (guint8)g_test_rand_int_range(0, 256);
        check_split_roundtrip(port, payload, len, (gsize)g_test_rand_int_range(1, 3000));
        g_free(payload);
    }
}

/* Random streams of chunks of random size (including 0) with random slicing and
 * random piece limits, compared against the chunk list they were built from. */
static void
test_random_streams(void)
{
    for (guint iter = 0; iter < 100; iter++) {
        GByteArray *stream = g_byte_array_new();
        guint n = (guint)g_test_rand_int_range(1, 8);
        guint32 ports[8], sizes[8];
        gsize max_piece = (gsize)g_test_rand_int_range(0, 3000);
        gsize *cuts;
        gsize n_cuts = 0;
        Run run;

        for (guint i = 0; i < n; i++) {
            guint8 hdr[VMC_CHUNK_HEADER_SIZE];

            ports[i] = g_test_rand_bit() ? VMC_PORT_CLIENT : VMC_PORT_SERVER;
            sizes[i] =
                g_test_rand_int_range(0, 4) == 0 ? 0 : (guint32)g_test_rand_int_range(1, 5000);
            vmc_chunk_header_encode(ports[i], sizes[i], hdr);
            g_byte_array_append(stream, hdr, sizeof(hdr));
            for (guint32 k = 0; k < sizes[i]; k++) {
                guint8 b = (guint8)(i * 31 + k);

                g_byte_array_append(stream, &b, 1);
            }
        }
        cuts = g_new(gsize, stream->len + 1);
        for (gsize k = 1; k < stream->len; k++) {
            if (g_test_rand_int_range(0, 200) == 0)
                cuts[n_cuts++] = k;
        }
        run_cuts(&run, stream, cuts, n_cuts, max_piece);
        g_assert_cmpint(run.end, ==, VMC_DECODE_OK);
        g_assert_cmpuint(run.consumed, ==, stream->len);
        g_assert_true(run.boundary);
        g_assert_cmpuint(run.chunks->len, ==, n);
        for (guint i = 0; i < n; i++) {
            ChunkRec *c = &g_array_index(run.chunks, ChunkRec, i);

            g_assert_cmpuint(c->port, ==, ports[i]);
            g_assert_cmpuint(c->size, ==, sizes[i]);
            g_assert_true(c->ended);
            for (guint32 k = 0; k < sizes[i]; k++)
                g_assert_cmpuint(c->payload->data[k], ==, (guint8)(i * 31 + k));
        }
        run_clear(&run);
        g_free(cuts);
        g_byte_array_unref(stream);
    }
}

/* NEED_MORE answers name the open chunk; between chunks they name none. */
static void
test_need_more_piece(void)
{
    VmcChunkDecoder d;
    VmcChunkPiece piece;
    gsize consumed = 99;
    guint8 hdr[VMC_CHUNK_HEADER_SIZE];

    vmc_chunk_decoder_init(&d);
    g_assert_cmpint(vmc_chunk_decoder_next(&d, NULL, 0, 0, &piece, &consumed), ==,
                    VMC_DECODE_NEED_MORE);
    g_assert_cmpuint(consumed, ==, 0);
    g_assert_cmpuint(piece.port, ==, 0);
    g_assert_null(piece.data);
    vmc_chunk_header_encode(VMC_PORT_SERVER, 10, hdr);
    g_assert_cmpint(vmc_chunk_decoder_next(&d, hdr, 5, 0, &piece, &consumed), ==,
                    VMC_DECODE_NEED_MORE);
    g_assert_cmpuint(consumed, ==, 5);
    g_assert_cmpuint(piece.port, ==, 0);
    g_assert_false(vmc_chunk_decoder_at_boundary(&d));
    g_assert_cmpint(vmc_chunk_decoder_next(&d, hdr + 5, 3, 0, &piece, &consumed), ==,
                    VMC_DECODE_NEED_MORE);
    g_assert_cmpuint(consumed, ==, 3);
    g_assert_cmpuint(piece.port, ==, VMC_PORT_SERVER);
    g_assert_cmpuint(piece.chunk_size, ==, 10);
    g_assert_cmpuint(piece.len, ==, 0);
    g_assert_false(piece.chunk_start);
    g_assert_false(vmc_chunk_decoder_at_boundary(&d));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("VDIChunkHeader stream decoder and chunk encoders");

    for (guint i = 0; i < G_N_ELEMENTS(chunk_vectors); i++) {
        const ChunkVector *v = &chunk_vectors[i];
        gchar *path = g_strdup_printf("/protocol/chunk/vector/%s", v->name);

        g_test_add_data_func(path, v, test_vector);
        g_free(path);
        if (v->end == VMC_DECODE_OK) {
            path = g_strdup_printf("/protocol/chunk/prefix/%s", v->name);
            g_test_add_data_func(path, v, test_prefixes);
            g_free(path);
        }
    }
    g_test_add_func("/protocol/chunk/bad-port-sticky", test_bad_port_sticky);
    g_test_add_func("/protocol/chunk/huge-chunk-streams", test_huge_chunk_streams);
    g_test_add_func("/protocol/chunk/size-max", test_max_size_chunk);
    g_test_add_func("/protocol/chunk/max-piece", test_max_piece_split);
    g_test_add_func("/protocol/chunk/need-more-piece", test_need_more_piece);
    g_test_add_func("/protocol/chunk/random-streams", test_random_streams);
    g_test_add_func("/protocol/chunk/encode/header", test_header_encode);
    g_test_add_func("/protocol/chunk/encode/limits", test_encode_limits);
    g_test_add_func("/protocol/chunk/encode/split-size", test_split_size);
    g_test_add_func("/protocol/chunk/encode/split-roundtrip", test_split_roundtrip);
    g_test_add_func("/protocol/chunk/encode/random-roundtrip", test_random_roundtrip);
    return g_test_run();
}
