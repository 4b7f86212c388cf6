/* vmc-chunk.c — the guest port byte stream: VDIChunkHeader framing.
 *
 * Decoding is incremental and copy-free: the only bytes the decoder ever keeps are
 * the (at most 8) bytes of a chunk header that arrived split. Payload is reported
 * as pieces pointing into the caller's buffer, so a chunk that announces
 * 0xFFFFFFFF bytes costs nothing more than one that announces 8.
 */
#include "vmc-chunk.h"

#include <string.h>

/**
 * vmc_chunk_decoder_init:
 * @d: (out caller-allocates): the decoder
 *
 * Puts @d between chunks, with no error. Also the way out of a sticky error.
 */
void
vmc_chunk_decoder_init(VmcChunkDecoder *d)
{
    g_return_if_fail(d != NULL);

    memset(d, 0, sizeof(*d));
    d->error = VMC_DECODE_OK;
}

static gboolean
port_is_valid(guint32 port)
{
    return port == VMC_PORT_CLIENT || port == VMC_PORT_SERVER;
}

/* An empty piece for NEED_MORE answers: it names the open chunk, if any. */
static void
piece_set_empty(const VmcChunkDecoder *d, VmcChunkPiece *piece)
{
    piece->port = d->in_chunk ? d->port : 0;
    piece->chunk_size = d->in_chunk ? d->size : 0;
    piece->data = NULL;
    piece->len = 0;
    piece->chunk_start = FALSE;
    piece->chunk_end = FALSE;
}

/**
 * vmc_chunk_decoder_next:
 * @d: the decoder
 * @buf: (array length=len) (transfer none): the next bytes of the stream; may be
 *   %NULL when @len is 0
 * @len: number of bytes in @buf
 * @max_piece: largest piece to report, 0 for no limit
 * @piece: (out caller-allocates): the piece; its data points into @buf
 * @consumed: (out): how many bytes of @buf were used
 *
 * See vmc-chunk.h. On a sticky error the call consumes nothing and returns the
 * same error again.
 *
 * Returns: %VMC_DECODE_OK, %VMC_DECODE_NEED_MORE or %VMC_DECODE_ERR_PORT
 */
