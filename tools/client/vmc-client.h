/* vmc-client.h — a sans-I/O SPICE main-channel client (the client end that
 * vmcmux-client, the client tests and the conformance suite share).
 *
 * Bytes in (vmc_client_feed), bytes out (vmc_client_output/_consume), events pulled
 * (vmc_client_next_event). It does the link (caps, auth mechanism, RSA-OAEP ticket),
 * mini or full data headers, INIT, PING/PONG, AGENT_START with a chosen grant, and the
 * agent stream both ways: outgoing agent messages are cut into <= 2048-byte AGENT_DATA
 * and sent only while the server's tokens allow (INIT.agent_tokens, AGENT_TOKEN adds,
 * AGENT_CONNECTED_TOKENS sets); incoming AGENT_DATA bodies are reassembled into whole
 * agent messages. Every knob the conformance suite needs to misbehave on purpose is in
 * VmcClientConfig or a raw send call.
 *
 * Ownership: inputs are borrowed for the call; events and their GBytes are transfer
 * full (vmc_client_event_clear).
 */
#pragma once

#include <glib.h>
#include "protocol/vmc-agent.h"
#include "protocol/vmc-link.h"
#include "protocol/vmc-main.h"

G_BEGIN_DECLS

typedef struct _VmcClient VmcClient;

typedef struct {
    const char *password;       /* NULL = empty; encrypted with its NUL, as spice-gtk does */
    gboolean ticket_oaep_sha256;/* encrypt with OAEP-SHA256 (wrong on purpose) */
    gboolean ticket_without_nul;/* encrypt the password without its NUL */
    const guint8 *ticket;       /* VMC_TICKET_CIPHER_BYTES to send as they are, or NULL */
    guint32 connection_id;      /* 0 for a new session */
    guint8 channel_type;        /* SPICE_CHANNEL_MAIN */
    guint8 channel_id;
    guint32 link_major;         /* 2 */
    guint32 link_minor;         /* 2 */
    guint32 common_caps;        /* AUTH_SELECTION | AUTH_SPICE | MINI_HEADER (0xB) */
    guint32 channel_caps;       /* main: SEMI_SEAMLESS | NAME_AND_UUID | CONNECTED_TOKENS |
                                 * SEAMLESS (0xF) */
    guint32 auth_mechanism;     /* SPICE_COMMON_CAP_AUTH_SPICE; sent when common_caps has
                                 * PROTOCOL_AUTH_SELECTION */
    guint32 agent_grant;        /* AGENT_START num_tokens; VMC_AGENT_TOKENS_UNLIMITED */
    gboolean auto_agent_start;  /* AGENT_START on INIT.agent_connected / AGENT_CONNECTED* */
    gboolean auto_pong;         /* answer PING with PONG */
    guint32 token_refill;       /* finite grant: AGENT_TOKEN(n) back after n AGENT_DATA (0 = never) */
    gboolean respect_tokens;    /* FALSE: send AGENT_DATA even without server tokens */
    gsize max_agent_message;    /* reassembly bound for one incoming agent message (64 MiB) */
    gsize max_message;          /* bound for one incoming main-channel message (16 MiB) */
    gboolean agent_data_messages; /* TRUE: a MESSAGE event for every AGENT_DATA too (with a
                                   * copy of its body); FALSE: AGENT_DATA bodies only feed
                                   * the reassembler, without a copy (bulk receivers) */
} VmcClientConfig;

void vmc_client_config_init(VmcClientConfig *cfg);

typedef enum {
    VMC_CLIENT_STATE_LINKING,   /* link sent, waiting for the reply */
    VMC_CLIENT_STATE_AUTH,      /* ticket sent, waiting for the 4-byte result */
    VMC_CLIENT_STATE_CONNECTED, /* data phase */
    VMC_CLIENT_STATE_FAILED,    /* link refused or server protocol error; nothing more */
} VmcClientState;

typedef enum {
    VMC_CLIENT_EV_LINK_REPLY,         /* link reply with error 0 (vmc_client_get_link_reply) */
    VMC_CLIENT_EV_LINK_FAILED,        /* code: reply error, or link result != 0 */
    VMC_CLIENT_EV_LINKED,             /* link result 0: data phase begins */
    VMC_CLIENT_EV_MESSAGE,            /* every main-channel message: msg_type, serial, body
                                       * (AGENT_DATA only with cfg.agent_data_messages) */
    VMC_CLIENT_EV_AGENT_CONNECTED,    /* INIT.agent_connected, AGENT_CONNECTED(_TOKENS) */
    VMC_CLIENT_EV_AGENT_DISCONNECTED, /* code: AGENT_DISCONNECTED.error_code */
    VMC_CLIENT_EV_AGENT_MESSAGE,      /* one whole agent message: agent header, body = payload */
    VMC_CLIENT_EV_PROTOCOL_ERROR,     /* the server sent something we cannot parse: detail */
} VmcClientEventType;

typedef struct {
    VmcClientEventType type;
    guint32 code;
    guint16 msg_type;
    guint64 serial;          /* full-header serial, 0 with mini headers */
    GBytes *body;            /* MESSAGE body / AGENT_MESSAGE payload (maybe truncated) */
    VmcAgentHeader agent;    /* AGENT_MESSAGE */
    gboolean truncated;      /* AGENT_MESSAGE: payload beyond max_agent_message dropped */
    char *detail;
} VmcClientEvent;

