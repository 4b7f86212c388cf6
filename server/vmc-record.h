/* vmc-record.h — the traffic recorder behind `--record FILE`: writes the JSON Lines
 * trace format (docs/trace-format.md, codec in vmc-trace.h) from the mux tap and from
 * lifecycle events. Both backends use it. */
#pragma once

#include <glib.h>
#include "server/vmc-mux.h"

G_BEGIN_DECLS

typedef struct _VmcRecorder VmcRecorder;

typedef enum {
    VMC_RECORD_AGENT_CONNECTED,
    VMC_RECORD_AGENT_DISCONNECTED,
    VMC_RECORD_CLIENT_CONNECTED,
    VMC_RECORD_CLIENT_DISCONNECTED,
} VmcRecordEvent;

/* Creates/truncates `path` ("-" = stdout). */
VmcRecorder *vmc_recorder_new(const char *path, GError **error);
void vmc_recorder_free(VmcRecorder *rec); /* NULL-safe; flushes */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcRecorder, vmc_recorder_free)

/* Has the VmcMuxTapFunc signature: pass the recorder as user_data. Reassembles the
 * pieces of each (direction, client, port) stream into whole agent messages (large
 * payloads are bounded and marked truncated) and writes one line per message. */
void vmc_recorder_tap(gpointer recorder, VmcMuxDirection dir, guint32 client_id, guint32 port,
                      const guint8 *data, gsize len, guint span_flags);
/* Lifecycle; `detail` (peer address, reason) may be NULL. */
void vmc_recorder_event(VmcRecorder *rec, VmcRecordEvent event, guint32 client_id,
                        const char *detail);
/* Tokens: AGENT_START / AGENT_TOKEN from a client (dir CLIENT_AGENT) or granted to it
 * (dir AGENT_CLIENT). */
void vmc_recorder_tokens(VmcRecorder *rec, VmcMuxDirection dir, guint32 client_id,
                         const char *what, guint32 tokens);

G_END_DECLS
