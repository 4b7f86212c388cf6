/* vmc-bridge.h — the libspice-server backend.
 *
 * VmcSpiceBridge presents a guest-port backend (vmc-guest.h) to a libspice-server
 * `SpiceServer` as the `SpiceCharDeviceInstance` of subtype "vdagent", the way QEMU ties
 * its virtio-serial port to it: the char device is registered
 * (spice_server_add_interface) when the agent side opens the port and removed when it
 * closes. For VMMs that already run libspice-server and want vmcmux's guest-port
 * backends, and as the reference backend the tests and benchmarks compare against.
 *
 * VmcSpiceHost runs libspice-server itself on a GMainContext (`--backend spice-server`
 * of vmcmux-server): SpiceCoreInterface glue, listen address, ticket, name/uuid,
 * agent policy switches, the guest port and the bridge, and the --record tap.
 *
 * Threading: everything runs on one thread, the one iterating the context the guest
 * port (and, for the host, libspice-server) was given. libspice-server without a QXL
 * device starts no threads of its own.
 */
#pragma once

#include <spice.h>
#include "server/vmc-guest.h"
#include "server/vmc-mux.h"
#include "server/vmc-options.h"
#include "server/vmc-record.h"

G_BEGIN_DECLS

typedef struct _VmcSpiceBridge VmcSpiceBridge;

/* Binds `port` to `server`. Both are borrowed and must outlive the bridge. The bridge
 * installs its own event function on the port (replacing any other); the caller
 * starts the port (vmc_guest_port_start) before or after this call. If the port is
 * already open the char device is registered right away.
 * The process must ignore SIGPIPE (libspice-server does not protect itself); this call
 * sets SIGPIPE to SIG_IGN when it is still at its default. */
VmcSpiceBridge *vmc_spice_bridge_new(SpiceServer *server, VmcGuestPort *port, GError **error);
/* NULL-safe. Removes the char device from the server if it is registered. */
void vmc_spice_bridge_free(VmcSpiceBridge *bridge);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcSpiceBridge, vmc_spice_bridge_free)

/* TRUE while the char device is registered with libspice-server (agent connected). */
gboolean vmc_spice_bridge_is_attached(VmcSpiceBridge *bridge);

/* Traffic tap on the guest-side chunk stream, as agent-message spans (the VmcMux tap
 * contract): chunks libspice-server writes on port 1 are CLIENT_AGENT with the current
 * client id, on port 2 SERVER_AGENT; chunks read from the guest are AGENT_CLIENT
 * (port 1) or AGENT_SERVER (port 2) with client id 0. Only bytes that actually crossed
 * the port are reported. `func` NULL turns the tap off. */
void vmc_spice_bridge_set_tap_func(VmcSpiceBridge *bridge, VmcMuxTapFunc func,
                                   gpointer user_data);
/* Convenience: taps into `rec` (borrowed; NULL to stop) and records agent
 * connect/disconnect events there. */
void vmc_spice_bridge_set_recorder(VmcSpiceBridge *bridge, VmcRecorder *rec);
/* Client id reported for CLIENT_AGENT traffic (default 1). */
void vmc_spice_bridge_set_client_id(VmcSpiceBridge *bridge, guint32 client_id);

typedef struct _VmcSpiceHost VmcSpiceHost;

/* Creates a libspice-server instance on `ctx` (NULL: the global default context)
 * configured from `opts`, listening already, with the bridge on the guest port
 * `opts->guest` (started). Errors (G_IO_ERROR_*) for options libspice-server cannot
 * honour (several listen addresses, --max-clients > 1, an --agent-window other than
 * 10, a password over 60 bytes), a busy address, or a guest spec that fails.
 * Only one host may exist per process at a time (SpiceCoreInterface callbacks carry
 * no context pointer). */
VmcSpiceHost *vmc_spice_host_new(const VmcServerOptions *opts, GMainContext *ctx,
                                 GError **error);
/* NULL-safe. Disconnects clients, detaches the agent, closes the listeners. */
void vmc_spice_host_free(VmcSpiceHost *host);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcSpiceHost, vmc_spice_host_free)

/* The address clients connect to ("127.0.0.1:5930", "unix:/run/x.sock"); with port 0
 * in the options, the port actually bound. */
const char *vmc_spice_host_describe(VmcSpiceHost *host);
VmcGuestPort *vmc_spice_host_get_guest_port(VmcSpiceHost *host);
VmcSpiceBridge *vmc_spice_host_get_bridge(VmcSpiceHost *host);
SpiceServer *vmc_spice_host_get_server(VmcSpiceHost *host);

G_END_DECLS
