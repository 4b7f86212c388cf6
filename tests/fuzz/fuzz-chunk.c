/* fuzz-chunk.c — the VDIChunkHeader stream decoder and the chunk encoders.
 *
 * Input: byte 0 chooses how the stream is sliced (low 3 bits: largest slice,
 * high bits: seed of the slice lengths), byte 1 chooses the piece limit; the rest
 * is the guest port stream. The incremental decoder, fed those slices, must agree
 * with a whole-buffer model of the framing byte for byte, and keep its invariants:
 * consumed <= len, no piece over the limit, pieces inside the slice, never more
 * than the 8 header bytes held. The stream bytes are then also split into chunks
 * with vmc_chunk_encode_split() and decoded back.
 */
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "protocol/vmc-chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    guint32 port;
    guint32 size;
    const guint8 *payload; /* inside the input */
    gsize have;            /* payload bytes present */
} ModelChunk;

typedef struct {
    ModelChunk chunks[512];
    guint n; /* chunks recorded (at most 512; the rest counted only) */
    guint total;
    gboolean error;       /* a bad port ends the stream */
    gboolean last_open;   /* the last chunk started but did not end */
    gboolean boundary;    /* the stream ends between chunks */
    gboolean header_only; /* the stream ends right after a header of size > 0 */
    gsize end;            /* bytes the decoder consumes in total */
} Model;

static void
model_parse(Model *m, const guint8 *buf, gsize len)
{
    gsize off = 0;

    memset(m, 0, sizeof(*m));
    while (len - off >= VMC_CHUNK_HEADER_SIZE) {
        guint32 port = vmc_get_u32le(buf + off);
        guint32 csize = vmc_get_u32le(buf + off + 4);
        gsize have;

        off += VMC_CHUNK_HEADER_SIZE;
        if (port != VMC_PORT_CLIENT && port != VMC_PORT_SERVER) {
            m->error = TRUE;
            m->end = off;
            return;
        }
        have = MIN((gsize)csize, len - off);
        if (csize > 0 && have == 0) {
            m->header_only = TRUE; /* a header alone gives no piece yet */
            break;
        }
        if (m->n < G_N_ELEMENTS(m->chunks))
            m->chunks[m->n++] = (ModelChunk){port, csize, buf + off, have};
        m->total++;
        m->last_open = have < csize;
        off += have;
    }
    m->end = len;
    m->boundary = off == len && !m->last_open && !m->header_only;
}

