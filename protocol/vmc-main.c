/* vmc-main.c — SPICE main-channel message bodies, both directions.
 *
 * Every decoder takes the complete body (the data header's size) and, like the
 * reference's demarshaller, needs at least the fixed layout and ignores extra
 * trailing bytes: a shorter body is ERR_TRUNCATED, never NEED_MORE. Outputs are
 * written only on OK. Encoders return the body size, or 0 when `cap` is too
 * small (nothing useful is left in `out` then).
 */
#include "vmc-main.h"

#include <string.h>

#include "vmc-header.h"

#define PING_FIXED_SIZE 12u
#define NOTIFY_FIXED_SIZE 24u
#define CHANNELS_LIST_FIXED_SIZE 4u

/* ---- server -> client ---- */

/**
 * vmc_main_init_decode:
 * @out: (out caller-allocates): the eight INIT fields
 */
VmcDecodeResult
vmc_main_init_decode(const guint8 *buf, gsize len, VmcMainInit *out)
{
    VmcReader r;
    VmcMainInit m;

    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    vmc_reader_init(&r, buf, len);
    vmc_reader_u32(&r, &m.session_id);
    vmc_reader_u32(&r, &m.display_channels_hint);
    vmc_reader_u32(&r, &m.supported_mouse_modes);
    vmc_reader_u32(&r, &m.current_mouse_mode);
    vmc_reader_u32(&r, &m.agent_connected);
    vmc_reader_u32(&r, &m.agent_tokens);
    vmc_reader_u32(&r, &m.multi_media_time);
    vmc_reader_u32(&r, &m.ram_hint);
    if (r.overrun)
        return VMC_DECODE_ERR_TRUNCATED;
    *out = m;
    return VMC_DECODE_OK;
}

gsize
vmc_main_init_encode(const VmcMainInit *m, guint8 *out, gsize cap)
{
    VmcWriter w;

    g_return_val_if_fail(m != NULL, 0);

    vmc_writer_init(&w, out, cap);
    vmc_writer_u32(&w, m->session_id);
    vmc_writer_u32(&w, m->display_channels_hint);
    vmc_writer_u32(&w, m->supported_mouse_modes);
    vmc_writer_u32(&w, m->current_mouse_mode);
    vmc_writer_u32(&w, m->agent_connected);
    vmc_writer_u32(&w, m->agent_tokens);
    vmc_writer_u32(&w, m->multi_media_time);
    vmc_writer_u32(&w, m->ram_hint);
    return vmc_writer_finish(&w);
}

/**
 * vmc_main_channels_list_decode:
 * @out: (out caller-allocates) (array length=max) (nullable): entries, the
 *   first min(*n, @max) of which are written; may be NULL when @max is 0
 * @n: (out): the announced number of channels
 *
 * ERR_TRUNCATED if the body is shorter than 4 + 2 * n.
 */
VmcDecodeResult
vmc_main_channels_list_decode(const guint8 *buf, gsize len, VmcChannelId *out, guint32 max,
                              guint32 *n)
{
    guint32 count;

    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL || max == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(n != NULL, VMC_DECODE_ERR_INVALID);

    if (len < CHANNELS_LIST_FIXED_SIZE)
        return VMC_DECODE_ERR_TRUNCATED;
    count = vmc_get_u32le(buf);
    if (count > (len - CHANNELS_LIST_FIXED_SIZE) / 2)
        return VMC_DECODE_ERR_TRUNCATED;

    for (guint32 i = 0; i < count && i < max; i++) {
        out[i].type = buf[CHANNELS_LIST_FIXED_SIZE + 2 * (gsize)i];
        out[i].id = buf[CHANNELS_LIST_FIXED_SIZE + 2 * (gsize)i + 1];
    }
    *n = count;
    return VMC_DECODE_OK;
}

