/* vmc-options.h — the daemon's settings, shared by both backends (native runtime and
 * libspice-server host) so one command line serves both. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
    VMC_BACKEND_NATIVE,
    VMC_BACKEND_SPICE_SERVER,
} VmcBackend;

typedef struct {
    VmcBackend backend;
    GPtrArray *listen;        /* char*: "HOST:PORT" or "unix:PATH"; default 127.0.0.1:5930 */
    char *guest;              /* guest-port spec, see vmc-guest.h */
    char *password;           /* NULL with disable_ticketing */
    gboolean disable_ticketing;
    guint32 agent_window;     /* client->agent tokens granted (native) */
    gboolean copy_paste;      /* default TRUE */
    gboolean file_xfer;       /* default TRUE */
    guint max_clients;        /* default 1 */
    char *record_path;        /* JSON Lines trace, or NULL */
    char *name;               /* NULL: none */
    gboolean have_uuid;
    guint8 uuid[16];
    int verbose;
} VmcServerOptions;

G_END_DECLS