/* A small deterministic generator for slice lengths. */
static guint32
next_rand(guint32 *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static const gsize slice_limits[8] = {1, 2, 3, 7, 8, 9, 64, G_MAXSIZE};
static const gsize piece_limits[8] = {0, 1, 2, 7, 8, 2048, 2049, 4096};

typedef struct {
    const Model *m;
    guint idx;   /* model chunk the next piece belongs to (first piece: idx == seen) */
    gsize pos;   /* payload bytes of that chunk seen */
    guint seen;  /* chunks started */
    guint ended; /* chunks ended */
} Check;

static void
check_piece(Check *c, const VmcChunkPiece *piece, gsize max_piece)
{
    const ModelChunk *mc;

    g_assert(piece->port == VMC_PORT_CLIENT || piece->port == VMC_PORT_SERVER);
    g_assert(max_piece == 0 || piece->len <= max_piece);
    if (piece->chunk_start) {
        g_assert(c->seen == c->ended);
        c->idx = c->seen++;
        c->pos = 0;
    } else {
        g_assert(c->seen == c->ended + 1);
    }
    g_assert(c->seen <= c->m->total);
    if (c->idx >= c->m->n)
        return; /* beyond what the model recorded */
    mc = &c->m->chunks[c->idx];
    g_assert(piece->port == mc->port);
    g_assert(piece->chunk_size == mc->size);
    g_assert(piece->len <= mc->have - c->pos);
    if (piece->len)
        g_assert(memcmp(piece->data, mc->payload + c->pos, piece->len) == 0);
    else
        g_assert(mc->size == 0 && piece->chunk_start && piece->chunk_end);
    c->pos += piece->len;
    if (piece->chunk_end) {
        g_assert(c->pos == mc->size);
        c->ended++;
    } else {
        g_assert(c->pos < mc->size);
    }
}

static void
run_incremental(const Model *m, const guint8 *buf, gsize len, guint8 split, gsize max_piece)
{
    VmcChunkDecoder d;
    Check c = {m, 0, 0, 0, 0};
    gsize slice_max = slice_limits[split & 7];
    guint32 seed = 0x9e3779b9u ^ ((guint32)split << 8) ^ (guint32)len;
    gsize fed = 0;
    gsize total_consumed = 0;
    gboolean failed = FALSE;

    vmc_chunk_decoder_init(&d);
    while (fed < len && !failed) {
        gsize slice = slice_max == G_MAXSIZE ? len - fed : 1 + next_rand(&seed) % slice_max;
        gsize off = 0;

        slice = MIN(slice, len - fed);
        while (off < slice) {
            VmcChunkPiece piece;
            gsize consumed = G_MAXSIZE;
            VmcDecodeResult r = vmc_chunk_decoder_next(&d, buf + fed + off, slice - off, max_piece,
                                                       &piece, &consumed);

            g_assert(consumed <= slice - off);
            g_assert(d.hdr_have < VMC_CHUNK_HEADER_SIZE); /* never holds more than a header */
            total_consumed += consumed;
            if (r == VMC_DECODE_NEED_MORE) {
                g_assert(consumed == slice - off);
                g_assert(piece.len == 0 && piece.data == NULL);
                off = slice;
                break;
            }
            if (r != VMC_DECODE_OK) {
                g_assert(r == VMC_DECODE_ERR_PORT);
                g_assert(m->error);
                g_assert(!vmc_chunk_decoder_at_boundary(&d));
                g_assert(vmc_chunk_decoder_next(&d, buf, len, max_piece, &piece, &consumed) == r);
                g_assert(consumed == 0);
                failed = TRUE;
                break;
            }
            g_assert(consumed > 0);
            if (piece.len)
                g_assert(piece.data == buf + fed + off + consumed - piece.len);
            check_piece(&c, &piece, max_piece);
            off += consumed;
        }
        fed += slice;
    }
    g_assert(failed == m->error);
    g_assert(total_consumed == m->end);
    g_assert(c.seen == m->total);
    if (!failed) {
        g_assert(c.ended == m->total - (m->last_open ? 1 : 0));
        g_assert(vmc_chunk_decoder_at_boundary(&d) == m->boundary);
    }
}

/* Splits `len` bytes into chunks of at most 2048 and decodes them back. */
static void
run_encode_split(const guint8 *buf, gsize len, guint32 port)
{
    gsize need = vmc_chunk_split_size(len);
    guint8 *out;
    VmcChunkDecoder d;
    gsize off = 0;
    gsize back = 0;
    guint8 one[VMC_CHUNK_HEADER_SIZE + VMC_CHUNK_MAX_PAYLOAD + 1];

    /* single-chunk encoder: refuses over 2048 */
    g_assert(
        vmc_chunk_encode(port, buf, MIN(len, (gsize)VMC_CHUNK_MAX_PAYLOAD + 1), one, sizeof(one)) ==
        (len > VMC_CHUNK_MAX_PAYLOAD ? 0 : VMC_CHUNK_HEADER_SIZE + len));

    if (len == 0) {
        g_assert(need == 0);
        return;
    }
    out = g_malloc(need);
    g_assert(vmc_chunk_encode_split(port, buf, len, out, need - 1) == 0);
    g_assert(vmc_chunk_encode_split(port, buf, len, out, need) == need);
    vmc_chunk_decoder_init(&d);
    while (off < need) {
        VmcChunkPiece piece;
        gsize consumed;

        g_assert(vmc_chunk_decoder_next(&d, out + off, need - off, 0, &piece, &consumed) ==
                 VMC_DECODE_OK);
        g_assert(piece.chunk_start && piece.chunk_end);
        g_assert(piece.port == port);
        g_assert(piece.chunk_size > 0 && piece.chunk_size <= VMC_CHUNK_MAX_PAYLOAD);
        g_assert(piece.len <= len - back);
        g_assert(memcmp(piece.data, buf + back, piece.len) == 0);
        back += piece.len;
        off += consumed;
    }
    g_assert(back == len);
    g_assert(vmc_chunk_decoder_at_boundary(&d));
    g_free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Model *m;
    guint8 split, piece_sel;
    const guint8 *buf;
    gsize len;

    if (size < 2)
        return 0;
    split = data[0];
    piece_sel = data[1];
    buf = data + 2;
    len = size - 2;

    m = g_new(Model, 1);
    model_parse(m, buf, len);
    run_incremental(m, buf, len, split, piece_limits[piece_sel & 7]);
    /* the same bytes, whole, with no piece limit */
    run_incremental(m, buf, len, 7, 0);
    g_free(m);

    run_encode_split(buf, len, (piece_sel & 8) ? VMC_PORT_SERVER : VMC_PORT_CLIENT);
    return 0;
}
