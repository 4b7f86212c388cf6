/* test-share.c — shared sessions with the real peers (suite 'interop-share'):
 * several spice-gtk clients on one spice-vdagentd through vmcmux-server
 * --max-clients N (native backend), the session-agent stand-in behind the daemon.
 * Each case starts every process itself in a fresh directory and waits on their
 * output lines with bounded timeouts (share-util.h); see docs/sharing.md.
 *
 * A note on "client-disconnected" (the stand-in's line for the daemon's
 * VDAGENTD_CLIENT_DISCONNECTED): spice-vdagentd sends it when it takes a caps
 * request as a new client while one is connected, and on VD_AGENT_CLIENT_DISCONNECTED;
 * both reset every transfer. A shared session must show it exactly once: when the
 * last client leaves.
 */
#include <spice/vd_agent.h>

#include "share-util.h"

#define MIB (1024u * 1024u)
#define PROGRESS_AT "4194304"

static const char *
field(const char *line, guint i, char **store)
{
    g_auto(GStrv) f = g_strsplit(line, " ", -1);

    g_assert_cmpuint(g_strv_length(f), >, i);
    g_free(*store);
    *store = g_strdup(f[i]);
    return *store;
}

/* The stand-in's transfer id (the one the daemon saw) of `name`. */
static char *
agent_xfer_id(SuFix *fx, const char *name)
{
    g_autofree char *suffix = g_strdup_printf(" %s ", name);
    char *id = NULL;

    for (guint i = 0; i < fx->agent->lines->len; i++) {
        const char *l = g_ptr_array_index(fx->agent->lines, i);

        if (g_str_has_prefix(l, "file-start ") && strstr(l, suffix) != NULL)
            return (char *)field(l, 1, &id);
    }
    su_dump(fx);
    g_error("no file-start for %s", name);
}

/* Stops the server and lets the daemon and the stand-in go: everything the
 * stand-in printed is read. */
static void
settle(SuFix *fx)
{
    su_stop_server(fx);
    su_wait_exit(fx, fx->vdagentd); /* its reconnect is refused: it exits */
    su_wait_exit(fx, fx->agent);
}

static void
assert_agent_resets(SuFix *fx, guint n)
{
    if (su_count_lines(fx->agent, "client-disconnected") != n) {
        su_dump(fx);
        g_error("the daemon reset its client state %u times, expected %u",
                su_count_lines(fx->agent, "client-disconnected"), n);
    }
}

/* ---- cases ---- */

/* Two clients see the agent's caps; the second one's request never reaches the
 * daemon (it would reset the first one's state). */
static void
test_caps(gconstpointer data)
{
    const char *steps[] = { "caps", "+", "wait-stdin", NULL };
    SuFix fx;
    SuProc *a;
    SuProc *b;

    if (!su_setup(&fx, 2, NULL)) {
        g_test_skip("vmcmux-server, the helpers or spice-vdagentd missing");
        return;
    }
    su_start_agent(&fx, NULL, NULL);
    a = su_start_client(&fx, "client-a", steps);
    g_assert_true(g_str_has_prefix(su_wait_line(&fx, a, "agent-caps"), "agent-caps 0x00038de7"));
    b = su_start_client(&fx, "client-b", steps);
    g_assert_true(g_str_has_prefix(su_wait_line(&fx, b, "agent-caps"), "agent-caps 0x00038de7"));
    su_send(a, "go");
    su_expect_exit(&fx, a, 0);
    su_send(b, "go");
    su_expect_exit(&fx, b, 0);
    /* told once, when the last one left */
    su_wait_line(&fx, fx.agent, "client-disconnected");
    settle(&fx);
    assert_agent_resets(&fx, 1);
    su_assert_no_criticals(&fx, a);
    su_assert_no_criticals(&fx, b);
    su_teardown(&fx);
}

/* Two clients copy different 8 MiB files at the same time (spice-gtk numbers both
 * transfer 1); both arrive bit-exact. */