gsize
vmc_main_channels_list_encode(const VmcChannelId *ids, guint32 n, guint8 *out, gsize cap)
{
    VmcWriter w;

    g_return_val_if_fail(ids != NULL || n == 0, 0);

    if (CHANNELS_LIST_FIXED_SIZE + 2 * (guint64)n > cap)
        return 0;
    vmc_writer_init(&w, out, cap);
    vmc_writer_u32(&w, n);
    for (guint32 i = 0; i < n; i++) {
        vmc_writer_u8(&w, ids[i].type);
        vmc_writer_u8(&w, ids[i].id);
    }
    return vmc_writer_finish(&w);
}

/**
 * vmc_main_name_decode:
 * @name: (out) (transfer none): the name inside @buf, NUL-terminated
 * @name_len: (out): the wire name_len, which counts the NUL
 *
 * ERR_TRUNCATED if fewer than name_len bytes follow the length; ERR_INVALID if
 * name_len is 0 or its last byte is not NUL (so *name is always a C string).
 */
VmcDecodeResult
vmc_main_name_decode(const guint8 *buf, gsize len, const char **name, guint32 *name_len)
{
    guint32 nlen;

    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(name != NULL && name_len != NULL, VMC_DECODE_ERR_INVALID);

    if (len < 4)
        return VMC_DECODE_ERR_TRUNCATED;
    nlen = vmc_get_u32le(buf);
    if (nlen > len - 4)
        return VMC_DECODE_ERR_TRUNCATED;
    if (nlen == 0 || buf[4 + (gsize)nlen - 1] != 0)
        return VMC_DECODE_ERR_INVALID;
    *name = (const char *)(buf + 4);
    *name_len = nlen;
    return VMC_DECODE_OK;
}

/**
 * vmc_main_name_encode:
 * @name: a NUL-terminated name
 *
 * Writes u32 strlen(@name) + 1, the name and its NUL.
 */
gsize
vmc_main_name_encode(const char *name, guint8 *out, gsize cap)
{
    VmcWriter w;
    gsize slen;

    g_return_val_if_fail(name != NULL, 0);

    slen = strlen(name);
    if (slen >= G_MAXUINT32)
        return 0;
    vmc_writer_init(&w, out, cap);
    vmc_writer_u32(&w, (guint32)(slen + 1));
    vmc_writer_bytes(&w, name, slen + 1);
    return vmc_writer_finish(&w);
}

VmcDecodeResult
vmc_main_uuid_decode(const guint8 *buf, gsize len, guint8 uuid[16])
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(uuid != NULL, VMC_DECODE_ERR_INVALID);

    if (len < 16)
        return VMC_DECODE_ERR_TRUNCATED;
    memcpy(uuid, buf, 16);
    return VMC_DECODE_OK;
}

gsize
vmc_main_uuid_encode(const guint8 uuid[16], guint8 *out, gsize cap)
{
    VmcWriter w;

    g_return_val_if_fail(uuid != NULL, 0);

    vmc_writer_init(&w, out, cap);
    vmc_writer_bytes(&w, uuid, 16);
    return vmc_writer_finish(&w);
}

/**
 * vmc_ping_decode:
 * @out: (out caller-allocates): id, timestamp and the number of bytes after
 *   them (the padding; its contents are not checked)
 *
 * ERR_TOO_LARGE only if the padding would not fit a guint32 (never for a body
 * whose size came from a data header).
 */
VmcDecodeResult
vmc_ping_decode(const guint8 *buf, gsize len, VmcPing *out)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < PING_FIXED_SIZE)
        return VMC_DECODE_ERR_TRUNCATED;
    if (len - PING_FIXED_SIZE > G_MAXUINT32)
        return VMC_DECODE_ERR_TOO_LARGE;
    out->id = vmc_get_u32le(buf);
    out->timestamp = vmc_get_u64le(buf + 4);
    out->padding = (guint32)(len - PING_FIXED_SIZE);
    return VMC_DECODE_OK;
}

/**
 * vmc_ping_encode:
 *
 * Writes id, timestamp and p->padding zero bytes (12 + padding in all).
 */
