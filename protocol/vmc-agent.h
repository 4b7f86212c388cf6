/* vmc-agent.h — VDAgentMessage {u32 protocol; u32 type; u64 opaque; u32 size}
 * headers, a streaming tracker of message boundaries, per-type size rules,
 * capability helpers and names.
 */
#pragma once

#include <glib.h>
#include <spice/vd_agent.h>
#include "vmc-wire.h"

G_BEGIN_DECLS

#define VMC_AGENT_HEADER_SIZE 20u
#define VMC_AGENT_PROTOCOL 1u /* VD_AGENT_PROTOCOL */

typedef struct {
    guint32 protocol;
    guint32 type;
    guint64 opaque;
    guint32 size;
} VmcAgentHeader;

/* Decodes 20 bytes. NEED_MORE below 20. Does not judge the fields. */
VmcDecodeResult vmc_agent_header_decode(const guint8 *buf, gsize len, VmcAgentHeader *out,
                                        gsize *consumed);
void vmc_agent_header_encode(const VmcAgentHeader *h, guint8 *out);

/* ---- streaming boundary tracker ----
 * Follows a stream of agent messages (header + payload, back to back) however it is
 * split. It holds at most the 20 header bytes; it never buffers payload. */
enum {
    VMC_AGENT_SPAN_START = 1 << 0,       /* the span holds the first byte of a message */
    VMC_AGENT_SPAN_HEADER_DONE = 1 << 1, /* the header completed inside this span */
    VMC_AGENT_SPAN_END = 1 << 2,         /* the span holds the last byte of a message */
};

typedef struct {
    guint8 hdr[VMC_AGENT_HEADER_SIZE];
    guint8 hdr_have;
    gboolean in_message;   /* between the first and the last byte of a message */
    VmcAgentHeader header; /* valid once the header is complete */
    guint32 payload_left;  /* payload bytes of the current message still to come */
    guint64 messages;      /* whole messages seen */
    VmcDecodeResult error; /* sticky */
} VmcAgentTracker;

void vmc_agent_tracker_init(VmcAgentTracker *t);

/* Looks at the next bytes of the stream and says how many of them (*span, 1..len)
 * belong to the current message, with VMC_AGENT_SPAN_* *flags. The caller forwards
 * or drops exactly those bytes and calls again with the rest.
 * ERR_PROTOCOL (sticky) once a complete header has protocol != 1; *span then covers
 * the bytes up to and including the header. len == 0 returns NEED_MORE. */
VmcDecodeResult vmc_agent_tracker_advance(VmcAgentTracker *t, const guint8 *buf, gsize len,
                                          gsize *span, guint *flags);

/* TRUE between messages (no header bytes held, no payload pending). */
gboolean vmc_agent_tracker_at_boundary(const VmcAgentTracker *t);

/* Validates one unit that must lie within one message (a client's AGENT_DATA body, as
 * the reference's filter does): len 1..2048 (ERR_TOO_LARGE above); at a message start
 * a whole header (ERR_BOUNDARY if len < 20) with protocol 1 (ERR_PROTOCOL); never past
 * the end of the current message (ERR_BOUNDARY). Advances the tracker over the unit. On
 * success *flags says whether the unit starts and/or ends a message. Not sticky on
 * error in itself, but the caller should treat any error as fatal for that peer. */
VmcDecodeResult vmc_agent_tracker_unit(VmcAgentTracker *t, const guint8 *buf, gsize len,
                                       guint *flags);

/* ---- per-type size rules (spice-protocol 0.14.3) ---- */
enum {
    VMC_AGENT_CHECK_SELECTION = 1 << 0,  /* clipboard messages carry u8 selection + 3 pad */
    VMC_AGENT_CHECK_GRAB_SERIAL = 1 << 1, /* CLIPBOARD_GRAB carries a u32 serial */
};

/* Minimum payload size of `type` and whether the size must be exact.
 * Returns FALSE for a type spice-protocol 0.14.3 does not define. */
gboolean vmc_agent_msg_size_rule(guint32 type, guint check_flags, guint32 *min_size,
                                 gboolean *exact);
/* OK, ERR_TRUNCATED (under the minimum), ERR_SIZE (not the exact size), ERR_TYPE
 * (unknown type; callers may still pass such messages through). */
VmcDecodeResult vmc_agent_msg_check_size(guint32 type, guint32 size, guint check_flags);
/* Deeper checks on a whole payload of the types whose content has internal counts:
 * MONITORS_CONFIG (num_of_monitors fits, PHYSICAL_SIZE entries), ANNOUNCE_CAPABILITIES
 * (>= 4), AUDIO_VOLUME_SYNC (nchannels fits), GRAPHICS_DEVICE_INFO (each entry fits),
 * FILE_XFER_START (NUL-terminated text). Other types: the size rule only. */
VmcDecodeResult vmc_agent_msg_validate(guint32 type, const guint8 *payload, gsize len,
                                       guint check_flags);

/* ANNOUNCE_CAPABILITIES payload: u32 request, caps words. */
VmcDecodeResult vmc_agent_caps_decode(const guint8 *payload, gsize len, guint32 *request,
                                      const guint8 **caps_words, gsize *nwords);

const char *vmc_agent_msg_type_name(guint32 type);    /* "CLIPBOARD_GRAB", or NULL */
const char *vmc_agent_cap_name(guint cap);            /* "FILE_XFER_DISABLED", or NULL */
const char *vmc_file_xfer_status_name(guint32 status);

G_END_DECLS