static void
test_two_copies(gconstpointer data)
{
    SuFix fx;
    g_autofree char *fa = NULL;
    g_autofree char *fb = NULL;
    SuProc *a;
    SuProc *b;
    const char *done_a;
    const char *done_b;
    gint first_done;
    gint last_start = -1;

    if (!su_setup(&fx, 2, NULL)) {
        g_test_skip("vmcmux-server, the helpers or spice-vdagentd missing");
        return;
    }
    fa = su_make_file(&fx, "a.bin", 8 * MIB, 1);
    fb = su_make_file(&fx, "b.bin", 8 * MIB, 2);
    su_start_agent(&fx, NULL, NULL);
    {
        const char *sa[] = { "wait-stdin", "+", "copy", fa, NULL };
        const char *sb[] = { "wait-stdin", "+", "copy", fb, NULL };

        a = su_start_client(&fx, "client-a", sa);
        b = su_start_client(&fx, "client-b", sb);
    }
    su_wait_line(&fx, a, "agent-ready");
    su_wait_line(&fx, b, "agent-ready");
    su_send(a, "go");
    su_send(b, "go");
    done_a = su_wait_line(&fx, a, "copy-done");
    done_b = su_wait_line(&fx, b, "copy-done");
    g_test_message("two 8 MiB copies at once: a %s, b %s", done_a, done_b);
    su_expect_exit(&fx, a, 0);
    su_expect_exit(&fx, b, 0);
    su_wait_line(&fx, fx.agent, "client-disconnected");
    settle(&fx);
    su_assert_received(&fx, fa, "a.bin");
    su_assert_received(&fx, fb, "b.bin");
    /* both were open in the daemon at once: both started before either finished */
    g_assert_cmpint(su_count_lines(fx.agent, "file-start"), ==, 2);
    first_done = MIN(su_line_index(fx.agent, "file-done a.bin"),
                     su_line_index(fx.agent, "file-done b.bin"));
    for (guint i = 0; i < fx.agent->lines->len; i++)
        if (g_str_has_prefix(g_ptr_array_index(fx.agent->lines, i), "file-start"))
            last_start = (gint)i;
    g_assert_cmpint(first_done, >=, 0);
    g_assert_cmpint(last_start, <, first_done);
    assert_agent_resets(&fx, 1);
    su_assert_no_criticals(&fx, a);
    su_assert_no_criticals(&fx, b);
    su_teardown(&fx);
}

/* Client A's clipboard grab reaches the guest while B is in the middle of a
 * transfer; B's copy still completes, bit-exact. */
static void
test_clipboard_during_copy(gconstpointer data)
{
    const char *text = "from a, during b's copy";
    g_autofree char *esc = g_strescape(text, NULL);
    g_autofree char *want_data = g_strdup_printf("clipboard-data 0 1 %s", esc);
    SuFix fx;
    g_autofree char *fb = NULL;
    SuProc *a;
    SuProc *b;
    const char *line;

    if (!su_setup(&fx, 2, NULL)) {
        g_test_skip("vmcmux-server, the helpers or spice-vdagentd missing");
        return;
    }
    fb = su_make_file(&fx, "b.bin", 128 * MIB, 3);
    su_start_agent(&fx, "--progress-at", PROGRESS_AT);
    {
        const char *sa[] = { "wait-stdin", "+", "clipboard-grab", text, "+", "wait-stdin", NULL };
        const char *sb[] = { "wait-stdin", "+", "copy", fb, NULL };

        a = su_start_client(&fx, "client-a", sa);
        b = su_start_client(&fx, "client-b", sb);
    }
    su_wait_line(&fx, a, "agent-ready");
    su_wait_line(&fx, b, "agent-ready");
    su_send(b, "go");
    su_wait_line(&fx, fx.agent, "file-progress"); /* b is mid-transfer */
    su_send(a, "go");
    su_wait_line(&fx, fx.agent, "clipboard-grab 0 1"); /* the daemon took a's grab */
    su_wait_line(&fx, a, "clipboard-request 0 1");     /* its request reached a */
    line = su_wait_line(&fx, fx.agent, "clipboard-data 0 1");
    g_assert_cmpstr(line, ==, want_data);
    /* it happened while b's transfer was open */
    g_assert_cmpint(su_line_index(fx.agent, "file-done"), <, 0);
    su_wait_line(&fx, b, "copy-done");
    su_expect_exit(&fx, b, 0);
    su_send(a, "go");
    su_expect_exit(&fx, a, 0);
    su_wait_line(&fx, fx.agent, "client-disconnected");
    settle(&fx);
    su_assert_received(&fx, fb, "b.bin");
    assert_agent_resets(&fx, 1);
    su_assert_no_criticals(&fx, a);
    su_assert_no_criticals(&fx, b);
    su_teardown(&fx);
}