gsize
vmc_ping_encode(const VmcPing *p, guint8 *out, gsize cap)
{
    VmcWriter w;

    g_return_val_if_fail(p != NULL, 0);

    vmc_writer_init(&w, out, cap);
    vmc_writer_u32(&w, p->id);
    vmc_writer_u64(&w, p->timestamp);
    vmc_writer_zeros(&w, p->padding);
    return vmc_writer_finish(&w);
}

VmcDecodeResult
vmc_main_mouse_mode_decode(const guint8 *buf, gsize len, VmcMouseMode *out)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < 4)
        return VMC_DECODE_ERR_TRUNCATED;
    out->supported_modes = vmc_get_u16le(buf);
    out->current_mode = vmc_get_u16le(buf + 2);
    return VMC_DECODE_OK;
}

gsize
vmc_main_mouse_mode_encode(const VmcMouseMode *m, guint8 *out, gsize cap)
{
    VmcWriter w;

    g_return_val_if_fail(m != NULL, 0);

    vmc_writer_init(&w, out, cap);
    vmc_writer_u16(&w, m->supported_modes);
    vmc_writer_u16(&w, m->current_mode);
    return vmc_writer_finish(&w);
}

/**
 * vmc_notify_decode:
 * @out: (out caller-allocates): the fields; out->message borrows from @buf
 *
 * ERR_TRUNCATED if fewer than message_len + 1 bytes follow the 24-byte fixed
 * part; ERR_INVALID if the byte after the message is not NUL (so
 * out->message is always a C string).
 */
VmcDecodeResult
vmc_notify_decode(const guint8 *buf, gsize len, VmcNotify *out)
{
    VmcNotify n;

    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < NOTIFY_FIXED_SIZE)
        return VMC_DECODE_ERR_TRUNCATED;
    n.time_stamp = vmc_get_u64le(buf);
    n.severity = vmc_get_u32le(buf + 8);
    n.visibility = vmc_get_u32le(buf + 12);
    n.what = vmc_get_u32le(buf + 16);
    n.message_len = vmc_get_u32le(buf + 20);
    if (n.message_len >= len - NOTIFY_FIXED_SIZE)
        return VMC_DECODE_ERR_TRUNCATED;
    if (buf[NOTIFY_FIXED_SIZE + (gsize)n.message_len] != 0)
        return VMC_DECODE_ERR_INVALID;
    n.message = (const char *)(buf + NOTIFY_FIXED_SIZE);
    *out = n;
    return VMC_DECODE_OK;
}

/**
 * vmc_notify_encode:
 * @n: the fields; n->message (nullable when message_len is 0) gives
 *   message_len bytes, after which a NUL is written
 */
gsize
vmc_notify_encode(const VmcNotify *n, guint8 *out, gsize cap)
{
    VmcWriter w;

    g_return_val_if_fail(n != NULL, 0);
    g_return_val_if_fail(n->message != NULL || n->message_len == 0, 0);

    vmc_writer_init(&w, out, cap);
    vmc_writer_u64(&w, n->time_stamp);
    vmc_writer_u32(&w, n->severity);
    vmc_writer_u32(&w, n->visibility);
    vmc_writer_u32(&w, n->what);
    vmc_writer_u32(&w, n->message_len);
    vmc_writer_bytes(&w, n->message, n->message_len);
    vmc_writer_u8(&w, 0);
    return vmc_writer_finish(&w);
}

VmcDecodeResult
vmc_set_ack_decode(const guint8 *buf, gsize len, VmcSetAck *out)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < 8)
        return VMC_DECODE_ERR_TRUNCATED;
    out->generation = vmc_get_u32le(buf);
    out->window = vmc_get_u32le(buf + 4);
    return VMC_DECODE_OK;
}

gsize
vmc_set_ack_encode(const VmcSetAck *s, guint8 *out, gsize cap)
{
    VmcWriter w;

    g_return_val_if_fail(s != NULL, 0);

    vmc_writer_init(&w, out, cap);
    vmc_writer_u32(&w, s->generation);
    vmc_writer_u32(&w, s->window);
    return vmc_writer_finish(&w);
}

