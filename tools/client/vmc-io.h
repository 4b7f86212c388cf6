/* vmc-io.h — the small GLib I/O layer around the sans-I/O client and agent peer:
 * address parsing, connect/listen, a socket pump on a caller's GMainContext (write
 * interest only while output is queued), and bounded waits that iterate a context
 * until a condition holds.
 */
#pragma once

#include <gio/gio.h>
#include "tools/client/vmc-agent-peer.h"
#include "tools/client/vmc-client.h"

G_BEGIN_DECLS

/* "HOST:PORT", "[v6]:PORT" or "unix:PATH". Blocking connect bounded by timeout_ms;
 * the returned socket is non-blocking. */
GSocket *vmc_io_connect(const char *spec, guint timeout_ms, GError **error);
/* Listens on "unix:PATH" (a stale socket file is replaced) or "HOST:PORT". */
GSocket *vmc_io_listen(const char *spec, GError **error);
/* Waits up to timeout_ms for one connection (non-blocking socket returned). */
GSocket *vmc_io_accept(GSocket *listener, guint timeout_ms, GError **error);

/* ---- a socket pump ---- */
typedef struct _VmcIoConn VmcIoConn;

/* Bytes received; len 0 means the peer closed (or an error; `error` says which). */
typedef void (*VmcIoReadFunc)(VmcIoConn *conn, const guint8 *buf, gsize len, const GError *error,
                              gpointer user_data);
/* Output is pulled from its owner: peek (may return len 0) and consume. */
typedef const guint8 *(*VmcIoPeekFunc)(gpointer user_data, gsize *len);
typedef void (*VmcIoConsumeFunc)(gpointer user_data, gsize n);

/* Takes a reference on `sock`. */
VmcIoConn *vmc_io_conn_new(GSocket *sock, GMainContext *context);
void vmc_io_conn_free(VmcIoConn *conn); /* NULL-safe; closes the socket */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcIoConn, vmc_io_conn_free)
void vmc_io_conn_set_read_func(VmcIoConn *conn, VmcIoReadFunc func, gpointer user_data);
void vmc_io_conn_set_output(VmcIoConn *conn, VmcIoPeekFunc peek, VmcIoConsumeFunc consume,
                            gpointer user_data);
/* Output became available: arm write interest (never writes re-entrantly). */
void vmc_io_conn_output_ready(VmcIoConn *conn);
/* Stop/resume reading (to simulate a peer that does not read). */
void vmc_io_conn_pause_read(VmcIoConn *conn, gboolean paused);
/* Writes whatever output is pending right now, without the main loop (best effort). */
void vmc_io_conn_flush_now(VmcIoConn *conn);
gboolean vmc_io_conn_is_closed(VmcIoConn *conn);
/* Shuts the socket down and closes it; no more callbacks. */
void vmc_io_conn_close(VmcIoConn *conn);
guint64 vmc_io_conn_bytes_in(VmcIoConn *conn);
guint64 vmc_io_conn_bytes_out(VmcIoConn *conn);
gsize vmc_io_conn_output_pending(VmcIoConn *conn);

/* ---- waits ---- */
typedef gboolean (*VmcIoCondFunc)(gpointer user_data);
/* Iterates `context` until cond(user_data) or timeout_ms passes. Returns cond's last
 * value. cond may be NULL: then it just runs the context for timeout_ms. */
gboolean vmc_io_wait(GMainContext *context, VmcIoCondFunc cond, gpointer user_data,
                     guint timeout_ms);

/* ---- a SPICE client on a socket ---- */
typedef struct _VmcClientConn VmcClientConn;
/* Called for each client event as it is produced (borrowed; cleared afterwards). */
typedef void (*VmcClientEventFunc)(VmcClientConn *cc, const VmcClientEvent *ev,
                                   gpointer user_data);

VmcClientConn *vmc_client_conn_new(const char *spec, const VmcClientConfig *cfg,
                                   GMainContext *context, guint timeout_ms, GError **error);
/* Over an already connected socket. */
VmcClientConn *vmc_client_conn_new_for_socket(GSocket *sock, const VmcClientConfig *cfg,
                                              GMainContext *context);
void vmc_client_conn_free(VmcClientConn *cc); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcClientConn, vmc_client_conn_free)
/* With a func events are delivered to it; without, they queue in the VmcClient. */
void vmc_client_conn_set_event_func(VmcClientConn *cc, VmcClientEventFunc func,
                                    gpointer user_data);
VmcClient *vmc_client_conn_get_client(VmcClientConn *cc);
VmcIoConn *vmc_client_conn_get_io(VmcClientConn *cc);
GMainContext *vmc_client_conn_get_context(VmcClientConn *cc);
gboolean vmc_client_conn_is_closed(VmcClientConn *cc);
/* Waits until the client is CONNECTED (TRUE), or failed/closed/timeout (FALSE). */
gboolean vmc_client_conn_wait_linked(VmcClientConn *cc, guint timeout_ms, GError **error);

/* ---- a guest agent on the port ---- */
typedef struct _VmcAgentConn VmcAgentConn;
typedef void (*VmcAgentEventFunc)(VmcAgentConn *ac, const VmcAgentPeerEvent *ev,
                                  gpointer user_data);
/* Called when the port connection opens (open TRUE) or closes. */
typedef void (*VmcAgentStateFunc)(VmcAgentConn *ac, gboolean open, gpointer user_data);

/* `spec` is the server's --guest value, mirrored: "unix:PATH" (the server listens:
 * connect to it, retrying until timeout_ms) or "connect:PATH" (the server connects:
 * listen at PATH and accept, again after each close); "listen:PATH" is an alias of
 * the latter. */
VmcAgentConn *vmc_agent_conn_new(const char *spec, GMainContext *context, guint timeout_ms,
                                 GError **error);
void vmc_agent_conn_free(VmcAgentConn *ac); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcAgentConn, vmc_agent_conn_free)
void vmc_agent_conn_set_event_func(VmcAgentConn *ac, VmcAgentEventFunc func, gpointer user_data);
void vmc_agent_conn_set_state_func(VmcAgentConn *ac, VmcAgentStateFunc func, gpointer user_data);
VmcAgentPeer *vmc_agent_conn_get_peer(VmcAgentConn *ac);
VmcIoConn *vmc_agent_conn_get_io(VmcAgentConn *ac); /* NULL while not open */
gboolean vmc_agent_conn_is_open(VmcAgentConn *ac);
guint vmc_agent_conn_opens(VmcAgentConn *ac);  /* how many times the port opened */
/* Closes the current connection (a listening agent then waits for the next one;
 * a connecting agent connects again only after vmc_agent_conn_reconnect()). */
void vmc_agent_conn_drop(VmcAgentConn *ac);
gboolean vmc_agent_conn_reconnect(VmcAgentConn *ac, guint timeout_ms, GError **error);

/* Formats bytes per second / durations for progress lines: "12.3 MiB", "4.5 MiB/s". */
char *vmc_io_format_size(guint64 bytes);

G_END_DECLS