VmcDecodeResult
vmc_chunk_decoder_next(VmcChunkDecoder *d, const guint8 *buf, gsize len, gsize max_piece,
                       VmcChunkPiece *piece, gsize *consumed)
{
    gsize off = 0;
    gsize n;

    g_return_val_if_fail(d != NULL, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(piece != NULL, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(consumed != NULL, VMC_DECODE_ERR_INVALID);

    if (d->error != VMC_DECODE_OK) {
        *consumed = 0;
        return d->error;
    }

    if (!d->in_chunk) {
        g_assert(d->hdr_have < VMC_CHUNK_HEADER_SIZE);
        n = MIN((gsize)(VMC_CHUNK_HEADER_SIZE - d->hdr_have), len);
        if (n > 0)
            memcpy(d->hdr + d->hdr_have, buf, n);
        d->hdr_have += (guint8)n;
        off = n;
        if (d->hdr_have < VMC_CHUNK_HEADER_SIZE) {
            piece_set_empty(d, piece);
            *consumed = off;
            return VMC_DECODE_NEED_MORE;
        }

        d->hdr_have = 0;
        d->port = vmc_get_u32le(d->hdr);
        d->size = vmc_get_u32le(d->hdr + 4);
        if (!port_is_valid(d->port)) {
            /* d->port and d->size keep the offending header for the caller's log. */
            d->error = VMC_DECODE_ERR_PORT;
            *consumed = off;
            return d->error;
        }
        d->in_chunk = TRUE;
        d->started = FALSE;
        d->remaining = d->size;

        if (d->size == 0) {
            /* An empty chunk is one empty piece that both starts and ends it. */
            piece->port = d->port;
            piece->chunk_size = 0;
            piece->data = NULL;
            piece->len = 0;
            piece->chunk_start = TRUE;
            piece->chunk_end = TRUE;
            d->in_chunk = FALSE;
            *consumed = off;
            return VMC_DECODE_OK;
        }
    }

    g_assert(d->remaining > 0);
    n = MIN((gsize)d->remaining, len - off);
    if (max_piece > 0)
        n = MIN(n, max_piece);
    if (n == 0) {
        piece_set_empty(d, piece);
        *consumed = len;
        return VMC_DECODE_NEED_MORE;
    }

    piece->port = d->port;
    piece->chunk_size = d->size;
    piece->data = buf + off;
    piece->len = n;
    piece->chunk_start = !d->started;
    d->started = TRUE;
    d->remaining -= (guint32)n;
    piece->chunk_end = d->remaining == 0;
    if (d->remaining == 0)
        d->in_chunk = FALSE;
    *consumed = off + n;
    return VMC_DECODE_OK;
}

/**
 * vmc_chunk_decoder_at_boundary:
 * @d: the decoder
 *
 * Returns: %TRUE between chunks; %FALSE inside a header or a chunk, and also
 *   after an error (a broken stream has no boundary to resume from)
 */
gboolean
vmc_chunk_decoder_at_boundary(const VmcChunkDecoder *d)
{
    g_return_val_if_fail(d != NULL, FALSE);

    return d->error == VMC_DECODE_OK && !d->in_chunk && d->hdr_have == 0;
}

/**
 * vmc_chunk_header_encode:
 * @port: VDI port
 * @size: payload bytes that follow
 * @out: (out caller-allocates) (array fixed-size=8): where the header goes
 */
void
vmc_chunk_header_encode(guint32 port, guint32 size, guint8 *out)
{
    g_return_if_fail(out != NULL);

    vmc_put_u32le(out, port);
    vmc_put_u32le(out + 4, size);
}

/**
 * vmc_chunk_encode:
 * @port: VDI port
 * @payload: (array length=len) (transfer none) (nullable): the payload
 * @len: payload length, at most %VMC_CHUNK_MAX_PAYLOAD
 * @out: (out caller-allocates) (array length=cap): destination
 * @cap: room in @out
 *
 * Returns: 8 + @len, or 0 (nothing written) when @len is over the limit or @cap
 *   is too small
 */
gsize
vmc_chunk_encode(guint32 port, const guint8 *payload, gsize len, guint8 *out, gsize cap)
{
    g_return_val_if_fail(payload != NULL || len == 0, 0);
    g_return_val_if_fail(out != NULL || cap == 0, 0);

    if (len > VMC_CHUNK_MAX_PAYLOAD)
        return 0;
    if (cap < VMC_CHUNK_HEADER_SIZE || len > cap - VMC_CHUNK_HEADER_SIZE)
        return 0;
    vmc_chunk_header_encode(port, (guint32)len, out);
    if (len > 0)
        memcpy(out + VMC_CHUNK_HEADER_SIZE, payload, len);
    return VMC_CHUNK_HEADER_SIZE + len;
}

/**
 * vmc_chunk_split_size:
 * @len: payload bytes
 *
 * Returns: bytes vmc_chunk_encode_split() writes for @len payload bytes: @len plus
 *   8 per started 2048-byte chunk; 0 for @len 0 and when the total would not fit
 *   a #gsize
 */
gsize
vmc_chunk_split_size(gsize len)
{
    gsize chunks = len / VMC_CHUNK_MAX_PAYLOAD + (len % VMC_CHUNK_MAX_PAYLOAD != 0);
    gsize headers = chunks * VMC_CHUNK_HEADER_SIZE; /* chunks <= G_MAXSIZE / 2048 */

    if (headers > G_MAXSIZE - len)
        return 0;
    return len + headers;
}

/**
 * vmc_chunk_encode_split:
 * @port: VDI port
 * @payload: (array length=len) (transfer none) (nullable): bytes of one agent message
 * @len: their number
 * @out: (out caller-allocates) (array length=cap): destination
 * @cap: room in @out
 *
 * Returns: vmc_chunk_split_size(@len) on success, 0 (nothing written) if @cap is
 *   smaller or @len is 0
 */
gsize
vmc_chunk_encode_split(guint32 port, const guint8 *payload, gsize len, guint8 *out, gsize cap)
{
    gsize need = vmc_chunk_split_size(len);
    gsize in_off = 0;
    gsize out_off = 0;

    g_return_val_if_fail(payload != NULL || len == 0, 0);
    g_return_val_if_fail(out != NULL || cap == 0, 0);

    if (need == 0 || cap < need)
        return 0;
    while (in_off < len) {
        gsize n = MIN(len - in_off, (gsize)VMC_CHUNK_MAX_PAYLOAD);
        gsize w = vmc_chunk_encode(port, payload + in_off, n, out + out_off, cap - out_off);

        g_assert(w == VMC_CHUNK_HEADER_SIZE + n);
        in_off += n;
        out_off += w;
    }
    g_assert(out_off == need);
    return out_off;
}
