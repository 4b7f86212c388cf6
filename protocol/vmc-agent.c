/* vmc-agent.c — VDAgentMessage headers, message boundary tracking, per-type size
 * rules and content checks, capability and type names.
 *
 * Nothing here allocates or buffers payload: the tracker keeps at most the 20
 * header bytes of the message it is in, whatever size that message announces.
 */
#include "vmc-agent.h"

#include <string.h>

/* ------------------------------------------------------------------------- */
/* header */

/**
 * vmc_agent_header_decode:
 * @buf: (array length=len) (transfer none): bytes starting at a message header
 * @len: their number
 * @out: (out caller-allocates): the header, written on OK only
 * @consumed: (out) (optional): 20 on OK, written on OK only
 *
 * Returns: %VMC_DECODE_OK, or %VMC_DECODE_NEED_MORE below 20 bytes
 */
VmcDecodeResult
vmc_agent_header_decode(const guint8 *buf, gsize len, VmcAgentHeader *out, gsize *consumed)
{
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(out != NULL, VMC_DECODE_ERR_INVALID);

    if (len < VMC_AGENT_HEADER_SIZE)
        return VMC_DECODE_NEED_MORE;
    out->protocol = vmc_get_u32le(buf);
    out->type = vmc_get_u32le(buf + 4);
    out->opaque = vmc_get_u64le(buf + 8);
    out->size = vmc_get_u32le(buf + 16);
    if (consumed)
        *consumed = VMC_AGENT_HEADER_SIZE;
    return VMC_DECODE_OK;
}

/**
 * vmc_agent_header_encode:
 * @h: the header
 * @out: (out caller-allocates) (array fixed-size=20): destination
 */
void
vmc_agent_header_encode(const VmcAgentHeader *h, guint8 *out)
{
    g_return_if_fail(h != NULL);
    g_return_if_fail(out != NULL);

    vmc_put_u32le(out, h->protocol);
    vmc_put_u32le(out + 4, h->type);
    vmc_put_u64le(out + 8, h->opaque);
    vmc_put_u32le(out + 16, h->size);
}

/* ------------------------------------------------------------------------- */
/* streaming boundary tracker */

/**
 * vmc_agent_tracker_init:
 * @t: (out caller-allocates): the tracker
 *
 * Puts @t at a message boundary with no error and a zero message count.
 */
void
vmc_agent_tracker_init(VmcAgentTracker *t)
{
    g_return_if_fail(t != NULL);

    memset(t, 0, sizeof(*t));
    t->error = VMC_DECODE_OK;
}

static void
tracker_finish_message(VmcAgentTracker *t)
{
    t->in_message = FALSE;
    t->hdr_have = 0;
    t->payload_left = 0;
    t->messages++;
}

/**
 * vmc_agent_tracker_advance:
 * @t: the tracker
 * @buf: (array length=len) (transfer none): the next bytes of the stream
 * @len: their number
 * @span: (out): how many leading bytes of @buf belong to the current message
 * @flags: (out): %VMC_AGENT_SPAN_* bits describing that span
 *
 * A span never crosses a message end, so a caller that loops until @len bytes
 * are used sees each message's first byte (%VMC_AGENT_SPAN_START), the end of its
 * header (%VMC_AGENT_SPAN_HEADER_DONE, @t->header then valid until the next
 * message starts) and its last byte (%VMC_AGENT_SPAN_END) exactly once each.
 * A span may hold only part of a split header; it is still %VMC_DECODE_OK.
 *
 * Returns: %VMC_DECODE_OK; %VMC_DECODE_NEED_MORE for @len 0 (@span 0);
 *   %VMC_DECODE_ERR_PROTOCOL when a header completes with protocol != 1 (@span
 *   ends with that header) and again on every later call (@span 0)
 */
