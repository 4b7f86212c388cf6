/* vmc-assemble.c — whole agent messages from a stream (see vmc-assemble.h). */
#include "tools/client/vmc-assemble.h"

/* Room reserved when a header announces its payload size: the announced size, but never
 * more than this (peer-announced sizes are not trusted with memory; a larger payload
 * grows the buffer as it arrives). */
#define RESERVE_MAX (1024u * 1024u)

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

/* The header of a new message is complete: make room for its payload in one step. */
static void
reserve(VmcAssembler *a)
{
    gsize want = MIN(MIN((gsize)a->tracker.header.size, a->max), (gsize)RESERVE_MAX);

    if (want == 0)
        return;
    /* set_size grows the allocation; back to 0 keeps it */
    g_byte_array_set_size(a->payload, (guint)want);
    g_byte_array_set_size(a->payload, 0);
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
    if (*flags & VMC_AGENT_SPAN_HEADER_DONE)
        reserve(a);
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

/**
 * vmc_assembler_take:
 * @header: (out): the completed message's header
 * @truncated: (out) (optional): whether payload beyond the bound was dropped
 *
 * Returns: (transfer full): the payload; the assembler starts a fresh buffer
 */
GBytes *
vmc_assembler_take(VmcAssembler *a, VmcAgentHeader *header, gboolean *truncated)
{
    GBytes *b;

    *header = a->tracker.header;
    if (truncated)
        *truncated = a->truncated;
    if (a->payload->len == 0) {
        b = g_bytes_new(NULL, 0);
    } else {
        b = g_byte_array_free_to_bytes(a->payload);
        a->payload = g_byte_array_new();
    }
    a->truncated = FALSE;
    return b;
}
