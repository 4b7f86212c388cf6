/* vmc-link.c — the SPICE link handshake codec.
 *
 * Validation follows libspice-server's order (agent-protocol.md §1.3): magic,
 * major version, header size bounds, then in the link message the caps counts
 * and the caps_offset. Every check compares against what remains and is done
 * in 64-bit arithmetic before anything is indexed.
 */
#include "vmc-link.h"

#include <string.h>

/* ---- link header ---- */

/**
 * vmc_link_header_decode:
 * @buf: (array length=len): bytes received so far (borrowed)
 * @len: number of bytes in @buf
 * @check_size: whether to enforce VMC_LINK_MIN_SIZE..VMC_LINK_MAX_SIZE
 * @out: (out caller-allocates): the decoded header
 * @consumed: (out): VMC_LINK_HEADER_SIZE on success
 *
 * Prefix decoder: NEED_MORE while fewer than 16 bytes are given, except that a
 * wrong magic is reported as soon as its four bytes are there (the reference
 * reads the magic on its own and answers before the rest of the header
 * arrives). *out is written on OK and on ERR_VERSION (so the caller can tell
 * major 0, which gets no reply, from the rest); *consumed only on OK.
 */
VmcDecodeResult
vmc_link_header_decode(const guint8 *buf, gsize len, gboolean check_size, VmcLinkHeader *out,
                       gsize *consumed)
{
    VmcLinkHeader h;

    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len >= 4 && vmc_get_u32le(buf) != VMC_LINK_MAGIC)
        return VMC_DECODE_ERR_MAGIC;
    if (len < VMC_LINK_HEADER_SIZE)
        return VMC_DECODE_NEED_MORE;

    h.magic = vmc_get_u32le(buf);
    h.major_version = vmc_get_u32le(buf + 4);
    h.minor_version = vmc_get_u32le(buf + 8);
    h.size = vmc_get_u32le(buf + 12);

    if (h.major_version != VMC_LINK_VERSION_MAJOR) {
        *out = h;
        return VMC_DECODE_ERR_VERSION;
    }
    if (check_size && (h.size < VMC_LINK_MIN_SIZE || h.size > VMC_LINK_MAX_SIZE))
        return VMC_DECODE_ERR_SIZE;

    *out = h;
    if (consumed)
        *consumed = VMC_LINK_HEADER_SIZE;
    return VMC_DECODE_OK;
}

/**
 * vmc_link_header_encode:
 * @h: the header; every field is written as given
 * @out: (out caller-allocates) (array fixed-size=16): destination
 */
void
vmc_link_header_encode(const VmcLinkHeader *h, guint8 *out)
{
    g_return_if_fail(h != NULL && out != NULL);

    vmc_put_u32le(out, h->magic);
    vmc_put_u32le(out + 4, h->major_version);
    vmc_put_u32le(out + 8, h->minor_version);
    vmc_put_u32le(out + 12, h->size);
}

/* ---- caps arrays shared by SpiceLinkMess and SpiceLinkReply ---- */

/* Checks the caps counts and offset of a link message or reply whose fixed part
 * is `fixed` bytes and whose total length is `len`, and copies up to
 * VMC_LINK_CAPS_KEEP words of each array. The reference's rule: each count
 * <= 1024; when there is at least one word, caps_offset >= fixed and
 * caps_offset + 4 * total <= len. With no caps the offset is not looked at. */
static VmcDecodeResult
read_caps(const guint8 *buf, gsize len, gsize fixed, guint32 ncommon, guint32 nchannel,
          guint32 caps_offset, guint32 *common, guint32 *channel)
{
    guint64 total;

    if (ncommon > VMC_LINK_MAX_CAPS || nchannel > VMC_LINK_MAX_CAPS)
        return VMC_DECODE_ERR_CAPS;
    total = (guint64)ncommon + nchannel; /* <= 2048, no overflow */
    memset(common, 0, VMC_LINK_CAPS_KEEP * sizeof(guint32));
    memset(channel, 0, VMC_LINK_CAPS_KEEP * sizeof(guint32));
    if (total == 0)
        return VMC_DECODE_OK;
    if (caps_offset < fixed)
        return VMC_DECODE_ERR_CAPS;
    if (caps_offset > len || total * 4 > len - caps_offset)
        return VMC_DECODE_ERR_CAPS;

    for (guint32 i = 0; i < ncommon && i < VMC_LINK_CAPS_KEEP; i++)
        common[i] = vmc_get_u32le(buf + caps_offset + 4 * (gsize)i);
    for (guint32 i = 0; i < nchannel && i < VMC_LINK_CAPS_KEEP; i++)
        channel[i] = vmc_get_u32le(buf + caps_offset + 4 * ((gsize)ncommon + i));
    return VMC_DECODE_OK;
}

