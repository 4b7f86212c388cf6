/* vmc-mux.h — the multiplexer core: one guest agent port, N client sessions.
 *
 * Sans-I/O (nghttp2 style): bytes and events in, bytes and messages out, time
 * injected. It never calls read() or write(), never blocks, never re-enters.
 *
 * Guest side:  the byte stream of the virtio port com.redhat.spice.0
 *              (VDIChunkHeader chunks carrying VDAgentMessages on ports 1 and 2).
 * Client side: the agent messages of each client's main channel
 *              (AGENT_START, AGENT_DATA, AGENT_TOKEN in; AGENT_* out).
 *
 * Ownership: input buffers are borrowed for the call. Output views (VmcMuxMsg,
 * GOutputVector) point into the mux and stay valid until the next call that
 * pops/advances that queue or feeds/removes anything. Errors are GError in
 * VMC_MUX_ERROR; a peer error poisons that peer only.
 */
#pragma once

#include <gio/gio.h>
#include "protocol/vmc-agent.h"

G_BEGIN_DECLS

#define VMC_MUX_ERROR (vmc_mux_error_quark())
GQuark vmc_mux_error_quark(void);

typedef enum {
    VMC_MUX_ERROR_PROTOCOL,     /* malformed agent data from that peer */
    VMC_MUX_ERROR_FLOW_CONTROL, /* a client sent more AGENT_DATA than its grant */
    VMC_MUX_ERROR_TOO_LARGE,    /* a peer exceeded its memory bound */
    VMC_MUX_ERROR_STALLED,      /* a client held the port mid-message, or did not read, too long */
    VMC_MUX_ERROR_CLOSED,       /* the client or agent is gone */
} VmcMuxError;

typedef struct _VmcMux VmcMux;

typedef struct {
    guint32 agent_window;    /* client->agent tokens granted per client (INIT.agent_tokens) */
    gboolean copy_paste;     /* FALSE: drop clipboard messages both ways, clear the caps */
    gboolean file_xfer;      /* FALSE: set FILE_XFER_DISABLED, answer FILE_XFER_START ourselves */
    guint max_clients;       /* 1: classic single client; > 1: shared agent */
    gsize client_out_limit;  /* bytes queued towards one client before it counts as slow */
    gsize guest_out_limit;   /* bytes queued towards the guest */
    gint64 stall_timeout_us; /* a slow or port-holding client is cut off after this */
} VmcMuxConfig;

/* Fills the defaults (documented in docs/mux.md). */
void vmc_mux_config_init(VmcMuxConfig *cfg);

VmcMux *vmc_mux_new(const VmcMuxConfig *cfg);
void vmc_mux_free(VmcMux *mux); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcMux, vmc_mux_free)

void vmc_mux_set_copy_paste(VmcMux *mux, gboolean enabled);
void vmc_mux_set_file_xfer(VmcMux *mux, gboolean enabled);
guint32 vmc_mux_get_agent_window(VmcMux *mux);

/* ---- time ---- */
/* Sets the mux clock (monotonic µs) and runs what is due. Call before feeding. */
void vmc_mux_tick(VmcMux *mux, gint64 now_us);
/* Next time vmc_mux_tick() has work, or -1. */
gint64 vmc_mux_next_deadline(VmcMux *mux);

/* ---- notification ----
 * Called when a queue goes from empty to non-empty or a peer was cut off:
 * client_id 0 means the guest. Only notifies; must not call back into the mux. */
typedef void (*VmcMuxNotifyFunc)(gpointer user_data, guint32 client_id);
void vmc_mux_set_notify_func(VmcMux *mux, VmcMuxNotifyFunc func, gpointer user_data);

/* ---- guest side ---- */
/* The agent opened the port (transport connected or the agent announced itself). */
void vmc_mux_guest_connected(VmcMux *mux);
/* The agent closed the port. Clients get AGENT_DISCONNECTED; queued guest output is
 * dropped; half-sent client messages are discarded until each client's next AGENT_START. */
void vmc_mux_guest_disconnected(VmcMux *mux);
gboolean vmc_mux_guest_is_connected(VmcMux *mux);

/* Consumes all `len` bytes read from the port. FALSE on a guest protocol error (bad
 * port, protocol != 1, ...): the mux has then treated the agent as gone
 * (AGENT_DISCONNECTED to clients) and ignores guest input until the next
 * vmc_mux_guest_connected(); the runtime should drop the guest connection. */
gboolean vmc_mux_feed_guest(VmcMux *mux, const guint8 *buf, gsize len, GError **error);
/* FALSE while clients' queues are full: stop reading the guest until notified. */
gboolean vmc_mux_guest_wants_input(VmcMux *mux);

/* Bytes to write to the guest, as up to `max` vectors. Returns the vector count. */
guint vmc_mux_guest_output_vec(VmcMux *mux, GOutputVector *vec, guint max);
gsize vmc_mux_guest_output_size(VmcMux *mux);
/* `written` bytes of that output reached the guest; client tokens are returned here. */
void vmc_mux_guest_output_advance(VmcMux *mux, gsize written);

