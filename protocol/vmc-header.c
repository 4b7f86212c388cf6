/* vmc-header.c — SPICE data headers: SpiceMiniDataHeader {u16 type; u32 size}
 * and SpiceDataHeader {u64 serial; u16 type; u32 size; u32 sub_list}. */
#include "vmc-header.h"

/**
 * vmc_data_header_decode:
 * @buf: (array length=len): bytes received so far (borrowed)
 * @mini: TRUE for the 6-byte mini header, FALSE for the 18-byte full one
 * @out: (out caller-allocates): the header; serial and sub_list are 0 for mini
 * @consumed: (out) (optional): 6 or 18 on success
 *
 * Prefix decoder: NEED_MORE while the header is incomplete, otherwise OK.
 * Any type and size are accepted here; vmc_main_client_msg_check() applies the
 * per-type limits.
 */
VmcDecodeResult
vmc_data_header_decode(const guint8 *buf, gsize len, gboolean mini, VmcDataHeader *out,
                       gsize *consumed)
{
    VmcDataHeader h = { 0 };
    gsize need = vmc_data_header_size(mini);

    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < need)
        return VMC_DECODE_NEED_MORE;

    if (mini) {
        h.type = vmc_get_u16le(buf);
        h.size = vmc_get_u32le(buf + 2);
    } else {
        h.serial = vmc_get_u64le(buf);
        h.type = vmc_get_u16le(buf + 8);
        h.size = vmc_get_u32le(buf + 10);
        h.sub_list = vmc_get_u32le(buf + 14);
    }

    *out = h;
    if (consumed)
        *consumed = need;
    return VMC_DECODE_OK;
}

/**
 * vmc_data_header_encode:
 * @h: the header; serial and sub_list are not written in mini form
 * @out: (out caller-allocates): at least vmc_data_header_size(@mini) bytes
 *
 * Returns: the bytes written, 6 or 18
 */
gsize
vmc_data_header_encode(const VmcDataHeader *h, gboolean mini, guint8 *out)
{
    g_return_val_if_fail(h != NULL && out != NULL, 0);

    if (mini) {
        vmc_put_u16le(out, h->type);
        vmc_put_u32le(out + 2, h->size);
        return VMC_MINI_HEADER_SIZE;
    }
    vmc_put_u64le(out, h->serial);
    vmc_put_u16le(out + 8, h->type);
    vmc_put_u32le(out + 10, h->size);
    vmc_put_u32le(out + 14, h->sub_list);
    return VMC_FULL_HEADER_SIZE;
}