/* Total bytes of `fixed` + 4 * (ncommon + nchannel), or 0 if it would not fit
 * in a guint32 wire size. */
static guint64
caps_total_size(gsize fixed, guint32 ncommon, guint32 nchannel)
{
    guint64 total = (guint64)fixed + 4 * ((guint64)ncommon + nchannel);

    return total > G_MAXUINT32 ? 0 : total;
}

static void
write_caps(VmcWriter *w, const guint32 *common, guint32 ncommon, const guint32 *channel,
           guint32 nchannel)
{
    for (guint32 i = 0; i < ncommon; i++)
        vmc_writer_u32(w, common[i]);
    for (guint32 i = 0; i < nchannel; i++)
        vmc_writer_u32(w, channel[i]);
}

/* ---- SpiceLinkMess ---- */

/**
 * vmc_link_mess_decode:
 * @buf: (array length=len): the whole link message (borrowed)
 * @len: its length, i.e. the link header's size field
 * @out: (out caller-allocates): the decoded message
 * @consumed: (out) (optional): @len on success
 *
 * NEED_MORE when @len < 18. Because @len is the message's declared size, a
 * message of 18 bytes or more whose caps do not fit is ERR_CAPS, not NEED_MORE.
 * @len itself is not bounded here; vmc_link_header_decode() does that.
 */
VmcDecodeResult
vmc_link_mess_decode(const guint8 *buf, gsize len, VmcLinkMess *out, gsize *consumed)
{
    VmcLinkMess m;
    VmcDecodeResult res;

    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < VMC_LINK_MESS_SIZE)
        return VMC_DECODE_NEED_MORE;

    m.connection_id = vmc_get_u32le(buf);
    m.channel_type = buf[4];
    m.channel_id = buf[5];
    m.num_common_caps = vmc_get_u32le(buf + 6);
    m.num_channel_caps = vmc_get_u32le(buf + 10);
    m.caps_offset = vmc_get_u32le(buf + 14);

    res = read_caps(buf, len, VMC_LINK_MESS_SIZE, m.num_common_caps, m.num_channel_caps,
                    m.caps_offset, m.common_caps, m.channel_caps);
    if (res != VMC_DECODE_OK)
        return res;

    *out = m;
    if (consumed)
        *consumed = len;
    return VMC_DECODE_OK;
}

/**
 * vmc_link_mess_encode:
 * @m: connection_id, channel_type and channel_id are taken from it; its caps
 *   counts, offset and arrays are ignored in favour of the arguments
 * @common_caps: (array length=ncommon) (nullable): common caps words
 * @channel_caps: (array length=nchannel) (nullable): channel caps words
 * @out: (out caller-allocates) (array length=cap): destination
 *
 * Writes the 18-byte fixed part with caps_offset 18, then the caps words.
 * Returns: the bytes written, or 0 if @cap is too small.
 */
gsize
vmc_link_mess_encode(const VmcLinkMess *m, const guint32 *common_caps, guint32 ncommon,
                     const guint32 *channel_caps, guint32 nchannel, guint8 *out, gsize cap)
{
    VmcWriter w;
    guint64 total;

    g_return_val_if_fail(m != NULL, 0);
    g_return_val_if_fail(common_caps != NULL || ncommon == 0, 0);
    g_return_val_if_fail(channel_caps != NULL || nchannel == 0, 0);

    total = caps_total_size(VMC_LINK_MESS_SIZE, ncommon, nchannel);
    if (total == 0 || total > cap || out == NULL)
        return 0;

    vmc_writer_init(&w, out, cap);
    vmc_writer_u32(&w, m->connection_id);
    vmc_writer_u8(&w, m->channel_type);
    vmc_writer_u8(&w, m->channel_id);
    vmc_writer_u32(&w, ncommon);
    vmc_writer_u32(&w, nchannel);
    vmc_writer_u32(&w, VMC_LINK_MESS_SIZE);
    write_caps(&w, common_caps, ncommon, channel_caps, nchannel);
    return vmc_writer_finish(&w);
}