/* One client is killed in the middle of its transfer: the other's copy completes
 * bit-exact, the agent stays connected, the killed one's transfer is cancelled. */
static void
test_kill_mid_transfer(gconstpointer data)
{
    SuFix fx;
    g_autofree char *fa = NULL;
    g_autofree char *fb = NULL;
    g_autofree char *ida = NULL;
    g_autofree char *progress_a = NULL;
    g_autofree char *cancelled_a = NULL;
    SuProc *a;
    SuProc *b;

    if (!su_setup(&fx, 2, NULL)) {
        g_test_skip("vmcmux-server, the helpers or spice-vdagentd missing");
        return;
    }
    /* a's transfer is long enough to be killed in its middle on any build */
    fa = su_make_file(&fx, "a.bin", 128 * MIB, 4);
    fb = su_make_file(&fx, "b.bin", 16 * MIB, 5);
    su_start_agent(&fx, "--progress-at", PROGRESS_AT);
    {
        const char *sa[] = { "wait-stdin", "+", "copy", fa, NULL };
        const char *sb[] = { "wait-stdin", "+", "copy", fb, "+", "wait-stdin", NULL };

        a = su_start_client(&fx, "client-a", sa);
        b = su_start_client(&fx, "client-b", sb);
    }
    su_wait_line(&fx, a, "agent-ready");
    su_wait_line(&fx, b, "agent-ready");
    su_send(a, "go");
    su_send(b, "go");
    su_wait_count(&fx, fx.agent, "file-start", 2);
    ida = agent_xfer_id(&fx, "a.bin");
    progress_a = g_strdup_printf("file-progress %s ", ida);
    su_wait_seen(&fx, fx.agent, progress_a);
    su_kill(a, SIGKILL);
    su_wait_exit(&fx, a);
    /* the daemon is told a's transfer is cancelled (with the id it knows) */
    cancelled_a = g_strdup_printf("file-status %s %u", ida, VD_AGENT_FILE_XFER_STATUS_CANCELLED);
    su_wait_seen(&fx, fx.agent, cancelled_a);
    su_wait_line(&fx, b, "copy-done");
    su_wait_seen(&fx, fx.agent, "file-done b.bin");
    /* b is still connected to a live agent: nothing reset it */
    g_assert_false(fx.vdagentd->exited);
    g_assert_cmpint(su_line_index(b, "agent-disconnected"), <, 0);
    assert_agent_resets(&fx, 0);
    g_assert_cmpint(su_line_index(fx.agent, "file-done a.bin"), <, 0);
    su_send(b, "go");
    su_expect_exit(&fx, b, 0);
    su_wait_line(&fx, fx.agent, "client-disconnected");
    settle(&fx);
    su_assert_received(&fx, fb, "b.bin");
    assert_agent_resets(&fx, 1);
    su_assert_no_criticals(&fx, b);
    su_teardown(&fx);
}

/* A client joining while another's transfer runs does not disturb it. */
static void
test_join_mid_transfer(gconstpointer data)
{
    const char *sb[] = { "caps", "+", "wait-stdin", NULL };
    SuFix fx;
    g_autofree char *fa = NULL;
    SuProc *a;
    SuProc *b;

    if (!su_setup(&fx, 2, NULL)) {
        g_test_skip("vmcmux-server, the helpers or spice-vdagentd missing");
        return;
    }
    /* long enough for a spice-gtk process to start and join in its middle */
    fa = su_make_file(&fx, "a.bin", 256 * MIB, 6);
    su_start_agent(&fx, "--progress-at", PROGRESS_AT);
    {
        const char *sa[] = { "copy", fa, NULL };

        a = su_start_client(&fx, "client-a", sa);
    }
    su_wait_line(&fx, fx.agent, "file-progress");
    b = su_start_client(&fx, "client-b", sb);
    g_assert_true(g_str_has_prefix(su_wait_line(&fx, b, "agent-caps"), "agent-caps 0x00038de7"));
    /* b joined (caps answered) while a's transfer was open */
    g_assert_cmpint(su_line_index(fx.agent, "file-done"), <, 0);
    su_wait_line(&fx, a, "copy-done");
    su_expect_exit(&fx, a, 0);
    su_wait_line(&fx, fx.agent, "file-done a.bin");
    assert_agent_resets(&fx, 0);
    su_send(b, "go");
    su_expect_exit(&fx, b, 0);
    su_wait_line(&fx, fx.agent, "client-disconnected");
    settle(&fx);
    su_assert_received(&fx, fa, "a.bin");
    assert_agent_resets(&fx, 1);
    su_assert_no_criticals(&fx, a);
    su_assert_no_criticals(&fx, b);
    su_teardown(&fx);
}

