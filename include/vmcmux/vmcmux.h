/* vmcmux.h — the public API of libvmcmux: a SPICE agent-channel server on a
 * caller-supplied GMainContext.
 *
 * A VmcServer is the host end of a VM's com.redhat.spice.0 port (the "guest port") and
 * a SPICE server that serves the main channel only: SPICE clients (remote-viewer,
 * spice-gtk) link, authenticate with a ticket, and exchange agent messages (clipboard,
 * file transfer, monitors config) with the guest's spice-vdagent through it.
 *
 * Threading: every call must come from the thread that iterates the context given to
 * vmc_server_new(); the server never blocks it and starts no thread on the protocol
 * path (RSA keys for new links are made ahead of need by a worker thread that touches
 * nothing else).
 *
 * SIGPIPE: the server writes to sockets with MSG_NOSIGNAL. A guest port on a FIFO or
 * pipe can still raise SIGPIPE; a process using such ports should ignore it.
 *
 * Errors: GError in VMC_ERROR (below) or G_IO_ERROR for system errors (a busy address
 * is G_IO_ERROR_ADDRESS_IN_USE).
 */
#pragma once

#include <gio/gio.h>

#if defined(VMC_COMPILATION)
#define VMC_EXPORT __attribute__((visibility("default"))) extern
#else
#define VMC_EXPORT extern
#endif

G_BEGIN_DECLS

#define VMC_ERROR (vmc_error_quark())
VMC_EXPORT GQuark vmc_error_quark(void);

typedef enum {
    VMC_ERROR_FAILED,
    VMC_ERROR_PROTOCOL,     /* a peer broke the protocol */
    VMC_ERROR_FLOW_CONTROL, /* a client sent more than its tokens allow */
    VMC_ERROR_TOO_LARGE,    /* a peer exceeded a size or memory bound */
    VMC_ERROR_CLOSED,       /* the peer is gone */
    VMC_ERROR_INVALID_ARGUMENT,
} VmcError;

typedef struct _VmcServer VmcServer;

/* ---- life ---- */

/* A server on `context` (NULL: the thread-default context at this call), not started.
 * Defaults: listen 127.0.0.1:5930 if no address is added, ticketing on with no password
 * (every ticket refused until vmc_server_set_password or vmc_server_set_ticketing(FALSE)),
 * copy/paste and file transfer on, one client (a new one replaces the old). */
VMC_EXPORT VmcServer *vmc_server_new(GMainContext *context);
/* NULL-safe. Disconnects clients (the agent is told), closes the guest port and the
 * listeners (UNIX socket files are removed). */
VMC_EXPORT void vmc_server_free(VmcServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcServer, vmc_server_free)

/* ---- configuration: before vmc_server_start() unless said otherwise ---- */

/* "HOST:PORT", "[V6ADDR]:PORT", ":PORT" (all addresses) or "unix:PATH". Repeatable.
 * Port 0 picks a free port (see vmc_server_dup_listen_addresses). */
VMC_EXPORT gboolean vmc_server_add_listen(VmcServer *server, const char *address,
                                          GError **error);
/* The guest port: "unix:PATH" (listen; QEMU -chardev socket,path=PATH and
 * spice-vdagentd connect there), "connect:PATH", "pty", "dev:PATH", "fd:N" or "push"
 * (bytes handed over with vmc_server_guest_push_*). None set: no agent until one is. */
VMC_EXPORT gboolean vmc_server_set_guest(VmcServer *server, const char *spec, GError **error);
/* At any time; applies to the next ticket. At most 60 bytes. `lifetime_s` 0: never
 * expires; otherwise tickets are refused that many seconds from now. NULL clears it. */
VMC_EXPORT gboolean vmc_server_set_password(VmcServer *server, const char *password,
                                            guint lifetime_s, GError **error);
/* FALSE: any ticket that decrypts is accepted (no password). At any time. */
VMC_EXPORT void vmc_server_set_ticketing(VmcServer *server, gboolean enabled);
/* Client->agent tokens granted to each client (INIT.agent_tokens); 0: the default
 * (512 x 2 KiB in flight). The reference server grants 10. */
