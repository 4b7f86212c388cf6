/* vmc-link.h — the SPICE link handshake: SpiceLinkHeader, SpiceLinkMess,
 * SpiceLinkReply, the auth-mechanism word and the 4-byte link result.
 * See docs/protocol.md and agent-protocol.md §1 for the validation order.
 */
#pragma once

#include <glib.h>
#include <spice/protocol.h>
#include "vmc-wire.h"

G_BEGIN_DECLS

#define VMC_LINK_MAGIC 0x51444552u /* "REDQ" little-endian */
#define VMC_LINK_VERSION_MAJOR 2u
#define VMC_LINK_VERSION_MINOR 2u
#define VMC_LINK_HEADER_SIZE 16u
#define VMC_LINK_MESS_SIZE 18u     /* fixed part of SpiceLinkMess */
#define VMC_LINK_REPLY_SIZE 178u   /* fixed part of SpiceLinkReply */
#define VMC_LINK_MIN_SIZE 18u      /* bounds on SpiceLinkHeader.size from a client */
#define VMC_LINK_MAX_SIZE 4096u
#define VMC_LINK_MAX_CAPS 1024u    /* per caps array */
#define VMC_LINK_CAPS_KEEP 4u      /* caps words kept in decoded structs (128 bits) */
#define VMC_TICKET_PUBKEY_BYTES 162u
#define VMC_TICKET_CIPHER_BYTES 128u
#define VMC_TICKET_MAX_PASSWORD 60u

typedef struct {
    guint32 magic;
    guint32 major_version;
    guint32 minor_version;
    guint32 size;
} VmcLinkHeader;

/* Decodes the 16-byte header and validates it in the reference order:
 * magic (ERR_MAGIC), major == 2 (ERR_VERSION; the caller closes silently when
 * major == 0 and replies VERSION_MISMATCH otherwise — *out is filled even on
 * ERR_VERSION so the caller can tell), then VMC_LINK_MIN_SIZE <= size <=
 * VMC_LINK_MAX_SIZE (ERR_SIZE). Minor is not checked. `check_size` FALSE skips the
 * size bounds (used by a client decoding a server's reply header). */
VmcDecodeResult vmc_link_header_decode(const guint8 *buf, gsize len, gboolean check_size,
                                       VmcLinkHeader *out, gsize *consumed);
/* Writes exactly VMC_LINK_HEADER_SIZE bytes. */
void vmc_link_header_encode(const VmcLinkHeader *h, guint8 *out);

typedef struct {
    guint32 connection_id;
    guint8 channel_type;
    guint8 channel_id;
    guint32 num_common_caps;
    guint32 num_channel_caps;
    guint32 caps_offset;
    /* the first VMC_LINK_CAPS_KEEP words of each array (zero beyond the counts) */
    guint32 common_caps[VMC_LINK_CAPS_KEEP];
    guint32 channel_caps[VMC_LINK_CAPS_KEEP];
} VmcLinkMess;

/* Decodes a SpiceLinkMess of exactly `len` bytes (the header's size). NEED_MORE if
 * len < 18; ERR_CAPS when a count exceeds VMC_LINK_MAX_CAPS, or when there are caps
 * and caps_offset < 18 or caps_offset + 4*(ncommon+nchannel) > len (overflow-safe). */
VmcDecodeResult vmc_link_mess_decode(const guint8 *buf, gsize len, VmcLinkMess *out,
                                     gsize *consumed);
/* Encodes the fixed part followed by the caps words (caps_offset = 18).
 * Returns bytes written, 0 if `cap` is too small. */
gsize vmc_link_mess_encode(const VmcLinkMess *m, const guint32 *common_caps, guint32 ncommon,
                           const guint32 *channel_caps, guint32 nchannel, guint8 *out, gsize cap);

typedef struct {
    guint32 error;
    guint8 pub_key[VMC_TICKET_PUBKEY_BYTES];
    guint32 num_common_caps;
    guint32 num_channel_caps;
    guint32 caps_offset;
    guint32 common_caps[VMC_LINK_CAPS_KEEP];
    guint32 channel_caps[VMC_LINK_CAPS_KEEP];
} VmcLinkReply;

/* Decodes a SpiceLinkReply of exactly `len` bytes (from the reply's link header). */
VmcDecodeResult vmc_link_reply_decode(const guint8 *buf, gsize len, VmcLinkReply *out,
                                      gsize *consumed);
/* Encodes link header + reply + caps (caps_offset = 178), as the reference does.
 * Returns bytes written (16 + 178 + 4*(ncommon+nchannel)), 0 if `cap` is too small. */
gsize vmc_link_reply_encode(const VmcLinkReply *r, const guint32 *common_caps, guint32 ncommon,
                            const guint32 *channel_caps, guint32 nchannel, guint8 *out, gsize cap);
/* The reference's "link error": header (2.2, size 178) + zeroed reply with `error`. Writes
 * exactly VMC_LINK_HEADER_SIZE + VMC_LINK_REPLY_SIZE bytes. */
void vmc_link_error_encode(guint32 error, guint8 *out);

/* 4-byte words: the client's auth mechanism (SPICE_COMMON_CAP_AUTH_SPICE=1 ...)
 * and the server's link result (SPICE_LINK_ERR_*). */
VmcDecodeResult vmc_link_u32_decode(const guint8 *buf, gsize len, guint32 *out, gsize *consumed);
void vmc_link_u32_encode(guint32 v, guint8 *out);

const char *vmc_link_error_name(guint32 error);
const char *vmc_channel_type_name(guint8 type);

G_END_DECLS