void vmc_client_event_clear(VmcClientEvent *ev);
const char *vmc_client_event_type_name(VmcClientEventType type);

/* Creates the client and queues the link message. */
VmcClient *vmc_client_new(const VmcClientConfig *cfg);
void vmc_client_free(VmcClient *c); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcClient, vmc_client_free)

VmcClientState vmc_client_get_state(VmcClient *c);
/* Why the client FAILED (link error, result, protocol error, EOF), or NULL. */
const char *vmc_client_get_last_error(VmcClient *c);

/* Called whenever output goes from empty to non-empty (only notifies). */
typedef void (*VmcClientNotifyFunc)(gpointer user_data);
void vmc_client_set_output_notify(VmcClient *c, VmcClientNotifyFunc func, gpointer user_data);

/* Consumes all bytes received from the server; events are queued. FALSE once the
 * client is FAILED (the remaining bytes are ignored). Whole messages are parsed where
 * they lie in `buf` (borrowed for the call); only a message cut by the end of `buf` is
 * kept, and completed from the next call's bytes. */
gboolean vmc_client_feed(VmcClient *c, const guint8 *buf, gsize len);
/* The server closed the connection. */
void vmc_client_feed_eof(VmcClient *c);

/* Pops the next event. FALSE if none. */
gboolean vmc_client_next_event(VmcClient *c, VmcClientEvent *ev);
guint vmc_client_pending_events(VmcClient *c);

/* Bytes to send, and how many of them were sent. */
const guint8 *vmc_client_output(VmcClient *c, gsize *len);
void vmc_client_output_consume(VmcClient *c, gsize n);

/* ---- state ---- */
const VmcLinkReply *vmc_client_get_link_reply(VmcClient *c); /* NULL before the reply */
gboolean vmc_client_get_init(VmcClient *c, VmcMainInit *out); /* FALSE before INIT */
gboolean vmc_client_uses_mini_header(VmcClient *c);
gboolean vmc_client_agent_connected(VmcClient *c);
gboolean vmc_client_agent_started(VmcClient *c);
/* Client->agent AGENT_DATA the server still allows us. */
guint32 vmc_client_get_server_tokens(VmcClient *c);
/* Agent->client AGENT_DATA we still allow the server (unlimited: 0xFFFFFFFF). */
guint32 vmc_client_get_grant_left(VmcClient *c);
/* AGENT_DATA received beyond our grant (a server bug). */
guint64 vmc_client_get_grant_violations(VmcClient *c);
/* AGENT_DATA bodies that held bytes of more than one agent message. */
guint64 vmc_client_get_multi_message_bodies(VmcClient *c);
/* Agent bytes queued but not yet handed to the output (waiting for tokens). */
gsize vmc_client_agent_pending(VmcClient *c);
guint vmc_client_agent_pending_messages(VmcClient *c);
/* The agent ANNOUNCE_CAPABILITIES last received (0 words before any). */
gsize vmc_client_get_agent_caps(VmcClient *c, guint32 *words, gsize max_words);
gboolean vmc_client_agent_has_cap(VmcClient *c, guint cap);
gboolean vmc_client_agent_caps_received(VmcClient *c);
const char *vmc_client_get_name(VmcClient *c);       /* NAME, or NULL */
const guint8 *vmc_client_get_uuid(VmcClient *c);     /* UUID (16 bytes), or NULL */

/* ---- sending ---- */
/* One main-channel message with a correct header (any type, any body). */
void vmc_client_send_message(VmcClient *c, guint16 type, const guint8 *body, gsize len);
/* A header that announces `size` but is followed by `len` bytes (hostile tests). */
void vmc_client_send_header(VmcClient *c, guint16 type, guint32 size);
/* Bytes as they are (anything, in any state). */
void vmc_client_send_raw(VmcClient *c, const guint8 *bytes, gsize len);

/* AGENT_START(num_tokens): sets our grant; marks the agent started. */
void vmc_client_send_agent_start(VmcClient *c, guint32 num_tokens);
/* AGENT_TOKEN(n): adds to our grant. */
void vmc_client_send_agent_token(VmcClient *c, guint32 n);
/* Queues an agent message: header + payload cut into AGENT_DATA of at most
 * `max_piece` bytes (0 = 2048; never two messages in one body), sent once the agent
 * is started (AGENT_START sent) and while the server's tokens allow (both checks
 * are off with respect_tokens FALSE). */
void vmc_client_send_agent_message(VmcClient *c, guint32 type, guint64 opaque,
                                   const guint8 *payload, gsize len);
void vmc_client_send_agent_message_full(VmcClient *c, guint32 protocol, guint32 type,
                                        guint64 opaque, guint32 size, const guint8 *payload,
                                        gsize len, gsize max_piece);
/* Queues one AGENT_DATA body as it is (behind the queued messages, token-gated). */
void vmc_client_send_agent_data(VmcClient *c, const guint8 *body, gsize len);
/* ANNOUNCE_CAPABILITIES with one caps word. */
void vmc_client_announce_caps(VmcClient *c, gboolean request, guint32 caps0);
/* Drops queued, unsent agent pieces. */
void vmc_client_agent_drop_queue(VmcClient *c);

/* The default caps word our client announces to an agent (spice-gtk 0.42's 0x00035077). */
#define VMC_CLIENT_DEFAULT_AGENT_CAPS 0x00035077u

G_END_DECLS
