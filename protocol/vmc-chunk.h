/* vmc-chunk.h — the guest port byte stream: VDIChunkHeader {u32 port; u32 size}
 * followed by `size` payload bytes, little-endian.
 *
 * The decoder is incremental: it accepts any split of the stream, reports payload
 * pieces that point into the caller's buffer (never copies payload) and holds at
 * most the 8 header bytes itself, whatever size a chunk announces.
 */
#pragma once

#include <glib.h>
#include <spice/vd_agent.h>
#include "vmc-wire.h"

G_BEGIN_DECLS

#define VMC_CHUNK_HEADER_SIZE 8u
#define VMC_CHUNK_MAX_PAYLOAD 2048u /* VD_AGENT_MAX_DATA_SIZE: what we ever write to a guest */
#define VMC_PORT_CLIENT 1u          /* VDP_CLIENT_PORT */
#define VMC_PORT_SERVER 2u          /* VDP_SERVER_PORT */

typedef struct {
    guint32 port;          /* port of the chunk this piece belongs to */
    guint32 chunk_size;    /* that chunk's announced size */
    const guint8 *data;    /* borrowed from the input buffer; NULL when len == 0 */
    gsize len;
    gboolean chunk_start;  /* first piece of its chunk */
    gboolean chunk_end;    /* last piece of its chunk */
} VmcChunkPiece;

typedef struct {
    guint8 hdr[VMC_CHUNK_HEADER_SIZE];
    guint8 hdr_have;
    gboolean in_chunk;
    gboolean started;      /* the current chunk already produced a piece */
    guint32 port;
    guint32 size;
    guint32 remaining;
    VmcDecodeResult error; /* sticky once an error was returned */
} VmcChunkDecoder;

void vmc_chunk_decoder_init(VmcChunkDecoder *d);

/* Consumes bytes of `buf` until one payload piece can be reported.
 * - OK: *piece is filled (piece->data points into buf), *consumed bytes were used.
 *   A piece is at most `max_piece` bytes (0 = no limit). A chunk of size 0 yields one
 *   piece with len 0, chunk_start and chunk_end set.
 * - NEED_MORE: all `len` bytes were consumed (*consumed == len) and no piece is ready.
 * - ERR_PORT: the chunk header's port is not 1 or 2; *consumed covers the header.
 *   The decoder stays in that error (sticky) until re-initialised.
 * `piece` and `consumed` are written on OK and NEED_MORE; `consumed` also on errors. */
VmcDecodeResult vmc_chunk_decoder_next(VmcChunkDecoder *d, const guint8 *buf, gsize len,
                                       gsize max_piece, VmcChunkPiece *piece, gsize *consumed);

/* TRUE when the decoder sits between chunks (no partial header, no chunk open). */
gboolean vmc_chunk_decoder_at_boundary(const VmcChunkDecoder *d);

/* Writes the 8-byte header. */
void vmc_chunk_header_encode(guint32 port, guint32 size, guint8 *out);

/* Writes one chunk (header + payload). Refuses (returns 0) payloads over
 * VMC_CHUNK_MAX_PAYLOAD or a `cap` under 8 + len. Returns 8 + len. */
gsize vmc_chunk_encode(guint32 port, const guint8 *payload, gsize len, guint8 *out, gsize cap);

/* Cuts `len` payload bytes (which the caller guarantees belong to one agent message)
 * into chunks of at most VMC_CHUNK_MAX_PAYLOAD bytes. Returns bytes written, or 0
 * if `cap` < vmc_chunk_split_size(len). len == 0 writes nothing and returns 0. */
gsize vmc_chunk_encode_split(guint32 port, const guint8 *payload, gsize len, guint8 *out,
                             gsize cap);
gsize vmc_chunk_split_size(gsize len);

G_END_DECLS
