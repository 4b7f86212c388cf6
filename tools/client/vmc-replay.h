/* vmc-replay.h — replays one side of a trace against a live peer and checks the
 * other side's answers (vmcmux-client replay). */
#pragma once

#include <stdio.h>
#include <glib.h>

G_BEGIN_DECLS

typedef enum {
    VMC_REPLAY_AS_CLIENT, /* send the client's messages on the main channel */
    VMC_REPLAY_AS_AGENT,  /* send the agent's messages on the guest port */
} VmcReplayRole;

typedef struct {
    const char *trace_path;
    VmcReplayRole role;
    const char *connect;     /* client: HOST:PORT or unix:PATH */
    const char *password;    /* client */
    const char *guest;       /* agent: the server's --guest spec (see vmc_agent_conn_new) */
    guint32 client_id;       /* which client of the trace (0: the first one seen) */
    guint timeout_ms;        /* longest wait for one expected answer */
    gboolean realtime;       /* also keep the recorded gaps between sent messages */
    GArray *ignore_types;    /* guint32 agent message types left out of both sides */
    gboolean verbose;        /* print every step */
    FILE *out;               /* progress and the divergence report (stdout) */
    FILE *err;               /* errors (stderr) */
    const char *ready_file;  /* touched once the peer connection is up (for scripts) */
} VmcReplayOptions;

void vmc_replay_options_init(VmcReplayOptions *opt);

/* Returns 0 when every expected answer arrived and matched, 1 on the first
 * divergence (both messages printed) or a missing answer, 2 on an error (bad
 * trace, cannot connect, ...) with *error set. */
int vmc_replay_run(const VmcReplayOptions *opt, GError **error);

G_END_DECLS