/* The guest's clipboard: its grab reaches every client (each with its own grab
 * serial, or spice-gtk would discard it); the data goes to the clients that asked
 * for it, and only to them. */
static void
test_guest_clipboard(gconstpointer data)
{
    const char *text = "from the guest: caf\xc3\xa9";
    g_autofree char *esc = g_strescape(text, NULL);
    g_autofree char *want_data = g_strdup_printf("clipboard-data 0 1 %s", esc);
    g_autofree char *grab1 = g_strdup_printf("grab %s", text);
    const char *asker[] = { "clipboard-wait", "+", "wait-stdin", NULL };
    const char *passive[] = { "caps", "+", "wait-stdin", NULL };
    SuFix fx;
    SuProc *a;
    SuProc *b;
    SuProc *c;

    if (!su_setup(&fx, 3, NULL)) {
        g_test_skip("vmcmux-server, the helpers or spice-vdagentd missing");
        return;
    }
    su_start_agent(&fx, NULL, NULL);
    a = su_start_client(&fx, "client-a", asker);
    b = su_start_client(&fx, "client-b", passive);
    c = su_start_client(&fx, "client-c", asker);
    su_wait_line(&fx, a, "agent-ready");
    su_wait_line(&fx, b, "agent-caps");
    su_wait_line(&fx, c, "agent-ready");
    su_send(fx.agent, grab1);
    su_wait_line(&fx, a, "clipboard-grab 0 1");
    su_wait_line(&fx, b, "clipboard-grab 0 1");
    su_wait_line(&fx, c, "clipboard-grab 0 1");
    /* a and c ask, b does not */
    g_assert_cmpstr(su_wait_line(&fx, a, "clipboard-data"), ==, want_data);
    g_assert_cmpstr(su_wait_line(&fx, c, "clipboard-data"), ==, want_data);
    /* a second grab as a fence: anything misrouted from the first would be
     * queued to each client before it */
    su_send(fx.agent, "grab second");
    su_wait_line(&fx, a, "clipboard-grab 0 1");
    su_wait_line(&fx, b, "clipboard-grab 0 1");
    su_wait_line(&fx, c, "clipboard-grab 0 1");
    g_assert_cmpuint(su_count_lines(fx.agent, "clipboard-request 0 1"), ==, 2);
    g_assert_cmpuint(su_count_lines(a, "clipboard-data"), ==, 1);
    g_assert_cmpuint(su_count_lines(b, "clipboard-data"), ==, 0);
    g_assert_cmpuint(su_count_lines(c, "clipboard-data"), ==, 1);
    for (guint i = 0; i < 3; i++) {
        SuProc *p = i == 0 ? a : i == 1 ? b : c;

        su_send(p, "go");
        su_expect_exit(&fx, p, 0);
        su_assert_no_criticals(&fx, p);
    }
    su_wait_line(&fx, fx.agent, "client-disconnected");
    settle(&fx);
    assert_agent_resets(&fx, 1);
    su_teardown(&fx);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("Shared sessions: several spice-gtk clients on one spice-vdagentd through "
                   "vmcmux-server --max-clients (docs/sharing.md)");

    g_test_add_data_func("/interop-share/caps", NULL, test_caps);
    g_test_add_data_func("/interop-share/two-copies", NULL, test_two_copies);
    g_test_add_data_func("/interop-share/clipboard-during-copy", NULL,
                         test_clipboard_during_copy);
    g_test_add_data_func("/interop-share/kill-mid-transfer", NULL, test_kill_mid_transfer);
    g_test_add_data_func("/interop-share/join-mid-transfer", NULL, test_join_mid_transfer);
    g_test_add_data_func("/interop-share/guest-clipboard", NULL, test_guest_clipboard);
    return g_test_run();
}