VmcDecodeResult
vmc_agent_tracker_advance(VmcAgentTracker *t, const guint8 *buf, gsize len, gsize *span,
                          guint *flags)
{
    gsize off = 0;
    guint f = 0;

    g_return_val_if_fail(t != NULL, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(span != NULL, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(flags != NULL, VMC_DECODE_ERR_INVALID);

    if (t->error != VMC_DECODE_OK) {
        *span = 0;
        *flags = 0;
        return t->error;
    }
    if (len == 0) {
        *span = 0;
        *flags = 0;
        return VMC_DECODE_NEED_MORE;
    }

    if (!t->in_message) {
        t->in_message = TRUE;
        t->hdr_have = 0;
        t->payload_left = 0;
        f |= VMC_AGENT_SPAN_START;
    }

    if (t->hdr_have < VMC_AGENT_HEADER_SIZE) {
        gsize n = MIN((gsize)(VMC_AGENT_HEADER_SIZE - t->hdr_have), len);

        memcpy(t->hdr + t->hdr_have, buf, n);
        t->hdr_have += (guint8)n;
        off = n;
        if (t->hdr_have < VMC_AGENT_HEADER_SIZE) {
            *span = off;
            *flags = f;
            return VMC_DECODE_OK;
        }

        vmc_agent_header_decode(t->hdr, VMC_AGENT_HEADER_SIZE, &t->header, NULL);
        f |= VMC_AGENT_SPAN_HEADER_DONE;
        if (t->header.protocol != VMC_AGENT_PROTOCOL) {
            t->error = VMC_DECODE_ERR_PROTOCOL;
            *span = off;
            *flags = f;
            return t->error;
        }
        t->payload_left = t->header.size;
    }

    if (t->payload_left > 0) {
        gsize n = MIN((gsize)t->payload_left, len - off);

        t->payload_left -= (guint32)n;
        off += n;
    }
    if (t->payload_left == 0) {
        f |= VMC_AGENT_SPAN_END;
        tracker_finish_message(t);
    }

    *span = off;
    *flags = f;
    return VMC_DECODE_OK;
}

/**
 * vmc_agent_tracker_at_boundary:
 * @t: the tracker
 *
 * Returns: %TRUE between messages; %FALSE inside one and after an error
 */
gboolean
vmc_agent_tracker_at_boundary(const VmcAgentTracker *t)
{
    g_return_val_if_fail(t != NULL, FALSE);

    return t->error == VMC_DECODE_OK && !t->in_message && t->hdr_have == 0;
}

/**
 * vmc_agent_tracker_unit:
 * @t: the tracker
 * @buf: (array length=len) (transfer none): one unit (an AGENT_DATA body, or a
 *   piece of a port-1 chunk)
 * @len: its length
 * @flags: (out): %VMC_AGENT_SPAN_* bits, written on OK only
 *
 * The rules of libspice-server's agent message filter (agent-protocol.md §6.1
 * steps 1-3 and 5), with these deliberate differences:
 *
 * - A unit of 0 bytes is %VMC_DECODE_ERR_SIZE (the reference never lets one reach
 *   its filter: an empty AGENT_DATA already fails its parser).
 * - A unit that starts a message whose header says size 0 must be exactly the 20
 *   header bytes. The reference skips its "unit longer than the message" check
 *   when size is 0, so a 20-byte header followed by junk passes there and the
 *   junk reaches the peer glued to that message; here it is
 *   %VMC_DECODE_ERR_BOUNDARY, like any other unit that runs past a message end.
 * - Sizes are unsigned 32-bit: the reference keeps the pending count in an int,
 *   so a size over 2^31 becomes negative and the next unit is misread as a new
 *   header. Here such a message is followed to its real end.
 *
 * On error the tracker is left as it was.
 *
 * Returns: %VMC_DECODE_OK; %VMC_DECODE_ERR_SIZE (@len 0); %VMC_DECODE_ERR_TOO_LARGE
 *   (@len > 2048); %VMC_DECODE_ERR_BOUNDARY (a header cut short or split, bytes past
 *   the message end); %VMC_DECODE_ERR_PROTOCOL (protocol != 1); a sticky error of
 *   vmc_agent_tracker_advance() is returned again
 */
VmcDecodeResult
vmc_agent_tracker_unit(VmcAgentTracker *t, const guint8 *buf, gsize len, guint *flags)
{
    VmcAgentHeader h;
    gsize rest;

    g_return_val_if_fail(t != NULL, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(buf != NULL || len == 0, VMC_DECODE_ERR_INVALID);
    g_return_val_if_fail(flags != NULL, VMC_DECODE_ERR_INVALID);

    if (t->error != VMC_DECODE_OK)
        return t->error;
    if (len == 0)
        return VMC_DECODE_ERR_SIZE;
    if (len > VD_AGENT_MAX_DATA_SIZE)
        return VMC_DECODE_ERR_TOO_LARGE;

    if (t->in_message) {
        /* Units never split a header; one left half-read by _advance() is a split. */
        if (t->hdr_have < VMC_AGENT_HEADER_SIZE)
            return VMC_DECODE_ERR_BOUNDARY;
        if (len > t->payload_left)
            return VMC_DECODE_ERR_BOUNDARY;
        t->payload_left -= (guint32)len;
        *flags = 0;
        if (t->payload_left == 0) {
            tracker_finish_message(t);
            *flags = VMC_AGENT_SPAN_END;
        }
        return VMC_DECODE_OK;
    }

    if (len < VMC_AGENT_HEADER_SIZE)
        return VMC_DECODE_ERR_BOUNDARY;
    vmc_agent_header_decode(buf, len, &h, NULL);
    if (h.protocol != VMC_AGENT_PROTOCOL)
        return VMC_DECODE_ERR_PROTOCOL;
    rest = len - VMC_AGENT_HEADER_SIZE;
    if (rest > h.size) /* also the size-0-plus-junk case, see above */
        return VMC_DECODE_ERR_BOUNDARY;

    memcpy(t->hdr, buf, VMC_AGENT_HEADER_SIZE);
    t->hdr_have = VMC_AGENT_HEADER_SIZE;
    t->header = h;
    t->in_message = TRUE;
    t->payload_left = h.size - (guint32)rest;
    *flags = VMC_AGENT_SPAN_START | VMC_AGENT_SPAN_HEADER_DONE;
    if (t->payload_left == 0) {
        tracker_finish_message(t);
        *flags |= VMC_AGENT_SPAN_END;
    }
    return VMC_DECODE_OK;
}

/* ------------------------------------------------------------------------- */
/* per-type size rules */

/* Payload layouts of spice-protocol 0.14.3 (vd_agent.h), in wire bytes. */
#define MOUSE_STATE_SIZE 13u        /* x, y, buttons, u8 display_id */
#define MONITORS_CONFIG_HDR_SIZE 8u /* num_of_monitors, flags */
#define MON_CONFIG_SIZE 20u         /* height, width, depth, x, y */
#define MONITOR_MM_SIZE 4u          /* u16 height, u16 width */
#define REPLY_SIZE 8u               /* type, error */
#define CLIPBOARD_MIN 4u            /* type, data[] */
#define DISPLAY_CONFIG_SIZE 8u      /* flags, depth */
#define ANNOUNCE_CAPS_MIN 4u        /* request, caps[] */
#define CLIPBOARD_GRAB_MIN 0u       /* types[] */
#define CLIPBOARD_REQUEST_SIZE 4u   /* type */
#define CLIPBOARD_RELEASE_SIZE 0u
#define FILE_XFER_START_MIN 4u  /* id, text[] */
#define FILE_XFER_STATUS_MIN 8u /* id, result, data[] */
#define FILE_XFER_DATA_MIN 12u  /* id, u64 size, data[] */
#define CLIENT_DISCONNECTED_SIZE 0u
#define MAX_CLIPBOARD_SIZE 4u        /* i32 max */
#define AUDIO_VOLUME_SYNC_MIN 3u     /* u8 is_playback, u8 mute, u8 nchannels, u16 volume[] */
#define GRAPHICS_DEVICE_INFO_MIN 4u  /* count, entries[] */
#define DEVICE_DISPLAY_INFO_SIZE 16u /* channel_id, monitor_id, device_display_id, addr_len */
#define SELECTION_SIZE 4u            /* u8 selection + 3 reserved */
#define GRAB_SERIAL_SIZE 4u          /* u32 serial */

/**
 * vmc_agent_msg_size_rule:
 * @type: a VD_AGENT_* message type
 * @check_flags: %VMC_AGENT_CHECK_* bits for the negotiated capabilities
 * @min_size: (out) (optional): the payload size the type needs at least
 * @exact: (out) (optional): whether the payload must be exactly @min_size
 *
 * Outputs are written only for known types.
 *
 * Returns: %FALSE for a type spice-protocol 0.14.3 does not define
 */
gboolean
vmc_agent_msg_size_rule(guint32 type, guint check_flags, guint32 *min_size, gboolean *exact)
{
    guint32 min;
    gboolean is_exact;
    gboolean selection = (check_flags & VMC_AGENT_CHECK_SELECTION) != 0;

    switch (type) {
    case VD_AGENT_MOUSE_STATE:
        min = MOUSE_STATE_SIZE;
        is_exact = TRUE;
        break;
    case VD_AGENT_MONITORS_CONFIG:
        min = MONITORS_CONFIG_HDR_SIZE;
        is_exact = FALSE;
        break;
    case VD_AGENT_REPLY:
        min = REPLY_SIZE;
        is_exact = TRUE;
        break;
    case VD_AGENT_CLIPBOARD:
        min = CLIPBOARD_MIN + (selection ? SELECTION_SIZE : 0);
        is_exact = FALSE;
        break;
    case VD_AGENT_DISPLAY_CONFIG:
        min = DISPLAY_CONFIG_SIZE;
        is_exact = TRUE;
        break;
    case VD_AGENT_ANNOUNCE_CAPABILITIES:
        min = ANNOUNCE_CAPS_MIN;
        is_exact = FALSE;
        break;
    case VD_AGENT_CLIPBOARD_GRAB:
        min = CLIPBOARD_GRAB_MIN + (selection ? SELECTION_SIZE : 0) +
              ((check_flags & VMC_AGENT_CHECK_GRAB_SERIAL) ? GRAB_SERIAL_SIZE : 0);
        is_exact = FALSE;
        break;
    case VD_AGENT_CLIPBOARD_REQUEST:
        min = CLIPBOARD_REQUEST_SIZE + (selection ? SELECTION_SIZE : 0);
        is_exact = TRUE;
        break;
    case VD_AGENT_CLIPBOARD_RELEASE:
        min = CLIPBOARD_RELEASE_SIZE + (selection ? SELECTION_SIZE : 0);
        is_exact = TRUE;
        break;
    case VD_AGENT_FILE_XFER_START:
        min = FILE_XFER_START_MIN;
        is_exact = FALSE;
        break;
    case VD_AGENT_FILE_XFER_STATUS:
        min = FILE_XFER_STATUS_MIN;
        is_exact = FALSE;
        break;
    case VD_AGENT_FILE_XFER_DATA:
        min = FILE_XFER_DATA_MIN;
        is_exact = FALSE;
        break;
    case VD_AGENT_CLIENT_DISCONNECTED:
        min = CLIENT_DISCONNECTED_SIZE;
        is_exact = TRUE;
        break;
    case VD_AGENT_MAX_CLIPBOARD:
        min = MAX_CLIPBOARD_SIZE;
        is_exact = TRUE;
        break;
    case VD_AGENT_AUDIO_VOLUME_SYNC:
        min = AUDIO_VOLUME_SYNC_MIN;
        is_exact = FALSE;
        break;
    case VD_AGENT_GRAPHICS_DEVICE_INFO:
        min = GRAPHICS_DEVICE_INFO_MIN;
        is_exact = FALSE;
        break;
    default:
        return FALSE;
    }
    if (min_size)
        *min_size = min;
    if (exact)
        *exact = is_exact;
    return TRUE;
}

/**
 * vmc_agent_msg_check_size:
 * @type: a VD_AGENT_* message type
 * @size: the header's payload size
 * @check_flags: %VMC_AGENT_CHECK_* bits
 *
 * Returns: %VMC_DECODE_OK, %VMC_DECODE_ERR_TRUNCATED (under the minimum),
 *   %VMC_DECODE_ERR_SIZE (not the exact size), %VMC_DECODE_ERR_TYPE (unknown type)
 */
VmcDecodeResult
vmc_agent_msg_check_size(guint32 type, guint32 size, guint check_flags)
{
    guint32 min;
    gboolean exact;

    if (!vmc_agent_msg_size_rule(type, check_flags, &min, &exact))
        return VMC_DECODE_ERR_TYPE;
    if (size < min)
        return VMC_DECODE_ERR_TRUNCATED;
    if (exact && size != min)
        return VMC_DECODE_ERR_SIZE;
    return VMC_DECODE_OK;
}

/* The size rule already guaranteed len >= 8. The PHYSICAL_SIZE flag appends a
 * VDAgentMonitorMM per monitor after the monitor array, so fewer monitors fit. */
static VmcDecodeResult
validate_monitors_config(const guint8 *p, gsize len)
{
    guint32 num = vmc_get_u32le(p);
    guint32 flags = vmc_get_u32le(p + 4);
    gsize element = MON_CONFIG_SIZE;

    if (flags & VD_AGENT_CONFIG_MONITORS_FLAG_PHYSICAL_SIZE)
        element += MONITOR_MM_SIZE;
    if (num > (len - MONITORS_CONFIG_HDR_SIZE) / element)
        return VMC_DECODE_ERR_TRUNCATED;
    return VMC_DECODE_OK;
}

/* len >= 3 from the size rule: 3 bytes, then nchannels u16 volumes. */
static VmcDecodeResult
validate_audio_volume_sync(const guint8 *p, gsize len)
{
    guint8 nchannels = p[2];

    if (nchannels > (len - AUDIO_VOLUME_SYNC_MIN) / 2)
        return VMC_DECODE_ERR_TRUNCATED;
    return VMC_DECODE_OK;
}

/* len >= 4 from the size rule: u32 count, then count entries of 16 bytes plus a
 * device address of device_address_len (>= 1) bytes. The loop stops at the first
 * entry that does not fit, so a huge count costs at most len / 16 rounds. */
static VmcDecodeResult
validate_graphics_device_info(const guint8 *p, gsize len)
{
    guint32 count = vmc_get_u32le(p);
    gsize off = GRAPHICS_DEVICE_INFO_MIN;

    for (guint32 i = 0; i < count; i++) {
        guint32 addr_len;

        if (DEVICE_DISPLAY_INFO_SIZE > len - off)
            return VMC_DECODE_ERR_TRUNCATED;
        addr_len = vmc_get_u32le(p + off + 12);
        off += DEVICE_DISPLAY_INFO_SIZE;
        if (addr_len == 0)
            return VMC_DECODE_ERR_INVALID;
        if (addr_len > len - off)
            return VMC_DECODE_ERR_TRUNCATED;
        off += addr_len;
    }
    return VMC_DECODE_OK;
}

/* len >= 4 from the size rule: u32 id, then key-file text that must end in NUL
 * (an empty text without its NUL is not terminated either). */
static VmcDecodeResult
validate_file_xfer_start(const guint8 *p, gsize len)
{
    if (len <= FILE_XFER_START_MIN || p[len - 1] != '\0')
        return VMC_DECODE_ERR_INVALID;
    return VMC_DECODE_OK;
}

/**
 * vmc_agent_msg_validate:
 * @type: a VD_AGENT_* message type
 * @payload: (array length=len) (transfer none) (nullable): the whole payload
 * @len: its length (the header's size)
 * @check_flags: %VMC_AGENT_CHECK_* bits
 *
 * The size rule first, then the content checks of the types with internal counts.
 * Never reads outside @payload[0..@len).
 *
 * Returns: %VMC_DECODE_OK or the first problem found: the size rule's errors,
 *   %VMC_DECODE_ERR_TRUNCATED when a count does not fit, %VMC_DECODE_ERR_INVALID
 *   for an empty device address or an unterminated FILE_XFER_START text
 */
VmcDecodeResult
vmc_agent_msg_validate(guint32 type, const guint8 *payload, gsize len, guint check_flags)
{
    VmcDecodeResult r;

    g_return_val_if_fail(payload != NULL || len == 0, VMC_DECODE_ERR_INVALID);

    if (len > G_MAXUINT32)
        return vmc_agent_msg_size_rule(type, check_flags, NULL, NULL) ? VMC_DECODE_ERR_TOO_LARGE
                                                                      : VMC_DECODE_ERR_TYPE;
    r = vmc_agent_msg_check_size(type, (guint32)len, check_flags);
    if (r != VMC_DECODE_OK)
        return r;

    switch (type) {
    case VD_AGENT_MONITORS_CONFIG:
        return validate_monitors_config(payload, len);
    case VD_AGENT_AUDIO_VOLUME_SYNC:
        return validate_audio_volume_sync(payload, len);
    case VD_AGENT_GRAPHICS_DEVICE_INFO:
        return validate_graphics_device_info(payload, len);
    case VD_AGENT_FILE_XFER_START:
        return validate_file_xfer_start(payload, len);
    default:
        /* ANNOUNCE_CAPABILITIES >= 4 is its size rule; the rest have no counts. */
        return VMC_DECODE_OK;
    }
}

/**
 * vmc_agent_caps_decode:
 * @payload: (array length=len) (transfer none): an ANNOUNCE_CAPABILITIES payload
 * @len: its length
 * @request: (out) (optional): the request field
 * @caps_words: (out) (optional) (transfer none): the first caps word, inside
 *   @payload (little-endian; read with vmc_get_u32le())
 * @nwords: (out) (optional): number of whole caps words
 *
 * Trailing bytes that do not make a whole word are ignored, as the reference does.
 * Outputs are written on OK only.
 *
 * Returns: %VMC_DECODE_OK, or %VMC_DECODE_ERR_TRUNCATED below 4 bytes
 */
VmcDecodeResult
vmc_agent_caps_decode(const guint8 *payload, gsize len, guint32 *request, const guint8 **caps_words,
                      gsize *nwords)
{
    g_return_val_if_fail(payload != NULL || len == 0, VMC_DECODE_ERR_INVALID);

    if (len < ANNOUNCE_CAPS_MIN)
        return VMC_DECODE_ERR_TRUNCATED;
    if (request)
        *request = vmc_get_u32le(payload);
    if (caps_words)
        *caps_words = payload + ANNOUNCE_CAPS_MIN;
    if (nwords)
        *nwords = (len - ANNOUNCE_CAPS_MIN) / 4;
    return VMC_DECODE_OK;
}

/* ------------------------------------------------------------------------- */
/* names for logs */

static const char *const msg_type_names[] = {
    [VD_AGENT_MOUSE_STATE] = "MOUSE_STATE",
    [VD_AGENT_MONITORS_CONFIG] = "MONITORS_CONFIG",
    [VD_AGENT_REPLY] = "REPLY",
    [VD_AGENT_CLIPBOARD] = "CLIPBOARD",
    [VD_AGENT_DISPLAY_CONFIG] = "DISPLAY_CONFIG",
    [VD_AGENT_ANNOUNCE_CAPABILITIES] = "ANNOUNCE_CAPABILITIES",
    [VD_AGENT_CLIPBOARD_GRAB] = "CLIPBOARD_GRAB",
    [VD_AGENT_CLIPBOARD_REQUEST] = "CLIPBOARD_REQUEST",
    [VD_AGENT_CLIPBOARD_RELEASE] = "CLIPBOARD_RELEASE",
    [VD_AGENT_FILE_XFER_START] = "FILE_XFER_START",
    [VD_AGENT_FILE_XFER_STATUS] = "FILE_XFER_STATUS",
    [VD_AGENT_FILE_XFER_DATA] = "FILE_XFER_DATA",
    [VD_AGENT_CLIENT_DISCONNECTED] = "CLIENT_DISCONNECTED",
    [VD_AGENT_MAX_CLIPBOARD] = "MAX_CLIPBOARD",
    [VD_AGENT_AUDIO_VOLUME_SYNC] = "AUDIO_VOLUME_SYNC",
    [VD_AGENT_GRAPHICS_DEVICE_INFO] = "GRAPHICS_DEVICE_INFO",
};
G_STATIC_ASSERT(G_N_ELEMENTS(msg_type_names) == VD_AGENT_END_MESSAGE);

static const char *const cap_names[] = {
    [VD_AGENT_CAP_MOUSE_STATE] = "MOUSE_STATE",
    [VD_AGENT_CAP_MONITORS_CONFIG] = "MONITORS_CONFIG",
    [VD_AGENT_CAP_REPLY] = "REPLY",
    [VD_AGENT_CAP_CLIPBOARD] = "CLIPBOARD",
    [VD_AGENT_CAP_DISPLAY_CONFIG] = "DISPLAY_CONFIG",
    [VD_AGENT_CAP_CLIPBOARD_BY_DEMAND] = "CLIPBOARD_BY_DEMAND",
    [VD_AGENT_CAP_CLIPBOARD_SELECTION] = "CLIPBOARD_SELECTION",
    [VD_AGENT_CAP_SPARSE_MONITORS_CONFIG] = "SPARSE_MONITORS_CONFIG",
    [VD_AGENT_CAP_GUEST_LINEEND_LF] = "GUEST_LINEEND_LF",
    [VD_AGENT_CAP_GUEST_LINEEND_CRLF] = "GUEST_LINEEND_CRLF",
    [VD_AGENT_CAP_MAX_CLIPBOARD] = "MAX_CLIPBOARD",
    [VD_AGENT_CAP_AUDIO_VOLUME_SYNC] = "AUDIO_VOLUME_SYNC",
    [VD_AGENT_CAP_MONITORS_CONFIG_POSITION] = "MONITORS_CONFIG_POSITION",
    [VD_AGENT_CAP_FILE_XFER_DISABLED] = "FILE_XFER_DISABLED",
    [VD_AGENT_CAP_FILE_XFER_DETAILED_ERRORS] = "FILE_XFER_DETAILED_ERRORS",
    [VD_AGENT_CAP_GRAPHICS_DEVICE_INFO] = "GRAPHICS_DEVICE_INFO",
    [VD_AGENT_CAP_CLIPBOARD_NO_RELEASE_ON_REGRAB] = "CLIPBOARD_NO_RELEASE_ON_REGRAB",
    [VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL] = "CLIPBOARD_GRAB_SERIAL",
};
G_STATIC_ASSERT(G_N_ELEMENTS(cap_names) == VD_AGENT_END_CAP);

static const char *const file_xfer_status_names[] = {
    [VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA] = "CAN_SEND_DATA",
    [VD_AGENT_FILE_XFER_STATUS_CANCELLED] = "CANCELLED",
    [VD_AGENT_FILE_XFER_STATUS_ERROR] = "ERROR",
    [VD_AGENT_FILE_XFER_STATUS_SUCCESS] = "SUCCESS",
    [VD_AGENT_FILE_XFER_STATUS_NOT_ENOUGH_SPACE] = "NOT_ENOUGH_SPACE",
    [VD_AGENT_FILE_XFER_STATUS_SESSION_LOCKED] = "SESSION_LOCKED",
    [VD_AGENT_FILE_XFER_STATUS_VDAGENT_NOT_CONNECTED] = "VDAGENT_NOT_CONNECTED",
    [VD_AGENT_FILE_XFER_STATUS_DISABLED] = "DISABLED",
};

/**
 * vmc_agent_msg_type_name:
 * @type: a VD_AGENT_* message type
 *
 * Returns: (transfer none) (nullable): "CLIPBOARD_GRAB" and the like, %NULL for an
 *   unknown type
 */
const char *
vmc_agent_msg_type_name(guint32 type)
{
    return type < G_N_ELEMENTS(msg_type_names) ? msg_type_names[type] : NULL;
}

/**
 * vmc_agent_cap_name:
 * @cap: a VD_AGENT_CAP_* bit number
 *
 * Returns: (transfer none) (nullable): "FILE_XFER_DISABLED" and the like, %NULL
 *   for an unknown bit
 */
const char *
vmc_agent_cap_name(guint cap)
{
    return cap < G_N_ELEMENTS(cap_names) ? cap_names[cap] : NULL;
}

/**
 * vmc_file_xfer_status_name:
 * @status: a VD_AGENT_FILE_XFER_STATUS_* value
 *
 * Returns: (transfer none) (nullable): "CAN_SEND_DATA" and the like, %NULL for an
 *   unknown value
 */
const char *
vmc_file_xfer_status_name(guint32 status)
{
    return status < G_N_ELEMENTS(file_xfer_status_names) ? file_xfer_status_names[status] : NULL;
}
