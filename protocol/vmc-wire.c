/* vmc-wire.c — decode result names and bounded readers/writers. */
#include "vmc-wire.h"

#include <string.h>

const char *
vmc_decode_result_to_string(VmcDecodeResult result)
{
    switch (result) {
    case VMC_DECODE_OK:
        return "ok";
    case VMC_DECODE_NEED_MORE:
        return "need more data";
    case VMC_DECODE_ERR_MAGIC:
        return "bad magic";
    case VMC_DECODE_ERR_VERSION:
        return "unsupported version";
    case VMC_DECODE_ERR_SIZE:
        return "size out of range";
    case VMC_DECODE_ERR_CAPS:
        return "inconsistent capabilities";
    case VMC_DECODE_ERR_TOO_LARGE:
        return "too large";
    case VMC_DECODE_ERR_TRUNCATED:
        return "truncated";
    case VMC_DECODE_ERR_PORT:
        return "bad port";
    case VMC_DECODE_ERR_PROTOCOL:
        return "bad agent protocol";
    case VMC_DECODE_ERR_BOUNDARY:
        return "message boundary violated";
    case VMC_DECODE_ERR_TYPE:
        return "unknown type";
    case VMC_DECODE_ERR_INVALID:
        return "invalid";
    }
    return "unknown result";
}

void
vmc_reader_init(VmcReader *r, const guint8 *data, gsize len)
{
    r->data = data;
    r->len = data ? len : 0;
    r->off = 0;
    r->overrun = FALSE;
}

gsize
vmc_reader_remaining(const VmcReader *r)
{
    return r->overrun ? 0 : r->len - r->off;
}

static gboolean
reader_take(VmcReader *r, gsize n, const guint8 **p)
{
    if (r->overrun || n > r->len - r->off) {
        r->overrun = TRUE;
        return FALSE;
    }
    *p = r->data + r->off;
    r->off += n;
    return TRUE;
}

gboolean
vmc_reader_u8(VmcReader *r, guint8 *out)
{
    const guint8 *p;

    if (!reader_take(r, 1, &p))
        return FALSE;
    *out = p[0];
    return TRUE;
}

gboolean
vmc_reader_u16(VmcReader *r, guint16 *out)
{
    const guint8 *p;

    if (!reader_take(r, 2, &p))
        return FALSE;
    *out = vmc_get_u16le(p);
    return TRUE;
}

gboolean
vmc_reader_u32(VmcReader *r, guint32 *out)
{
    const guint8 *p;

    if (!reader_take(r, 4, &p))
        return FALSE;
    *out = vmc_get_u32le(p);
    return TRUE;
}

gboolean
vmc_reader_u64(VmcReader *r, guint64 *out)
{
    const guint8 *p;

    if (!reader_take(r, 8, &p))
        return FALSE;
    *out = vmc_get_u64le(p);
    return TRUE;
}

gboolean
vmc_reader_bytes(VmcReader *r, guint8 *out, gsize n)
{
    const guint8 *p;

    if (!reader_take(r, n, &p))
        return FALSE;
    if (out && n)
        memcpy(out, p, n);
    return TRUE;
}

gboolean
vmc_reader_borrow(VmcReader *r, const guint8 **out, gsize n)
{
    return reader_take(r, n, out);
}

void
vmc_writer_init(VmcWriter *w, guint8 *data, gsize cap)
{
    w->data = data;
    w->cap = data ? cap : 0;
    w->off = 0;
    w->overflow = FALSE;
}

static guint8 *
writer_take(VmcWriter *w, gsize n)
{
    guint8 *p;

    if (w->overflow || n > w->cap - w->off) {
        w->overflow = TRUE;
        return NULL;
    }
    p = w->data + w->off;
    w->off += n;
    return p;
}

void
vmc_writer_u8(VmcWriter *w, guint8 v)
{
    guint8 *p = writer_take(w, 1);

    if (p)
        p[0] = v;
}

void
vmc_writer_u16(VmcWriter *w, guint16 v)
{
    guint8 *p = writer_take(w, 2);

    if (p)
        vmc_put_u16le(p, v);
}

void
vmc_writer_u32(VmcWriter *w, guint32 v)
{
    guint8 *p = writer_take(w, 4);

    if (p)
        vmc_put_u32le(p, v);
}

void
vmc_writer_u64(VmcWriter *w, guint64 v)
{
    guint8 *p = writer_take(w, 8);

    if (p)
        vmc_put_u64le(p, v);
}

void
vmc_writer_bytes(VmcWriter *w, const void *data, gsize n)
{
    guint8 *p = writer_take(w, n);

    if (p && n)
        memcpy(p, data, n);
}

void
vmc_writer_zeros(VmcWriter *w, gsize n)
{
    guint8 *p = writer_take(w, n);

    if (p && n)
        memset(p, 0, n);
}

gsize
vmc_writer_finish(const VmcWriter *w)
{
    return w->overflow ? 0 : w->off;
}
