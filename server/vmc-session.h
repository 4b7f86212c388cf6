/* vmc-session.h — one client's SPICE main channel, sans-I/O.
 *
 * Bytes in (vmc_session_feed), bytes out (vmc_session_output_vec/_advance), time
 * injected (vmc_session_tick / vmc_session_next_deadline). It never reads or writes a
 * socket. It carries the client from the first link byte to the end:
 *
 *   link header + SpiceLinkMess  -> link reply with a fresh RSA-1024 key (or a link
 *                                   error, see docs/server.md for the exact table)
 *   [auth mechanism word]        -> only if the client has PROTOCOL_AUTH_SELECTION;
 *                                   anything but AUTH_SPICE (1) -> INVALID_DATA
 *   128-byte ticket               -> link result 0, or 7 (PERMISSION_DENIED) and close
 *   main channel                  -> INIT, [NAME, UUID], CHANNELS_LIST (empty), PING
 *                                   keepalive, MIGRATE_CANCEL / DST_SEAMLESS_NACK, and
 *                                   the agent messages, which go to the VmcMux; the mux's
 *                                   messages for this client are framed after the
 *                                   session's own ones.
 *
 * Headers: mini (6 bytes) when the client advertised MINI_HEADER, else full 18-byte
 * headers with serials from 1. Every client message header is checked with
 * vmc_main_client_msg_check() before any of its body is read; bodies are never
 * allocated from a peer-announced size (at most 2048 bytes are kept, the rest of an
 * ignored body is skipped).
 *
 * A link with a non-zero connection_id on the main channel is treated as a new
 * session (no migration support). A link for any other channel type gets the link
 * error CHANNEL_NOT_AVAILABLE.
 */
#pragma once

#include <glib.h>
#include "server/vmc-mux.h"
#include "server/vmc-ticket.h"

G_BEGIN_DECLS

typedef struct _VmcSession VmcSession;

/* Asked once the ticket checked out, before the link result is sent. Return TRUE to
 * admit the client; FALSE to refuse it, with *reason (transfer full) sent to the client
 * in a NOTIFY before the connection is closed. The runtime uses it for --max-clients
 * (it may remove other sessions from inside; never this one). */
typedef gboolean (*VmcSessionAdmitFunc)(gpointer user_data, VmcSession *session, char **reason);

/* Observes flow control (for --record): `from_client` TRUE for AGENT_START/AGENT_TOKEN
 * the client sent, FALSE for grants sent to it (INIT, AGENT_TOKEN,
 * AGENT_CONNECTED_TOKENS). Only notifies. */
typedef void (*VmcSessionTokenFunc)(gpointer user_data, VmcSession *session, gboolean from_client,
                                    const char *what, guint32 tokens);

/* Settings shared by the sessions of one server; borrowed for each session's life and
 * read when needed (a password change applies to the next ticket). */
typedef struct {
    VmcMux *mux;           /* borrowed */
    VmcTicketPool *keys;   /* borrowed; NULL only with ticketing off (tests, fuzzing:
                            * the link reply then carries a zero key and any 128-byte
                            * ticket is accepted) */
    gboolean ticketing;    /* FALSE: --disable-ticketing (any ticket that decrypts) */
    const char *password;  /* NULL or "": every ticket is refused while ticketing */
    gint64 password_expiry_us; /* monotonic µs; 0: never */
    const char *name;      /* NULL: no NAME message */
    gboolean have_uuid;
    guint8 uuid[16];
    gint64 handshake_timeout_us; /* link + ticket must be done by then; 0: none */
    gint64 ping_interval_us;     /* keepalive sessions: PING after this much silence */
    gint64 ping_timeout_us;      /* ... and close if nothing arrives this long after */
    VmcSessionAdmitFunc admit;
    gpointer admit_data;
    VmcSessionTokenFunc tokens; /* NULL: none */
    gpointer tokens_data;
} VmcSessionConfig;

