/* test-api.c — the installed library through its public header only (libvmcmux.so):
 * the API links, runs on a private context and cleans up. */
#include <vmcmux/vmcmux.h>

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void
on_event(VmcServer *server, VmcServerEvent event, guint32 id, const char *detail,
         gpointer user_data)
{
    if (event == VMC_SERVER_EVENT_AGENT_CONNECTED)
        (*(guint *)user_data)++;
}

static gsize
vmm_write(gpointer user_data, const guint8 *data, gsize len)
{
    return len;
}

static void
test_public_api(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) addrs = NULL;
    VmcServer *srv = vmc_server_new(ctx);
    guint agents = 0;
    gint64 deadline;
    int sv[2];

    g_assert_true(vmc_server_add_listen(srv, "127.0.0.1:0", &error));
    g_assert_true(vmc_server_set_guest(srv, "push", &error));
    g_assert_false(vmc_server_set_guest(srv, "nonsense", &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&error);
    g_assert_true(vmc_server_set_password(srv, "secret", 3600, &error));
    vmc_server_set_agent_window(srv, 64);
    vmc_server_set_max_clients(srv, 2);
    vmc_server_set_name(srv, "api-test");
    vmc_server_set_uuid(srv, (const guint8 *)"0123456789abcdef");
    vmc_server_set_event_func(srv, on_event, &agents);
    g_assert_true(vmc_server_start(srv, &error));
    g_assert_no_error(error);

    addrs = vmc_server_dup_listen_addresses(srv);
    g_assert_nonnull(addrs[0]);
    g_assert_true(g_str_has_prefix(addrs[0], "127.0.0.1:"));
    g_assert_cmpstr(vmc_server_get_guest_description(srv), ==, "push");

    vmc_server_guest_push_set_funcs(srv, vmm_write, NULL, NULL);
    vmc_server_guest_push_open(srv, TRUE);
    deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (!vmc_server_is_agent_connected(srv) && g_get_monotonic_time() < deadline)
        g_main_context_iteration(ctx, TRUE);
    g_assert_true(vmc_server_is_agent_connected(srv));
    g_assert_cmpuint(agents, ==, 1);

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    g_assert_true(vmc_server_add_client_fd(srv, sv[0], FALSE, &error));
    close(sv[1]); /* gone before linking: not a client */
    for (int i = 0; i < 10; i++)
        g_main_context_iteration(ctx, FALSE);
    g_assert_cmpuint(vmc_server_get_n_clients(srv), ==, 0);
    vmc_server_free(srv);
    g_assert_cmpuint(VMC_ERROR, !=, 0);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/api/public", test_public_api);
    return g_test_run();
}