VmcDecodeResult
vmc_u32_body_decode(const guint8 *buf, gsize len, guint32 *out)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < 4)
        return VMC_DECODE_ERR_TRUNCATED;
    *out = vmc_get_u32le(buf);
    return VMC_DECODE_OK;
}

gsize
vmc_u32_body_encode(guint32 v, guint8 *out, gsize cap)
{
    VmcWriter w;

    vmc_writer_init(&w, out, cap);
    vmc_writer_u32(&w, v);
    return vmc_writer_finish(&w);
}

/* ---- client -> server ---- */

/**
 * vmc_pong_decode:
 * @out: (out caller-allocates): id and timestamp; out->padding is always 0
 *   (trailing bytes are ignored, as by the reference)
 */
VmcDecodeResult
vmc_pong_decode(const guint8 *buf, gsize len, VmcPing *out)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < PING_FIXED_SIZE)
        return VMC_DECODE_ERR_TRUNCATED;
    out->id = vmc_get_u32le(buf);
    out->timestamp = vmc_get_u64le(buf + 4);
    out->padding = 0;
    return VMC_DECODE_OK;
}

/**
 * vmc_pong_encode:
 *
 * Writes id and timestamp (12 bytes); p->padding is ignored.
 */
gsize
vmc_pong_encode(const VmcPing *p, guint8 *out, gsize cap)
{
    VmcWriter w;

    g_return_val_if_fail(p != NULL, 0);

    vmc_writer_init(&w, out, cap);
    vmc_writer_u32(&w, p->id);
    vmc_writer_u64(&w, p->timestamp);
    return vmc_writer_finish(&w);
}

VmcDecodeResult
vmc_disconnecting_decode(const guint8 *buf, gsize len, VmcDisconnecting *out)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < 12)
        return VMC_DECODE_ERR_TRUNCATED;
    out->time_stamp = vmc_get_u64le(buf);
    out->reason = vmc_get_u32le(buf + 8);
    return VMC_DECODE_OK;
}

gsize
vmc_disconnecting_encode(const VmcDisconnecting *d, guint8 *out, gsize cap)
{
    VmcWriter w;

    g_return_val_if_fail(d != NULL, 0);

    vmc_writer_init(&w, out, cap);
    vmc_writer_u64(&w, d->time_stamp);
    vmc_writer_u32(&w, d->reason);
    return vmc_writer_finish(&w);
}

VmcDecodeResult
vmc_main_mouse_mode_request_decode(const guint8 *buf, gsize len, guint16 *mode)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(mode != NULL, VMC_DECODE_ERR_INVALID);

    if (len < 2)
        return VMC_DECODE_ERR_TRUNCATED;
    *mode = vmc_get_u16le(buf);
    return VMC_DECODE_OK;
}

gsize
vmc_main_mouse_mode_request_encode(guint16 mode, guint8 *out, gsize cap)
{
    VmcWriter w;

    vmc_writer_init(&w, out, cap);
    vmc_writer_u16(&w, mode);
    return vmc_writer_finish(&w);
}

VmcDecodeResult
vmc_main_client_info_decode(const guint8 *buf, gsize len, guint64 *out)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < 8)
        return VMC_DECODE_ERR_TRUNCATED;
    *out = vmc_get_u64le(buf);
    return VMC_DECODE_OK;
}

gsize
vmc_main_client_info_encode(guint64 v, guint8 *out, gsize cap)
{
    VmcWriter w;

    vmc_writer_init(&w, out, cap);
    vmc_writer_u64(&w, v);
    return vmc_writer_finish(&w);
}

/* ---- size rules per client message type ---- */

/**
 * vmc_main_client_msg_limits:
 * @min_size: (out) (optional): smallest body accepted
 * @max_size: (out) (optional): largest body accepted
 *
 * The reference parser's rules (agent-protocol.md §2.2): fixed layouts need
 * their wire size, empty messages take anything, `Data` messages need one byte;
 * every type but AGENT_DATA may be as large as the 26624-byte receive buffer.
 * AGENT_DATA is capped at 2048 here, at the header — the reference only finds
 * out after reading the whole body.
 *
 * Returns: FALSE (outputs untouched) for a type that does not exist on the
 *   main channel
 */