/* Fills the defaults: ticketing on with no password, handshake 30 s, ping 30 s idle and
 * 30 s timeout. */
void vmc_session_config_init(VmcSessionConfig *cfg);

typedef enum {
    VMC_SESSION_LINK,    /* reading the link header and message */
    VMC_SESSION_AUTH,    /* reading the mechanism word and the ticket */
    VMC_SESSION_ACTIVE,  /* main channel up, registered with the mux */
    VMC_SESSION_CLOSING, /* flushing a last reply; then closed */
    VMC_SESSION_CLOSED,  /* close the connection now */
} VmcSessionState;

/* `keepalive`: ping idle clients and close dead ones (TCP; UNIX sockets get no PING,
 * as with the reference). `now_us`: monotonic time. */
VmcSession *vmc_session_new(const VmcSessionConfig *cfg, gboolean keepalive, gint64 now_us);
/* NULL-safe. Removes the client from the mux if it was registered. */
void vmc_session_free(VmcSession *session);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcSession, vmc_session_free)

/* Consumes all `len` bytes. FALSE once the session is CLOSING or CLOSED (later bytes are
 * ignored); the reason is in vmc_session_get_error(). */
gboolean vmc_session_feed(VmcSession *session, const guint8 *buf, gsize len);

/* Sets the clock and runs what is due (handshake timeout, keepalive, mux cut-offs). */
void vmc_session_tick(VmcSession *session, gint64 now_us);
/* When vmc_session_tick() has work next, or -1. */
gint64 vmc_session_next_deadline(VmcSession *session);

/* Output: the session's own messages, then the mux's messages for this client (copied
 * out of the mux and framed, up to a bound, so that one gathered write carries many of
 * them). The vectors stay valid until the next call on the session. */
guint vmc_session_output_vec(VmcSession *session, GOutputVector *vec, guint max);
void vmc_session_output_advance(VmcSession *session, gsize written);
/* TRUE while there is something to write (own bytes or mux messages). */
gboolean vmc_session_wants_write(VmcSession *session);

VmcSessionState vmc_session_get_state(VmcSession *session);
/* TRUE when the connection should be closed now (CLOSED, or CLOSING with nothing left
 * to write). */
gboolean vmc_session_is_done(VmcSession *session);
/* Why the session is closing (NULL while it is not). Borrowed. */
const GError *vmc_session_get_error(VmcSession *session);
/* The mux client id once the client was admitted (it stays set), else 0. */
guint32 vmc_session_get_client_id(VmcSession *session);
guint32 vmc_session_get_session_id(VmcSession *session);
/* The client's caps as linked (first words). */
guint32 vmc_session_get_common_caps(VmcSession *session);
guint32 vmc_session_get_channel_caps(VmcSession *session);

/* For a connection the embedding VMM authenticated itself (like libspice-server's
 * spice_server_add_client(fd, skip_auth)): the ticket must still decrypt, but the
 * password is not checked. Call before the ticket arrives. */
void vmc_session_set_skip_auth(VmcSession *session, gboolean skip_auth);

/* Ticket keys come from cfg->keys with vmc_ticket_pool_take_nowait(): when the pool is
 * dry (an attached pool, see vmc_ticket_pool_attach), the link reply waits, and no key
 * is generated on the caller's thread. TRUE while this session's link waits so. */
gboolean vmc_session_waits_for_key(VmcSession *session);
/* Tries to take the key again (call when the pool's ready callback ran; tick() tries
 * too): TRUE when the session no longer waits (the link reply, or a link error, is
 * queued). A ticket that arrives before the reply is refused with INVALID_DATA. */
gboolean vmc_session_retry_key(VmcSession *session);

/* Ends the session from the server side (e.g. replaced by a newer client). Nothing is
 * sent; the state becomes CLOSED with `reason`. */
void vmc_session_close(VmcSession *session, const char *reason);

G_END_DECLS
