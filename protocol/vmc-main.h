/* vmc-main.h — main-channel message bodies (after the data header), both directions.
 * Type numbers are spice-protocol's SPICE_MSG_* / SPICE_MSGC_* (spice/enums.h).
 *
 * Decoders take the complete body (`len` = the data header's size). Like the
 * reference, fixed layouts need at least their wire size and ignore trailing bytes;
 * shorter bodies give ERR_TRUNCATED. Encoders write into caller storage and return
 * the body size, or 0 when `cap` is too small.
 */
#pragma once

#include <glib.h>
#include <spice/enums.h>
#include <spice/protocol.h>
#include "vmc-wire.h"

G_BEGIN_DECLS

#define VMC_MAIN_INIT_SIZE 32u
#define VMC_AGENT_MAX_DATA_SIZE 2048u /* SPICE_AGENT_MAX_DATA_SIZE */
#define VMC_AGENT_TOKENS_UNLIMITED 0xFFFFFFFFu

/* ---- server -> client ---- */

typedef struct {
    guint32 session_id;
    guint32 display_channels_hint;
    guint32 supported_mouse_modes;
    guint32 current_mouse_mode;
    guint32 agent_connected;
    guint32 agent_tokens;
    guint32 multi_media_time;
    guint32 ram_hint;
} VmcMainInit;

VmcDecodeResult vmc_main_init_decode(const guint8 *buf, gsize len, VmcMainInit *out);
gsize vmc_main_init_encode(const VmcMainInit *m, guint8 *out, gsize cap);

typedef struct {
    guint8 type;
    guint8 id;
} VmcChannelId;

/* CHANNELS_LIST: u32 n then n x {u8 type, u8 id}. Decoding fills at most `max`
 * entries into `out` and sets *n to the announced count (ERR_TRUNCATED if the body
 * is shorter than 4 + 2n). */
VmcDecodeResult vmc_main_channels_list_decode(const guint8 *buf, gsize len, VmcChannelId *out,
                                              guint32 max, guint32 *n);
gsize vmc_main_channels_list_encode(const VmcChannelId *ids, guint32 n, guint8 *out, gsize cap);

/* NAME: u32 name_len (including the NUL) + name bytes + NUL. Decode borrows. */
VmcDecodeResult vmc_main_name_decode(const guint8 *buf, gsize len, const char **name,
                                     guint32 *name_len);
gsize vmc_main_name_encode(const char *name, guint8 *out, gsize cap);

/* UUID: 16 bytes. */
VmcDecodeResult vmc_main_uuid_decode(const guint8 *buf, gsize len, guint8 uuid[16]);
gsize vmc_main_uuid_encode(const guint8 uuid[16], guint8 *out, gsize cap);

/* PING: u32 id, u64 timestamp, then `padding` zero bytes (decode reports its length). */
typedef struct {
    guint32 id;
    guint64 timestamp;
    guint32 padding;
} VmcPing;
VmcDecodeResult vmc_ping_decode(const guint8 *buf, gsize len, VmcPing *out);
gsize vmc_ping_encode(const VmcPing *p, guint8 *out, gsize cap);

/* MOUSE_MODE: u16 supported, u16 current. */
typedef struct {
    guint16 supported_modes;
    guint16 current_mode;
} VmcMouseMode;
VmcDecodeResult vmc_main_mouse_mode_decode(const guint8 *buf, gsize len, VmcMouseMode *out);
gsize vmc_main_mouse_mode_encode(const VmcMouseMode *m, guint8 *out, gsize cap);

/* NOTIFY: u64 time_stamp, u32 severity, u32 visibility, u32 what, u32 message_len,
 * message bytes + NUL. Decode borrows `message` (message_len bytes, not counting NUL). */
typedef struct {
    guint64 time_stamp;
    guint32 severity;
    guint32 visibility;
    guint32 what;
    guint32 message_len;
    const char *message;
} VmcNotify;
VmcDecodeResult vmc_notify_decode(const guint8 *buf, gsize len, VmcNotify *out);
gsize vmc_notify_encode(const VmcNotify *n, guint8 *out, gsize cap);

/* SET_ACK: u32 generation, u32 window. */
typedef struct {
    guint32 generation;
    guint32 window;
} VmcSetAck;
VmcDecodeResult vmc_set_ack_decode(const guint8 *buf, gsize len, VmcSetAck *out);
gsize vmc_set_ack_encode(const VmcSetAck *s, guint8 *out, gsize cap);

/* One-u32 bodies: AGENT_CONNECTED_TOKENS, AGENT_DISCONNECTED (error_code),
 * AGENT_TOKEN (both directions), AGENT_START (client), ACK_SYNC (client). */
VmcDecodeResult vmc_u32_body_decode(const guint8 *buf, gsize len, guint32 *out);
gsize vmc_u32_body_encode(guint32 v, guint8 *out, gsize cap);

/* ---- client -> server ---- */

/* PONG: u32 id, u64 timestamp (same layout as PING without padding). */
VmcDecodeResult vmc_pong_decode(const guint8 *buf, gsize len, VmcPing *out);
gsize vmc_pong_encode(const VmcPing *p, guint8 *out, gsize cap);

/* DISCONNECTING: u64 time_stamp, u32 reason. */
typedef struct {
    guint64 time_stamp;
    guint32 reason;
} VmcDisconnecting;
VmcDecodeResult vmc_disconnecting_decode(const guint8 *buf, gsize len, VmcDisconnecting *out);
gsize vmc_disconnecting_encode(const VmcDisconnecting *d, guint8 *out, gsize cap);

/* MOUSE_MODE_REQUEST: u16 mode. */
VmcDecodeResult vmc_main_mouse_mode_request_decode(const guint8 *buf, gsize len, guint16 *mode);
gsize vmc_main_mouse_mode_request_encode(guint16 mode, guint8 *out, gsize cap);

/* CLIENT_INFO: u64 cache_size. */
VmcDecodeResult vmc_main_client_info_decode(const guint8 *buf, gsize len, guint64 *out);
gsize vmc_main_client_info_encode(guint64 v, guint8 *out, gsize cap);

/* ---- size rules per client message type (the reference's parser, §2.2) ---- */

/* For a message type a client may send on the main channel, the minimum and
 * maximum body size we accept. Returns FALSE for a type that does not exist (the
 * reference disconnects). AGENT_DATA: 1..2048. Others: their fixed size..26624. */
gboolean vmc_main_client_msg_limits(guint16 type, guint32 *min_size, guint32 *max_size);
/* Checks a header before any body byte is read: ERR_TYPE for an unknown type,
 * ERR_TOO_LARGE over the max, ERR_TRUNCATED under the min. */
VmcDecodeResult vmc_main_client_msg_check(guint16 type, guint32 size);

const char *vmc_main_msg_name(guint16 type);  /* server -> client names */
const char *vmc_main_msgc_name(guint16 type); /* client -> server names */

G_END_DECLS
