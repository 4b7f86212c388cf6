/* bench-share.c — aggregate file-copy throughput of a shared session: 1, 2, 4 and 8
 * spice-gtk clients copying at once through vmcmux-server --max-clients 8 (native
 * backend) into the real spice-vdagentd and the session-agent stand-in.
 *
 * For each client count N and each round: a fresh server, daemon and stand-in;
 * N clients connect and wait; all are released at once; the time runs from the
 * release to the last copy-done line; aggregate = N x size / time. Every file is
 * checked bit-exact on the guest side. The median over the rounds is printed.
 *
 * Usage: bench-share [--mib N (per client, 32)] [--rounds R (3)] [--clients 1,2,4,8]
 *                    [--agent-window N]
 * Run by `meson test --benchmark --suite ... bench-share`; use a build without
 * sanitizers for meaningful figures. Environment as in share-util.h.
 */
#include "share-util.h"

#include <stdio.h>
#include <stdlib.h>

#define MIB (1024u * 1024u)

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* One round with n clients: the aggregate MB/s, or < 0 when it could not run. */
static double
run_round(guint n, guint mib, const char *window, guint round)
{
    SuFix fx;
    SuProc *cl[8];
    char *files[8];
    gint64 t0;
    gint64 t1;
    double secs;

    g_assert_cmpuint(n, <=, 8);
    if (!su_setup(&fx, 8, window))
        return -1;
    for (guint i = 0; i < n; i++) {
        g_autofree char *name = g_strdup_printf("c%u.bin", i);

        files[i] = su_make_file(&fx, name, (gsize)mib * MIB, 100 * round + i);
    }
    su_start_agent(&fx, NULL, NULL);
    for (guint i = 0; i < n; i++) {
        const char *steps[] = { "wait-stdin", "+", "copy", files[i], NULL };
        g_autofree char *name = g_strdup_printf("client-%u", i);

        cl[i] = su_start_client(&fx, name, steps);
    }
    for (guint i = 0; i < n; i++)
        su_wait_line(&fx, cl[i], "agent-ready");
    t0 = g_get_monotonic_time();
    for (guint i = 0; i < n; i++)
        su_send(cl[i], "go");
    for (guint i = 0; i < n; i++)
        su_wait_line(&fx, cl[i], "copy-done");
    t1 = g_get_monotonic_time();
    for (guint i = 0; i < n; i++)
        su_expect_exit(&fx, cl[i], 0);
    /* the last one gone: everything the stand-in printed before is read */
    su_wait_line(&fx, fx.agent, "client-disconnected");
    for (guint i = 0; i < n; i++) {
        g_autofree char *name = g_strdup_printf("c%u.bin", i);
        g_autofree char *done = g_strdup_printf("file-done %s", name);

        g_assert_cmpint(su_line_index(fx.agent, done), >=, 0);
        su_assert_received(&fx, files[i], name);
        g_free(files[i]);
    }
    su_stop_server(&fx);
    su_teardown(&fx);
    secs = (double)(t1 - t0) / 1e6;
    return (double)n * mib * MIB / secs / 1e6;
}

int
main(int argc, char **argv)
{
    gint mib = 32;
    gint rounds = 3;
    g_autofree char *clients = NULL;
    g_autofree char *window = NULL;
    GOptionEntry entries[] = {
        { "mib", 0, 0, G_OPTION_ARG_INT, &mib, "MiB copied by each client (32)", "N" },
        { "rounds", 0, 0, G_OPTION_ARG_INT, &rounds, "rounds per client count (3)", "R" },
        { "clients", 0, 0, G_OPTION_ARG_STRING, &clients, "client counts (1,2,4,8)", "LIST" },
        { "agent-window", 0, 0, G_OPTION_ARG_STRING, &window, "--agent-window for the server",
          "N" },
        { NULL },
    };
    g_autoptr(GOptionContext) opt = g_option_context_new("- shared-session copy throughput");
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) counts = NULL;

    g_option_context_add_main_entries(opt, entries, NULL);
    if (!g_option_context_parse(opt, &argc, &argv, &error) || mib <= 0 || rounds <= 0) {
        g_printerr("%s\n", error ? error->message : "bad arguments");
        return 64;
    }
    counts = g_strsplit(clients ? clients : "1,2,4,8", ",", -1);
    printf("# vmcmux-server --max-clients 8, native backend; each client copies %d MiB with "
           "spice_main_channel_file_copy_async into spice-vdagentd; median of %d rounds\n",
           mib, rounds);
    printf("%-8s %14s %14s %10s\n", "clients", "aggregate MB/s", "per client", "seconds");
    fflush(stdout);
    for (guint k = 0; counts[k] != NULL; k++) {
        guint n = (guint)g_ascii_strtoull(counts[k], NULL, 10);
        g_autofree double *v = g_new0(double, rounds);
        double med;

        if (n == 0 || n > 8) {
            g_printerr("client counts are 1..8\n");
            return 64;
        }
        for (gint r = 0; r < rounds; r++) {
            v[r] = run_round(n, (guint)mib, window, (guint)r);
            if (v[r] < 0) {
                printf("skipped: VMC_SERVER, the helpers or spice-vdagentd missing\n");
                return 77;
            }
        }
        qsort(v, (gsize)rounds, sizeof(double), cmp_double);
        med = v[rounds / 2];
        printf("%-8u %14.1f %14.1f %10.2f\n", n, med, med / n, (double)n * mib * MIB / med / 1e6);
        fflush(stdout);
    }
    return 0;
}
