/* vmc-header.h — SPICE data headers after link: mini (6 bytes) and full (18 bytes). */
#pragma once

#include <glib.h>
#include "vmc-wire.h"

G_BEGIN_DECLS

#define VMC_MINI_HEADER_SIZE 6u
#define VMC_FULL_HEADER_SIZE 18u
#define VMC_MAX_HEADER_SIZE 18u
/* The reference's receive buffer for non-AGENT_DATA main-channel messages. */
#define VMC_MAIN_RECV_BUF_SIZE 26624u

typedef struct {
    guint64 serial;   /* full header only; 0 for mini */
    guint16 type;
    guint32 size;
    guint32 sub_list; /* full header only */
} VmcDataHeader;

static inline gsize
vmc_data_header_size(gboolean mini)
{
    return mini ? VMC_MINI_HEADER_SIZE : VMC_FULL_HEADER_SIZE;
}

/* Decodes one header. NEED_MORE while fewer than 6/18 bytes are given. Does not
 * check the size against a cap: see vmc_main_client_msg_check(). */
VmcDecodeResult vmc_data_header_decode(const guint8 *buf, gsize len, gboolean mini,
                                       VmcDataHeader *out, gsize *consumed);
/* Writes 6 or 18 bytes and returns that count. */
gsize vmc_data_header_encode(const VmcDataHeader *h, gboolean mini, guint8 *out);

G_END_DECLS