/* ---- SpiceLinkReply ---- */

/**
 * vmc_link_reply_decode:
 * @buf: (array length=len): the whole reply (borrowed), after its link header
 * @len: its length, i.e. the reply header's size field
 * @out: (out caller-allocates): the decoded reply
 * @consumed: (out) (optional): @len on success
 *
 * NEED_MORE when @len < 178; the caps follow the same rules as in a link
 * message, with 178 as the smallest caps_offset. The error field is not
 * interpreted: a link error decodes as OK with out->error set.
 */
VmcDecodeResult
vmc_link_reply_decode(const guint8 *buf, gsize len, VmcLinkReply *out, gsize *consumed)
{
    VmcLinkReply r;
    VmcDecodeResult res;

    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < VMC_LINK_REPLY_SIZE)
        return VMC_DECODE_NEED_MORE;

    r.error = vmc_get_u32le(buf);
    memcpy(r.pub_key, buf + 4, VMC_TICKET_PUBKEY_BYTES);
    r.num_common_caps = vmc_get_u32le(buf + 4 + VMC_TICKET_PUBKEY_BYTES);
    r.num_channel_caps = vmc_get_u32le(buf + 8 + VMC_TICKET_PUBKEY_BYTES);
    r.caps_offset = vmc_get_u32le(buf + 12 + VMC_TICKET_PUBKEY_BYTES);

    res = read_caps(buf, len, VMC_LINK_REPLY_SIZE, r.num_common_caps, r.num_channel_caps,
                    r.caps_offset, r.common_caps, r.channel_caps);
    if (res != VMC_DECODE_OK)
        return res;

    *out = r;
    if (consumed)
        *consumed = len;
    return VMC_DECODE_OK;
}

/**
 * vmc_link_reply_encode:
 * @r: error and pub_key are taken from it; its caps fields are ignored in
 *   favour of the arguments
 * @out: (out caller-allocates) (array length=cap): destination
 *
 * Writes a link header (REDQ, 2.2, size 178 + 4 * (ncommon + nchannel)), the
 * reply with caps_offset 178, then the caps words.
 * Returns: the bytes written, or 0 if @cap is too small.
 */
gsize
vmc_link_reply_encode(const VmcLinkReply *r, const guint32 *common_caps, guint32 ncommon,
                      const guint32 *channel_caps, guint32 nchannel, guint8 *out, gsize cap)
{
    VmcLinkHeader h;
    VmcWriter w;
    guint64 body;

    g_return_val_if_fail(r != NULL, 0);
    g_return_val_if_fail(common_caps != NULL || ncommon == 0, 0);
    g_return_val_if_fail(channel_caps != NULL || nchannel == 0, 0);

    body = caps_total_size(VMC_LINK_REPLY_SIZE, ncommon, nchannel);
    if (body == 0 || body > G_MAXUINT32 - VMC_LINK_HEADER_SIZE || out == NULL ||
        cap < VMC_LINK_HEADER_SIZE || body > cap - VMC_LINK_HEADER_SIZE)
        return 0;

    h.magic = VMC_LINK_MAGIC;
    h.major_version = VMC_LINK_VERSION_MAJOR;
    h.minor_version = VMC_LINK_VERSION_MINOR;
    h.size = (guint32)body;
    vmc_link_header_encode(&h, out);

    vmc_writer_init(&w, out + VMC_LINK_HEADER_SIZE, cap - VMC_LINK_HEADER_SIZE);
    vmc_writer_u32(&w, r->error);
    vmc_writer_bytes(&w, r->pub_key, VMC_TICKET_PUBKEY_BYTES);
    vmc_writer_u32(&w, ncommon);
    vmc_writer_u32(&w, nchannel);
    vmc_writer_u32(&w, VMC_LINK_REPLY_SIZE);
    write_caps(&w, common_caps, ncommon, channel_caps, nchannel);
    if (vmc_writer_finish(&w) == 0)
        return 0;
    return VMC_LINK_HEADER_SIZE + vmc_writer_finish(&w);
}

