/* vmc-wire.h — decode results and bounded little-endian readers/writers.
 *
 * Everything on the SPICE wire and on the guest port is little-endian. Bytes are
 * read with explicit shifts, never through a struct cast. A VmcReader never reads
 * past what it was given: once a read would overrun, the reader is marked and every
 * later read fails too, so a decoder may read a whole fixed layout and check once.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
    VMC_DECODE_OK = 0,
    VMC_DECODE_NEED_MORE,      /* not an error: give me more bytes */
    VMC_DECODE_ERR_MAGIC,      /* link magic is not "REDQ" */
    VMC_DECODE_ERR_VERSION,    /* link major version is not 2 */
    VMC_DECODE_ERR_SIZE,       /* a size field is out of its allowed range */
    VMC_DECODE_ERR_CAPS,       /* capability counts or offset are inconsistent */
    VMC_DECODE_ERR_TOO_LARGE,  /* a message or piece exceeds its cap */
    VMC_DECODE_ERR_TRUNCATED,  /* a complete message is shorter than its layout */
    VMC_DECODE_ERR_PORT,       /* VDI chunk port is not 1 or 2 */
    VMC_DECODE_ERR_PROTOCOL,   /* VDAgentMessage.protocol != 1 */
    VMC_DECODE_ERR_BOUNDARY,   /* bytes of two agent messages in one unit, or a split header */
    VMC_DECODE_ERR_TYPE,       /* unknown message type where the type must be known */
    VMC_DECODE_ERR_INVALID,    /* any other malformed content */
} VmcDecodeResult;

const char *vmc_decode_result_to_string(VmcDecodeResult result);

static inline guint16
vmc_get_u16le(const guint8 *p)
{
    return (guint16)(p[0] | ((guint16)p[1] << 8));
}

static inline guint32
vmc_get_u32le(const guint8 *p)
{
    return (guint32)p[0] | ((guint32)p[1] << 8) | ((guint32)p[2] << 16) | ((guint32)p[3] << 24);
}

static inline guint64
vmc_get_u64le(const guint8 *p)
{
    return (guint64)vmc_get_u32le(p) | ((guint64)vmc_get_u32le(p + 4) << 32);
}

static inline void
vmc_put_u16le(guint8 *p, guint16 v)
{
    p[0] = (guint8)v;
    p[1] = (guint8)(v >> 8);
}

static inline void
vmc_put_u32le(guint8 *p, guint32 v)
{
    p[0] = (guint8)v;
    p[1] = (guint8)(v >> 8);
    p[2] = (guint8)(v >> 16);
    p[3] = (guint8)(v >> 24);
}

static inline void
vmc_put_u64le(guint8 *p, guint64 v)
{
    vmc_put_u32le(p, (guint32)v);
    vmc_put_u32le(p + 4, (guint32)(v >> 32));
}

/* A bounded reader over borrowed bytes. */
typedef struct {
    const guint8 *data;
    gsize len;
    gsize off;
    gboolean overrun;
} VmcReader;

void vmc_reader_init(VmcReader *r, const guint8 *data, gsize len);
gsize vmc_reader_remaining(const VmcReader *r);
gboolean vmc_reader_u8(VmcReader *r, guint8 *out);
gboolean vmc_reader_u16(VmcReader *r, guint16 *out);
gboolean vmc_reader_u32(VmcReader *r, guint32 *out);
gboolean vmc_reader_u64(VmcReader *r, guint64 *out);
/* Copies n bytes into out (which may be NULL to skip them). */
gboolean vmc_reader_bytes(VmcReader *r, guint8 *out, gsize n);
/* Borrows n bytes in place; *out points into the reader's data. */
gboolean vmc_reader_borrow(VmcReader *r, const guint8 **out, gsize n);

/* A bounded writer into caller storage. Writes past the capacity set `overflow`
 * and are dropped; check once at the end. */
typedef struct {
    guint8 *data;
    gsize cap;
    gsize off;
    gboolean overflow;
} VmcWriter;

void vmc_writer_init(VmcWriter *w, guint8 *data, gsize cap);
void vmc_writer_u8(VmcWriter *w, guint8 v);
void vmc_writer_u16(VmcWriter *w, guint16 v);
void vmc_writer_u32(VmcWriter *w, guint32 v);
void vmc_writer_u64(VmcWriter *w, guint64 v);
void vmc_writer_bytes(VmcWriter *w, const void *data, gsize n);
void vmc_writer_zeros(VmcWriter *w, gsize n);
/* Bytes written so far, or 0 if the writer overflowed. */
gsize vmc_writer_finish(const VmcWriter *w);

/* Capability bit helpers over arrays of u32 words (bit n is bit n%32 of word n/32). */
static inline gboolean
vmc_caps_test(const guint32 *words, gsize nwords, guint cap)
{
    return cap / 32 < nwords && (words[cap / 32] >> (cap % 32)) & 1u;
}

static inline void
vmc_caps_set(guint32 *words, gsize nwords, guint cap)
{
    if (cap / 32 < nwords)
        words[cap / 32] |= 1u << (cap % 32);
}

static inline void
vmc_caps_clear(guint32 *words, gsize nwords, guint cap)
{
    if (cap / 32 < nwords)
        words[cap / 32] &= ~(1u << (cap % 32));
}

G_END_DECLS
