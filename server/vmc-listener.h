/* vmc-listener.h — socket plumbing shared by the runtime and the guest ports (private).
 *
 * - VmcWatch: one fd on a GMainContext whose poll interest is changed in place (no
 *   source re-creation and no context wake-up per change; GLib re-reads GPollFD.events
 *   on every iteration), so toggling write interest per burst costs nothing.
 * - Listening sockets (TCP and UNIX, with stale-socket handling), non-blocking
 *   connect, accept, read and gathered write with MSG_NOSIGNAL on sockets.
 *
 * All calls must come from the thread that iterates the context.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _VmcWatch VmcWatch;

/* `revents` may include G_IO_HUP / G_IO_ERR even when not asked for. */
typedef void (*VmcWatchFunc)(gpointer user_data, GIOCondition revents);

/* Starts watching `fd` (borrowed: the watch never closes it). */
VmcWatch *vmc_watch_new(GMainContext *context, int fd, GIOCondition events, VmcWatchFunc func,
                        gpointer user_data);
/* NULL-safe; safe from inside the watch's own callback. */
void vmc_watch_free(VmcWatch *watch);
void vmc_watch_set_events(VmcWatch *watch, GIOCondition events);
GIOCondition vmc_watch_get_events(VmcWatch *watch);
/* A paused watch is not polled at all (poll reports HUP even with no interest; pausing
 * keeps a hung-up fd whose data nobody wants yet from spinning the loop). */
void vmc_watch_set_paused(VmcWatch *watch, gboolean paused);

/* Sets O_NONBLOCK and FD_CLOEXEC. */
gboolean vmc_fd_set_nonblocking(int fd, GError **error);

/* Binds and listens on a UNIX stream socket. An existing socket file nobody listens
 * on (connect refused) is replaced; a live one gives G_IO_ERROR_ADDRESS_IN_USE; any
 * other existing file gives G_IO_ERROR_EXISTS. Returns the fd or -1. */
int vmc_listen_unix(const char *path, GError **error);

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT" (all addresses) and listens on every
 * address HOST resolves to (numeric or a name such as localhost). Returns the fds
 * (transfer full, int array) or NULL; a busy port gives G_IO_ERROR_ADDRESS_IN_USE. */
GArray *vmc_listen_tcp(const char *host_port, GError **error);

/* "127.0.0.1:5930", "[::1]:5930", "unix:/path" for a bound or connected socket's local
 * (peer = FALSE) or remote (peer = TRUE) address. Never NULL. */
char *vmc_socket_describe(int fd, gboolean peer);
gboolean vmc_socket_is_unix(int fd);
gboolean vmc_fd_is_socket(int fd);
gboolean vmc_fd_is_listening(int fd);

/* Non-blocking connect to a UNIX socket: the connected fd, or -1 with errno set
 * (ENOENT, ECONNREFUSED, EAGAIN: try again later). */
int vmc_connect_unix(const char *path);

/* accept4(NONBLOCK|CLOEXEC); -1 with errno EAGAIN when nothing is pending. */
int vmc_accept(int listen_fd);

/* > 0 bytes read; 0 nothing available now; -1 end of stream or error (errno set, 0 for
 * EOF). */
gssize vmc_fd_read(int fd, guint8 *buf, gsize len);
/* >= 0 bytes written (0: would block); -1 on error (errno set). Sockets are written
 * with sendmsg(MSG_NOSIGNAL). At most IOV_MAX vectors are used. */
gssize vmc_fd_writev(int fd, gboolean is_socket, const GOutputVector *vec, guint nvec);

G_END_DECLS
