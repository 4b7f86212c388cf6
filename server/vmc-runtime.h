/* vmc-runtime.h — internal entry points of the native runtime (VmcServer) for the
 * daemon and the tests. The public API is include/vmcmux/vmcmux.h. */
#pragma once

#include "vmcmux/vmcmux.h"
#include "server/vmc-mux.h"
#include "server/vmc-options.h"

G_BEGIN_DECLS

/* A VmcServer configured from the daemon's options (native backend), not started. */
VmcServer *vmc_server_new_from_options(const VmcServerOptions *opts, GMainContext *context,
                                       GError **error);

/* For tests and benchmarks. */
VmcMux *vmc_server_get_mux(VmcServer *server);
/* Keys kept ready for new links (default 4). Before start. */
void vmc_server_set_key_pool_size(VmcServer *server, guint keys);
/* Blocks until the key pool is full (tests that time links). */
gboolean vmc_server_fill_key_pool(VmcServer *server, GError **error);
/* Keepalive timing for TCP clients (µs); before start. */
void vmc_server_set_ping(VmcServer *server, gint64 interval_us, gint64 timeout_us);

G_END_DECLS