/**
 * vmc_link_error_encode:
 * @error: a SPICE_LINK_ERR_* code
 * @out: (out caller-allocates) (array fixed-size=194): destination
 *
 * The reference's link error: header 2.2 with size 178 and a reply that is all
 * zeros except @error (no caps, caps_offset 0).
 */
void
vmc_link_error_encode(guint32 error, guint8 *out)
{
    VmcLinkHeader h = {
        .magic = VMC_LINK_MAGIC,
        .major_version = VMC_LINK_VERSION_MAJOR,
        .minor_version = VMC_LINK_VERSION_MINOR,
        .size = VMC_LINK_REPLY_SIZE,
    };

    g_return_if_fail(out != NULL);

    vmc_link_header_encode(&h, out);
    memset(out + VMC_LINK_HEADER_SIZE, 0, VMC_LINK_REPLY_SIZE);
    vmc_put_u32le(out + VMC_LINK_HEADER_SIZE, error);
}

/* ---- 4-byte words ---- */

/**
 * vmc_link_u32_decode:
 * @out: (out): the word
 * @consumed: (out) (optional): 4 on success
 *
 * Prefix decoder for the auth mechanism and the link result: NEED_MORE below 4
 * bytes, otherwise OK. The value is not interpreted.
 */
VmcDecodeResult
vmc_link_u32_decode(const guint8 *buf, gsize len, guint32 *out, gsize *consumed)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < 4)
        return VMC_DECODE_NEED_MORE;
    *out = vmc_get_u32le(buf);
    if (consumed)
        *consumed = 4;
    return VMC_DECODE_OK;
}

void
vmc_link_u32_encode(guint32 v, guint8 *out)
{
    g_return_if_fail(out != NULL);
    vmc_put_u32le(out, v);
}

/* ---- names ---- */

/**
 * vmc_link_error_name:
 * Returns: (transfer none): a static name such as "INVALID_MAGIC", or "UNKNOWN"
 */
const char *
vmc_link_error_name(guint32 error)
{
    switch (error) {
    case SPICE_LINK_ERR_OK:
        return "OK";
    case SPICE_LINK_ERR_ERROR:
        return "ERROR";
    case SPICE_LINK_ERR_INVALID_MAGIC:
        return "INVALID_MAGIC";
    case SPICE_LINK_ERR_INVALID_DATA:
        return "INVALID_DATA";
    case SPICE_LINK_ERR_VERSION_MISMATCH:
        return "VERSION_MISMATCH";
    case SPICE_LINK_ERR_NEED_SECURED:
        return "NEED_SECURED";
    case SPICE_LINK_ERR_NEED_UNSECURED:
        return "NEED_UNSECURED";
    case SPICE_LINK_ERR_PERMISSION_DENIED:
        return "PERMISSION_DENIED";
    case SPICE_LINK_ERR_BAD_CONNECTION_ID:
        return "BAD_CONNECTION_ID";
    case SPICE_LINK_ERR_CHANNEL_NOT_AVAILABLE:
        return "CHANNEL_NOT_AVAILABLE";
    default:
        return "UNKNOWN";
    }
}

/**
 * vmc_channel_type_name:
 * Returns: (transfer none): a static name such as "main", or "unknown"
 */
const char *
vmc_channel_type_name(guint8 type)
{
    switch (type) {
    case SPICE_CHANNEL_MAIN:
        return "main";
    case SPICE_CHANNEL_DISPLAY:
        return "display";
    case SPICE_CHANNEL_INPUTS:
        return "inputs";
    case SPICE_CHANNEL_CURSOR:
        return "cursor";
    case SPICE_CHANNEL_PLAYBACK:
        return "playback";
    case SPICE_CHANNEL_RECORD:
        return "record";
    case SPICE_CHANNEL_TUNNEL:
        return "tunnel";
    case SPICE_CHANNEL_SMARTCARD:
        return "smartcard";
    case SPICE_CHANNEL_USBREDIR:
        return "usbredir";
    case SPICE_CHANNEL_PORT:
        return "port";
    case SPICE_CHANNEL_WEBDAV:
        return "webdav";
    default:
        return "unknown";
    }
}