gboolean
vmc_main_client_msg_limits(guint16 type, guint32 *min_size, guint32 *max_size)
{
    guint32 min;
    guint32 max = VMC_MAIN_RECV_BUF_SIZE;

    switch (type) {
    case SPICE_MSGC_ACK_SYNC:
        min = 4;
        break;
    case SPICE_MSGC_ACK:
    case SPICE_MSGC_MIGRATE_FLUSH_MARK:
        min = 0;
        break;
    case SPICE_MSGC_PONG:
    case SPICE_MSGC_DISCONNECTING:
        min = 12;
        break;
    case SPICE_MSGC_MIGRATE_DATA:
        min = 1;
        break;
    case SPICE_MSGC_MAIN_CLIENT_INFO:
        min = 8;
        break;
    case SPICE_MSGC_MAIN_MIGRATE_CONNECTED:
    case SPICE_MSGC_MAIN_MIGRATE_CONNECT_ERROR:
    case SPICE_MSGC_MAIN_ATTACH_CHANNELS:
    case SPICE_MSGC_MAIN_MIGRATE_END:
    case SPICE_MSGC_MAIN_MIGRATE_CONNECTED_SEAMLESS:
        min = 0;
        break;
    case SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST:
        min = 2;
        break;
    case SPICE_MSGC_MAIN_AGENT_START:
    case SPICE_MSGC_MAIN_AGENT_TOKEN:
    case SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS:
        min = 4;
        break;
    case SPICE_MSGC_MAIN_AGENT_DATA:
        min = 1;
        max = VMC_AGENT_MAX_DATA_SIZE;
        break;
    case SPICE_MSGC_MAIN_QUALITY_INDICATOR:
        min = 1;
        break;
    default:
        return FALSE;
    }
    if (min_size)
        *min_size = min;
    if (max_size)
        *max_size = max;
    return TRUE;
}

/**
 * vmc_main_client_msg_check:
 *
 * Checks a client data header before any of its body is read. Order: unknown
 * type (ERR_TYPE), then over the maximum (ERR_TOO_LARGE), then under the
 * minimum (ERR_TRUNCATED).
 */
VmcDecodeResult
vmc_main_client_msg_check(guint16 type, guint32 size)
{
    guint32 min, max;

    if (!vmc_main_client_msg_limits(type, &min, &max))
        return VMC_DECODE_ERR_TYPE;
    if (size > max)
        return VMC_DECODE_ERR_TOO_LARGE;
    if (size < min)
        return VMC_DECODE_ERR_TRUNCATED;
    return VMC_DECODE_OK;
}

/* ---- names ---- */

/**
 * vmc_main_msg_name:
 * Returns: (transfer none): the name of a server -> client main-channel
 *   message (base 1..8, main 101..118), or "UNKNOWN"
 */
