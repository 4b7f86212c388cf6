/* vmc-describe.h — readable one-line descriptions of agent messages, main-channel
 * messages and trace events, for vmcmux-client's monitor, decode and replay output. */
#pragma once

#include <glib.h>
#include "server/vmc-trace.h"

G_BEGIN_DECLS

/* Which optional fields clipboard messages carry: both sides announced
 * CLIPBOARD_SELECTION (u8 selection + 3 pad first) / CLIPBOARD_GRAB_SERIAL. The
 * context learns this from the ANNOUNCE_CAPABILITIES it sees in each direction. */
typedef struct {
    guint32 client_caps;
    guint32 agent_caps;
    gboolean have_client_caps;
    gboolean have_agent_caps;
} VmcDescribeCtx;

void vmc_describe_ctx_init(VmcDescribeCtx *ctx);
/* Feeds an ANNOUNCE_CAPABILITIES payload seen from the client (from_agent FALSE) or
 * the agent. Other types are ignored. */
void vmc_describe_ctx_observe(VmcDescribeCtx *ctx, gboolean from_agent, guint32 type,
                              const guint8 *payload, gsize len);

/* "CLIPBOARD_GRAB(7) sel=0 serial=1 types=[UTF8_TEXT]" — payload may be a prefix
 * (`size` is the header's size). (transfer full) */
char *vmc_describe_agent_message(const VmcDescribeCtx *ctx, guint32 type, guint64 opaque,
                                 guint32 size, const guint8 *payload, gsize len);
/* "AGENT_TOKEN(110) 5" — from_server selects the message name space. (transfer full) */
char *vmc_describe_main_message(gboolean from_server, guint16 type, const guint8 *body,
                                gsize len);
/* One readable line for a trace event ("   1.234567 client-agent #1 ..."). The ctx
 * is updated from ANNOUNCE_CAPABILITIES events. (transfer full) */
char *vmc_describe_trace_event(VmcDescribeCtx *ctx, const VmcTraceEvent *ev);
/* "ab cd ef ..." of at most `max` bytes, with "..." when cut. (transfer full) */
char *vmc_describe_hex(const guint8 *data, gsize len, gsize max);
/* Names of the set bits of a caps word: "MOUSE_STATE,REPLY,...". (transfer full) */
char *vmc_describe_caps(const guint32 *words, gsize nwords);

G_END_DECLS