VMC_EXPORT void vmc_server_set_agent_window(VmcServer *server, guint32 tokens);
VMC_EXPORT void vmc_server_set_copy_paste(VmcServer *server, gboolean enabled);
VMC_EXPORT void vmc_server_set_file_xfer(VmcServer *server, gboolean enabled);
/* 1 (default): a newly authenticated client replaces the connected one. N > 1: up to N
 * clients share the agent; the next one is refused with a NOTIFY saying why. */
VMC_EXPORT void vmc_server_set_max_clients(VmcServer *server, guint max_clients);
/* Sent in NAME / UUID to clients that support them. NULL clears. */
VMC_EXPORT void vmc_server_set_name(VmcServer *server, const char *name);
VMC_EXPORT void vmc_server_set_uuid(VmcServer *server, const guint8 *uuid16);
/* Writes a JSON Lines trace of all agent traffic and lifecycle events to `path`
 * ("-": stdout). */
VMC_EXPORT gboolean vmc_server_set_record(VmcServer *server, const char *path, GError **error);

/* Binds the listeners and starts the guest port. */
VMC_EXPORT gboolean vmc_server_start(VmcServer *server, GError **error);

/* ---- after start ---- */

/* Hands over an accepted, connected client socket (ownership of `fd` passes to the
 * server, also on failure). `skip_auth`: the caller authenticated the client already;
 * its ticket must still decrypt but the password is not checked (as
 * spice_server_add_client). */
VMC_EXPORT gboolean vmc_server_add_client_fd(VmcServer *server, int fd, gboolean skip_auth,
                                             GError **error);

/* Guest port "push": for a VMM with its own virtio-serial model. */
VMC_EXPORT void vmc_server_guest_push_open(VmcServer *server, gboolean open);
/* Bytes the guest wrote; returns how many were taken (fewer when the server's buffer is
 * full: the space function is called when it has room again). */
VMC_EXPORT gsize vmc_server_guest_push_bytes(VmcServer *server, const guint8 *data, gsize len);
/* `write_func` receives bytes for the guest and returns how many it took; after it took
 * fewer, call vmc_server_guest_push_writable() when the guest can take more. */
typedef gsize (*VmcServerGuestWriteFunc)(gpointer user_data, const guint8 *data, gsize len);
typedef void (*VmcServerGuestSpaceFunc)(gpointer user_data);
VMC_EXPORT void vmc_server_guest_push_set_funcs(VmcServer *server,
                                                VmcServerGuestWriteFunc write_func,
                                                VmcServerGuestSpaceFunc space_func,
                                                gpointer user_data);
VMC_EXPORT void vmc_server_guest_push_writable(VmcServer *server);

/* ---- observation ---- */

typedef enum {
    VMC_SERVER_EVENT_CLIENT_CONNECTED,    /* authenticated; detail: peer address */
    VMC_SERVER_EVENT_CLIENT_DISCONNECTED, /* detail: peer address and reason */
    VMC_SERVER_EVENT_CLIENT_REFUSED,      /* link or ticket refused; detail: why */
    VMC_SERVER_EVENT_AGENT_CONNECTED,     /* the guest port opened; detail: the port */
    VMC_SERVER_EVENT_AGENT_DISCONNECTED,  /* detail: the port and reason */
} VmcServerEvent;

/* `detail` lives for the call only. Called from the context's thread; must not free
 * the server. */
typedef void (*VmcServerEventFunc)(VmcServer *server, VmcServerEvent event, guint32 client_id,
                                   const char *detail, gpointer user_data);
VMC_EXPORT void vmc_server_set_event_func(VmcServer *server, VmcServerEventFunc func,
                                          gpointer user_data);

/* The bound addresses, e.g. "127.0.0.1:5930", "unix:/run/vmcmux.sock" (transfer full,
 * NULL-terminated). */
VMC_EXPORT char **vmc_server_dup_listen_addresses(VmcServer *server);
/* "unix:/tmp/vmcmux/guest.sock", "pty:/dev/pts/5", ... or NULL (transfer none). */
VMC_EXPORT const char *vmc_server_get_guest_description(VmcServer *server);
VMC_EXPORT guint vmc_server_get_n_clients(VmcServer *server);
VMC_EXPORT gboolean vmc_server_is_agent_connected(VmcServer *server);

G_END_DECLS
