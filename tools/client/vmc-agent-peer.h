/* vmc-agent-peer.h — a sans-I/O guest agent: the far end of com.redhat.spice.0.
 *
 * Feeds on the bytes the server writes to the port (VDIChunkHeader chunks), rebuilds
 * the agent messages of ports 1 and 2 separately, and checks the framing rules a real
 * agent enforces (spice-vdagentd drops the port on them): chunks of at most 2048
 * bytes, ports 1 and 2 only, never bytes of two messages in one chunk, protocol 1.
 * Violations are reported as events and counted, never fatal, so tests can assert on
 * them. Outgoing messages are cut into chunks of at most `max_chunk` bytes (2048 by
 * default, like the Windows agent; 0 = one chunk per message, like spice-vdagentd).
 */
#pragma once

#include <glib.h>
#include "protocol/vmc-agent.h"
#include "protocol/vmc-chunk.h"

G_BEGIN_DECLS

typedef struct _VmcAgentPeer VmcAgentPeer;

typedef enum {
    VMC_AGENT_PEER_EV_MESSAGE,   /* a whole message: port, header, body = payload */
    VMC_AGENT_PEER_EV_CHUNK,     /* a whole chunk (only with record_chunks): port, body;
                                  * reported before the messages it completes */
    VMC_AGENT_PEER_EV_VIOLATION, /* a framing rule broken by the server: detail */
} VmcAgentPeerEventType;

typedef struct {
    VmcAgentPeerEventType type;
    guint32 port;
    VmcAgentHeader header;
    GBytes *body;
    gboolean truncated;
    char *detail;
} VmcAgentPeerEvent;

void vmc_agent_peer_event_clear(VmcAgentPeerEvent *ev);

VmcAgentPeer *vmc_agent_peer_new(void);
void vmc_agent_peer_free(VmcAgentPeer *p); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcAgentPeer, vmc_agent_peer_free)

/* Outgoing chunk size limit: 1..2048 typical; 0 = a message in one chunk. */
void vmc_agent_peer_set_max_chunk(VmcAgentPeer *p, gsize max_chunk);
/* Also report every received chunk as a CHUNK event. */
void vmc_agent_peer_set_record_chunks(VmcAgentPeer *p, gboolean record);
/* Bound on one incoming message's kept payload (default 64 MiB). */
void vmc_agent_peer_set_max_message(VmcAgentPeer *p, gsize max);

typedef void (*VmcAgentPeerNotifyFunc)(gpointer user_data);
void vmc_agent_peer_set_output_notify(VmcAgentPeer *p, VmcAgentPeerNotifyFunc func,
                                      gpointer user_data);

/* Consumes bytes from the port; events are queued. */
void vmc_agent_peer_feed(VmcAgentPeer *p, const guint8 *buf, gsize len);
/* The port was (re)opened: forget partial input. */
void vmc_agent_peer_reset(VmcAgentPeer *p);

gboolean vmc_agent_peer_next_event(VmcAgentPeer *p, VmcAgentPeerEvent *ev);
guint vmc_agent_peer_pending_events(VmcAgentPeer *p);
guint64 vmc_agent_peer_violations(VmcAgentPeer *p);
guint64 vmc_agent_peer_chunks_received(VmcAgentPeer *p);

const guint8 *vmc_agent_peer_output(VmcAgentPeer *p, gsize *len);
void vmc_agent_peer_output_consume(VmcAgentPeer *p, gsize n);

/* Sends one agent message (header + payload) on `port`, in chunks. */
void vmc_agent_peer_send(VmcAgentPeer *p, guint32 port, guint32 type, guint64 opaque,
                         const guint8 *payload, gsize len);
void vmc_agent_peer_send_full(VmcAgentPeer *p, guint32 port, guint32 protocol, guint32 type,
                              guint64 opaque, guint32 size, const guint8 *payload, gsize len,
                              gsize max_chunk);
/* One chunk {port, len} + bytes as they are. */
void vmc_agent_peer_send_chunk(VmcAgentPeer *p, guint32 port, const guint8 *data, gsize len);
/* Bytes as they are. */
void vmc_agent_peer_send_raw(VmcAgentPeer *p, const guint8 *bytes, gsize len);
/* ANNOUNCE_CAPABILITIES on port 1 with one caps word. */
void vmc_agent_peer_announce_caps(VmcAgentPeer *p, gboolean request, guint32 caps0);

/* spice-vdagentd 0.22.1's capability word. */
#define VMC_AGENT_PEER_DEFAULT_CAPS 0x00038de7u

G_END_DECLS