const char *
vmc_main_msg_name(guint16 type)
{
    switch (type) {
    case SPICE_MSG_MIGRATE:
        return "MIGRATE";
    case SPICE_MSG_MIGRATE_DATA:
        return "MIGRATE_DATA";
    case SPICE_MSG_SET_ACK:
        return "SET_ACK";
    case SPICE_MSG_PING:
        return "PING";
    case SPICE_MSG_WAIT_FOR_CHANNELS:
        return "WAIT_FOR_CHANNELS";
    case SPICE_MSG_DISCONNECTING:
        return "DISCONNECTING";
    case SPICE_MSG_NOTIFY:
        return "NOTIFY";
    case SPICE_MSG_LIST:
        return "LIST";
    case SPICE_MSG_MAIN_MIGRATE_BEGIN:
        return "MIGRATE_BEGIN";
    case SPICE_MSG_MAIN_MIGRATE_CANCEL:
        return "MIGRATE_CANCEL";
    case SPICE_MSG_MAIN_INIT:
        return "INIT";
    case SPICE_MSG_MAIN_CHANNELS_LIST:
        return "CHANNELS_LIST";
    case SPICE_MSG_MAIN_MOUSE_MODE:
        return "MOUSE_MODE";
    case SPICE_MSG_MAIN_MULTI_MEDIA_TIME:
        return "MULTI_MEDIA_TIME";
    case SPICE_MSG_MAIN_AGENT_CONNECTED:
        return "AGENT_CONNECTED";
    case SPICE_MSG_MAIN_AGENT_DISCONNECTED:
        return "AGENT_DISCONNECTED";
    case SPICE_MSG_MAIN_AGENT_DATA:
        return "AGENT_DATA";
    case SPICE_MSG_MAIN_AGENT_TOKEN:
        return "AGENT_TOKEN";
    case SPICE_MSG_MAIN_MIGRATE_SWITCH_HOST:
        return "MIGRATE_SWITCH_HOST";
    case SPICE_MSG_MAIN_MIGRATE_END:
        return "MIGRATE_END";
    case SPICE_MSG_MAIN_NAME:
        return "NAME";
    case SPICE_MSG_MAIN_UUID:
        return "UUID";
    case SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS:
        return "AGENT_CONNECTED_TOKENS";
    case SPICE_MSG_MAIN_MIGRATE_BEGIN_SEAMLESS:
        return "MIGRATE_BEGIN_SEAMLESS";
    case SPICE_MSG_MAIN_MIGRATE_DST_SEAMLESS_ACK:
        return "MIGRATE_DST_SEAMLESS_ACK";
    case SPICE_MSG_MAIN_MIGRATE_DST_SEAMLESS_NACK:
        return "MIGRATE_DST_SEAMLESS_NACK";
    default:
        return "UNKNOWN";
    }
}

/**
 * vmc_main_msgc_name:
 * Returns: (transfer none): the name of a client -> server main-channel
 *   message (base 1..6, main 101..112), or "UNKNOWN"
 */
const char *
vmc_main_msgc_name(guint16 type)
{
    switch (type) {
    case SPICE_MSGC_ACK_SYNC:
        return "ACK_SYNC";
    case SPICE_MSGC_ACK:
        return "ACK";
    case SPICE_MSGC_PONG:
        return "PONG";
    case SPICE_MSGC_MIGRATE_FLUSH_MARK:
        return "MIGRATE_FLUSH_MARK";
    case SPICE_MSGC_MIGRATE_DATA:
        return "MIGRATE_DATA";
    case SPICE_MSGC_DISCONNECTING:
        return "DISCONNECTING";
    case SPICE_MSGC_MAIN_CLIENT_INFO:
        return "CLIENT_INFO";
    case SPICE_MSGC_MAIN_MIGRATE_CONNECTED:
        return "MIGRATE_CONNECTED";
    case SPICE_MSGC_MAIN_MIGRATE_CONNECT_ERROR:
        return "MIGRATE_CONNECT_ERROR";
    case SPICE_MSGC_MAIN_ATTACH_CHANNELS:
        return "ATTACH_CHANNELS";
    case SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST:
        return "MOUSE_MODE_REQUEST";
    case SPICE_MSGC_MAIN_AGENT_START:
        return "AGENT_START";
    case SPICE_MSGC_MAIN_AGENT_DATA:
        return "AGENT_DATA";
    case SPICE_MSGC_MAIN_AGENT_TOKEN:
        return "AGENT_TOKEN";
    case SPICE_MSGC_MAIN_MIGRATE_END:
        return "MIGRATE_END";
    case SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS:
        return "MIGRATE_DST_DO_SEAMLESS";
    case SPICE_MSGC_MAIN_MIGRATE_CONNECTED_SEAMLESS:
        return "MIGRATE_CONNECTED_SEAMLESS";
    case SPICE_MSGC_MAIN_QUALITY_INDICATOR:
        return "QUALITY_INDICATOR";
    default:
        return "UNKNOWN";
    }
}
