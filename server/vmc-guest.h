/* vmc-guest.h — guest-port backends: the host end of com.redhat.spice.0.
 *
 * One object per port, on a caller-supplied GMainContext, readiness based: the owner
 * is told when the agent side opens or closes and when the port is readable or
 * writable, and then reads/writes with non-blocking calls. Used by the native
 * runtime (feeding VmcMux) and by the libspice-server bridge (serving its char
 * device callbacks), so both backends see the same ports.
 *
 * Specs (the --guest option):
 *   unix:PATH     listen on a UNIX socket; keep listening across agent reconnects
 *                 (QEMU -chardev socket,path=PATH and spice-vdagentd -s PATH connect)
 *   connect:PATH  connect to a UNIX socket (QEMU -chardev socket,server=on); retry
 *   pty           open a pty; its slave path is reported by vmc_guest_port_describe()
 *   dev:PATH      open a character device or FIFO
 *   fd:N          use an inherited, already connected fd
 *   push          bytes pushed by an embedding VMM (vmc_guest_port_push_*)
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _VmcGuestPort VmcGuestPort;

typedef enum {
    VMC_GUEST_EVENT_OPENED,   /* the agent side is there: start talking */
    VMC_GUEST_EVENT_CLOSED,   /* the agent side went away (EOF, hang-up, error) */
    VMC_GUEST_EVENT_READABLE, /* vmc_guest_port_read() will return data */
    VMC_GUEST_EVENT_WRITABLE, /* vmc_guest_port_writev() can make progress */
} VmcGuestEvent;

typedef void (*VmcGuestEventFunc)(VmcGuestPort *port, VmcGuestEvent event, gpointer user_data);

/* Parses `spec`; G_IO_ERROR_INVALID_ARGUMENT for a bad one. Nothing is opened yet. */
VmcGuestPort *vmc_guest_port_new(const char *spec, GMainContext *context, GError **error);
void vmc_guest_port_free(VmcGuestPort *port); /* NULL-safe; closes everything */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcGuestPort, vmc_guest_port_free)

void vmc_guest_port_set_event_func(VmcGuestPort *port, VmcGuestEventFunc func,
                                   gpointer user_data);
/* Binds/opens/connects. A busy socket path or missing device is an error here. */
gboolean vmc_guest_port_start(VmcGuestPort *port, GError **error);

gboolean vmc_guest_port_is_open(VmcGuestPort *port);
/* "unix:/run/x.sock", "pty:/dev/pts/5", ... for logs and for printing to the user. */
const char *vmc_guest_port_describe(VmcGuestPort *port);

/* Non-blocking. Returns bytes read (> 0), 0 when nothing is available now, or -1 when
 * the port closed (a CLOSED event follows from the main loop, never re-entrantly). */
gssize vmc_guest_port_read(VmcGuestPort *port, guint8 *buf, gsize len);
/* Non-blocking gathered write. Returns bytes written (>= 0; 0 = would block) or -1. */
gssize vmc_guest_port_writev(VmcGuestPort *port, const GOutputVector *vec, guint nvec);

/* Interest: READABLE/WRITABLE events are only delivered while wanted. Writable
 * interest should be on only while output is queued. */
void vmc_guest_port_want_read(VmcGuestPort *port, gboolean want);
void vmc_guest_port_want_write(VmcGuestPort *port, gboolean want);

/* Closes the current agent connection (after a guest protocol error) without
 * stopping a listening backend: the agent may connect again. */
void vmc_guest_port_drop(VmcGuestPort *port);

/* ---- "push" backend, for VMMs with their own virtio-serial model ----
 * The VMM reports open/close, pushes bytes the guest wrote (returns how many were
 * taken: fewer when the internal buffer is full, then a WRITABLE-like callback via
 * vmc_guest_port_push_set_space_func tells when to push again), and drains bytes for
 * the guest through a callback that may accept fewer than offered. */
void vmc_guest_port_push_open(VmcGuestPort *port, gboolean open);
gsize vmc_guest_port_push_bytes(VmcGuestPort *port, const guint8 *data, gsize len);
typedef gsize (*VmcGuestPushWriteFunc)(gpointer user_data, const guint8 *data, gsize len);
typedef void (*VmcGuestPushSpaceFunc)(gpointer user_data);
void vmc_guest_port_push_set_funcs(VmcGuestPort *port, VmcGuestPushWriteFunc write_func,
                                   VmcGuestPushSpaceFunc space_func, gpointer user_data);
/* The VMM's guest can take bytes again: retry pending output. */
void vmc_guest_port_push_writable(VmcGuestPort *port);

G_END_DECLS
