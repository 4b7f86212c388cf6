/* vmc-assemble.h — rebuilds whole agent messages from a byte stream of back-to-back
 * VDAgentMessages (AGENT_DATA bodies, or the payloads of one VDI port), on top of
 * protocol/'s VmcAgentTracker. Payload kept per message is bounded.
 *
 * Each payload byte is copied once, from the caller's buffer (borrowed for the call,
 * e.g. a span of a socket read) into the message's own buffer, which take() hands
 * over without a further copy. */
#pragma once

#include <glib.h>
#include "protocol/vmc-agent.h"

G_BEGIN_DECLS

typedef struct {
    VmcAgentTracker tracker;
    GByteArray *payload;   /* payload of the message being built (<= max bytes) */
    gsize max;             /* bound on kept payload bytes */
    gboolean truncated;    /* the current message had more than `max` payload bytes */
} VmcAssembler;

void vmc_assembler_init(VmcAssembler *a, gsize max);
void vmc_assembler_clear(VmcAssembler *a);
/* Back to a message boundary (drops a half-built message). */
void vmc_assembler_reset(VmcAssembler *a);
gboolean vmc_assembler_at_boundary(const VmcAssembler *a);

/* Like vmc_agent_tracker_advance(): consumes *span bytes of the current message.
 * When *flags has VMC_AGENT_SPAN_END the message is complete: take it with
 * vmc_assembler_take() before the next call. */
VmcDecodeResult vmc_assembler_advance(VmcAssembler *a, const guint8 *buf, gsize len, gsize *span,
                                      guint *flags);
/* (transfer full) the completed message's payload (the assembler's buffer itself, not
 * a copy); *header its header. */
GBytes *vmc_assembler_take(VmcAssembler *a, VmcAgentHeader *header, gboolean *truncated);

G_END_DECLS
