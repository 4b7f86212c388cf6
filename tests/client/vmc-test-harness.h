/* vmc-test-harness.h — live-test helpers shared by the client suite and the
 * conformance suite: a vmcmux-server process per test (private directory, UNIX or
 * free TCP port), and synchronous wrappers around libvmc-client's client, agent and
 * raw sockets on a private GMainContext. Every wait is bounded.
 *
 * Environment (set by meson): VMC_TEST_SERVER (the vmcmux-server binary),
 * VMC_TEST_BACKENDS ("native,spice-server"), VMC_TEST_CLIENT (vmcmux-client).
 */
#pragma once

#include <gio/gio.h>
#include "tools/client/vmc-io.h"

G_BEGIN_DECLS

#define VMC_TEST_TIMEOUT 5000 /* ms: the longest a test waits for anything expected */

/* GSubprocessLauncher child setup: the child gets SIGTERM when the test process dies
 * (so an aborted test leaves no server or tool behind). */
void vmc_test_child_setup(gpointer user_data);

/* The vmcmux-server binary, or NULL (live tests are then skipped). */
const char *vmc_test_server_binary(void);
/* TRUE when `backend` ("native", "spice-server") can be tested. */
gboolean vmc_test_backend_available(const char *backend);
const char *vmc_test_client_binary(void);

typedef struct {
    char *dir;      /* private directory, removed on free */
    char *listen;   /* what clients connect to: "unix:DIR/spice.sock" or "127.0.0.1:PORT" */
    char *guest;    /* the --guest spec: "unix:DIR/agent.sock" */
    char *backend;
    char *log_path;
    GSubprocess *proc;
    GMainContext *ctx;
    gboolean exited;
    gint status;    /* wait status once exited */
} VmcTestServer;

/* Starts `vmcmux-server --backend BACKEND --listen L --guest G [extra...]`.
 * `extra` is NULL-terminated (may be NULL); "--disable-ticketing" is added unless
 * extra has a password option. */
VmcTestServer *vmc_test_server_start(const char *backend, gboolean tcp, const char *const *extra,
                                     GMainContext *ctx, GError **error);
/* Still running (not exited or crashed)? */
gboolean vmc_test_server_alive(VmcTestServer *s);
/* A one-line description of how it ended ("running", "exit 0", "signal 6"). */
char *vmc_test_server_describe_status(VmcTestServer *s);
/* The last `max` bytes of its log, for failure messages. */
char *vmc_test_server_log_tail(VmcTestServer *s, gsize max);
/* SIGTERM, bounded wait, SIGKILL if needed; removes the directory. NULL-safe. */
void vmc_test_server_free(VmcTestServer *s);

/* ---- a client ---- */
typedef struct {
    GMainContext *ctx;
    VmcClientConn *cc;
    VmcClient *c;
} VmcTestClient;

/* Connects (retrying while the listener is not up yet) and starts the link. */
VmcTestClient *vmc_test_client_new(GMainContext *ctx, const char *spec, const VmcClientConfig *cfg,
                                   GError **error);
/* Default config with `password` (NULL: none); AGENT_START automatic. */
VmcTestClient *vmc_test_client_connect(GMainContext *ctx, const char *spec, const char *password,
                                       GError **error);
void vmc_test_client_free(VmcTestClient *tc);
/* Waits until CONNECTED. */
gboolean vmc_test_client_wait_linked(VmcTestClient *tc, guint timeout_ms);
/* Next event (any type). */
gboolean vmc_test_client_next(VmcTestClient *tc, VmcClientEvent *ev, guint timeout_ms);
/* Skips events until a MESSAGE of `type` (stored in *ev). Skipped events are dropped. */
gboolean vmc_test_client_wait_msg(VmcTestClient *tc, guint16 type, VmcClientEvent *ev,
                                  guint timeout_ms);
/* Skips events until an AGENT_MESSAGE of `type` (any type if type == G_MAXUINT32). */
gboolean vmc_test_client_wait_agent_msg(VmcTestClient *tc, guint32 type, VmcClientEvent *ev,
                                        guint timeout_ms);
/* Until the client is agent-started (after INIT/AGENT_CONNECTED). */
gboolean vmc_test_client_wait_agent_started(VmcTestClient *tc, guint timeout_ms);
/* Until the server closed the connection. Events before it are dropped. */
gboolean vmc_test_client_wait_closed(VmcTestClient *tc, guint timeout_ms);
/* Until everything queued was written to the socket. */
gboolean vmc_test_client_flush(VmcTestClient *tc, guint timeout_ms);
gboolean vmc_test_client_closed(VmcTestClient *tc);

/* ---- the guest agent ---- */
typedef struct {
    GMainContext *ctx;
    VmcAgentConn *ac;
    VmcAgentPeer *peer;
} VmcTestAgent;

/* Connects to the server's guest socket (spec as given to the server). */
VmcTestAgent *vmc_test_agent_new(GMainContext *ctx, const char *spec, GError **error);
void vmc_test_agent_free(VmcTestAgent *ta);
gboolean vmc_test_agent_next(VmcTestAgent *ta, VmcAgentPeerEvent *ev, guint timeout_ms);
/* Skips events until a MESSAGE on `port` (0 = any) of `type` (G_MAXUINT32 = any). */
gboolean vmc_test_agent_wait_msg(VmcTestAgent *ta, guint32 port, guint32 type,
                                 VmcAgentPeerEvent *ev, guint timeout_ms);
gboolean vmc_test_agent_flush(VmcTestAgent *ta, guint timeout_ms);
gboolean vmc_test_agent_is_open(VmcTestAgent *ta);
/* Until the server closed the guest connection. */
gboolean vmc_test_agent_wait_closed(VmcTestAgent *ta, guint timeout_ms);
/* Stop/resume reading the port (a guest that does not consume). */
void vmc_test_agent_pause(VmcTestAgent *ta, gboolean paused);

/* ---- raw sockets ---- */
GSocket *vmc_test_raw_connect(const char *spec, GError **error);
gboolean vmc_test_raw_send(GSocket *s, const guint8 *data, gsize len);
/* Reads exactly `len` bytes. FALSE on EOF/timeout (then *got, if given, says how many). */
gboolean vmc_test_raw_read(GSocket *s, guint8 *buf, gsize len, guint timeout_ms, gsize *got);
/* TRUE when the peer closes within the timeout; *extra counts bytes read before it. */
gboolean vmc_test_raw_wait_eof(GSocket *s, guint timeout_ms, gsize *extra);

/* A link message for a raw test: header + SpiceLinkMess with one caps word each. */
GByteArray *vmc_test_link_message(guint32 magic, guint32 major, guint32 minor, guint8 channel_type,
                                  guint32 connection_id, guint32 common_caps,
                                  guint32 channel_caps);

G_END_DECLS