/* Server messages to the agent, on port 2 (CLIENT_DISCONNECTED, MOUSE_STATE,
 * GRAPHICS_DEVICE_INFO, ...). Split into chunks of at most 2048 bytes, never
 * interleaved with a client's message. */
gboolean vmc_mux_send_server_message(VmcMux *mux, guint32 type, const guint8 *payload, gsize len,
                                     GError **error);

/* Added by the mux work: whether the connected agent's last ANNOUNCE_CAPABILITIES
 * had VD_AGENT_CAP_* bit `cap` (as the agent sent it, before the policy rewrite);
 * FALSE before it announced. E.g. GRAPHICS_DEVICE_INFO is only for agents with
 * VD_AGENT_CAP_GRAPHICS_DEVICE_INFO. */
gboolean vmc_mux_agent_has_cap(VmcMux *mux, guint cap);

/* Whole port-2 messages from the agent (at most 64 KiB; larger ones are skipped). */
typedef void (*VmcMuxServerMessageFunc)(gpointer user_data, const VmcAgentHeader *header,
                                        const guint8 *payload, gsize len);
void vmc_mux_set_server_message_func(VmcMux *mux, VmcMuxServerMessageFunc func,
                                     gpointer user_data);

/* ---- client side ---- */
enum {
    VMC_MUX_CLIENT_CAP_CONNECTED_TOKENS = 1 << 0, /* main cap AGENT_CONNECTED_TOKENS */
};

/* Adds a client; returns its id (never 0). */
guint32 vmc_mux_client_add(VmcMux *mux, guint caps);
/* Removes a client (disconnect). NULL-safe for unknown ids. */
void vmc_mux_client_remove(VmcMux *mux, guint32 client_id);

/* Main-channel agent messages from the client. FALSE: that client broke the protocol
 * or its grant and is now poisoned (later calls fail with VMC_MUX_ERROR_CLOSED); the
 * runtime should close it and call vmc_mux_client_remove(). */
gboolean vmc_mux_client_agent_start(VmcMux *mux, guint32 client_id, guint32 num_tokens,
                                    GError **error);
gboolean vmc_mux_client_agent_token(VmcMux *mux, guint32 client_id, guint32 num_tokens,
                                    GError **error);
gboolean vmc_mux_client_agent_data(VmcMux *mux, guint32 client_id, const guint8 *body, gsize len,
                                   GError **error);

/* Output towards a client: main-channel messages (SPICE_MSG_MAIN_AGENT_*), in order. */
typedef struct {
    guint16 type;       /* SPICE_MSG_MAIN_AGENT_DATA, _TOKEN, _CONNECTED, ... */
    const guint8 *data; /* body; borrowed */
    gsize len;
} VmcMuxMsg;

gboolean vmc_mux_client_peek(VmcMux *mux, guint32 client_id, VmcMuxMsg *msg);
void vmc_mux_client_pop(VmcMux *mux, guint32 client_id);
/* TRUE (and *error set) if the mux cut this client off by itself (stall, bound). */
gboolean vmc_mux_client_failed(VmcMux *mux, guint32 client_id, GError **error);

/* ---- observation ---- */
typedef struct {
    guint64 bytes_in;        /* agent payload bytes received from this peer */
    guint64 bytes_out;       /* agent payload bytes sent to this peer */
    guint64 messages_in;     /* whole agent messages received */
    guint64 messages_out;    /* whole agent messages sent */
    guint64 discarded;       /* bytes dropped (policy, before AGENT_START, after detach) */
    guint64 tokens_granted;  /* client: client->agent tokens granted in total */
    guint32 tokens_in_use;   /* client: AGENT_DATA accepted but not yet returned */
    guint32 send_budget;     /* client: agent->client AGENT_DATA it still allows */
    gsize queued_bytes;      /* bytes queued towards this peer now */
    gsize queued_peak;
} VmcMuxStats;

gboolean vmc_mux_client_get_stats(VmcMux *mux, guint32 client_id, VmcMuxStats *out);
void vmc_mux_guest_get_stats(VmcMux *mux, VmcMuxStats *out);

/* A tap on all agent traffic (for --record): whole agent messages with direction. */
typedef enum {
    VMC_MUX_DIR_CLIENT_AGENT,
    VMC_MUX_DIR_AGENT_CLIENT,
    VMC_MUX_DIR_SERVER_AGENT,
    VMC_MUX_DIR_AGENT_SERVER,
} VmcMuxDirection;

typedef void (*VmcMuxTapFunc)(gpointer user_data, VmcMuxDirection dir, guint32 client_id,
                              guint32 port, const guint8 *data, gsize len, guint span_flags);
/* Pieces as they pass, with VMC_AGENT_SPAN_* flags marking message starts and ends;
 * client_id 0 for broadcast agent->client pieces. */
void vmc_mux_set_tap_func(VmcMux *mux, VmcMuxTapFunc func, gpointer user_data);

G_END_DECLS
