/* vmc-assemble.c — whole agent messages from a stream (see vmc-assemble.h). */
#include "tools/client/vmc-assemble.h"

void
vmc_assembler_init(VmcAssembler *a, gsize max)
{
    vmc_agent_tracker_init(&a->tracker);
    a->payload = g_byte_array_new();
    a->max = max;
    a->truncated = FALSE;
}

void
vmc_assembler_clear(VmcAssembler *a)
{
    if (a->payload)
        g_byte_array_unref(a->payload);
    a->payload = NULL;
}

void
vmc_assembler_reset(VmcAssembler *a)
{
    vmc_agent_tracker_init(&a->tracker);
    g_byte_array_set_size(a->payload, 0);
    a->truncated = FALSE;
}

gboolean
vmc_assembler_at_boundary(const VmcAssembler *a)
{
    return vmc_agent_tracker_at_boundary(&a->tracker);
}

VmcDecodeResult
vmc_assembler_advance(VmcAssembler *a, const guint8 *buf, gsize len, gsize *span, guint *flags)
{
    VmcAgentTracker *t = &a->tracker;
    guint8 hdr_before = t->in_message ? t->hdr_have : 0;
    VmcDecodeResult res = vmc_agent_tracker_advance(t, buf, len, span, flags);

    if (res != VMC_DECODE_OK)
        return res;
    if (*flags & VMC_AGENT_SPAN_START) {
        g_byte_array_set_size(a->payload, 0);
        a->truncated = FALSE;
    }
    gsize hdr_bytes = 0;
    if (hdr_before < VMC_AGENT_HEADER_SIZE)
        hdr_bytes = MIN((gsize)(VMC_AGENT_HEADER_SIZE - hdr_before), *span);
    gsize n = *span - hdr_bytes;
    if (n > 0) {
        gsize room = a->max > a->payload->len ? a->max - a->payload->len : 0;
        gsize keep = MIN(n, room);
        if (keep > 0)
            g_byte_array_append(a->payload, buf + hdr_bytes, (guint)keep);
        if (keep < n)
            a->truncated = TRUE;
    }
    return VMC_DECODE_OK;
}

GBytes *
vmc_assembler_take(VmcAssembler *a, VmcAgentHeader *header, gboolean *truncated)
{
    *header = a->tracker.header;
    if (truncated)
        *truncated = a->truncated;
    GBytes *b = g_bytes_new(a->payload->data, a->payload->len);
    g_byte_array_set_size(a->payload, 0);
    a->truncated = FALSE;
    return b;
}
