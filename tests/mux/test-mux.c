/* test-mux.c — scripted transcripts for the multiplexer core (suite 'mux').
 *
 * /mux/ref/NN-*: the behaviours of agent-protocol.md §9.1 items 18–40 that concern
 * this layer, one test each. Where vmcmux deliberately differs from
 * libspice-server 0.15.1 the test says so and asserts our behaviour.
 * The other paths test the rules of docs/mux.md.
 */
#include "mux-test-util.h"

#define CAP_TOK VMC_MUX_CLIENT_CAP_CONNECTED_TOKENS
#define W 512u /* default agent window */

typedef struct {
    VmcMux *mux;
    GArray *notes;      /* guint32 ids passed to the notify func */
    GPtrArray *srv;     /* GByteArray: header (20) + payload of port-2 messages */
} Fx;

static void
on_notify(gpointer user_data, guint32 client_id)
{
    Fx *fx = user_data;

    g_array_append_val(fx->notes, client_id);
}

static void
on_server_msg(gpointer user_data, const VmcAgentHeader *h, const guint8 *payload, gsize len)
{
    Fx *fx = user_data;
    GByteArray *a = g_byte_array_new();
    guint8 hdr[VMC_AGENT_HEADER_SIZE];

    g_assert_cmpuint(h->size, ==, len);
    vmc_agent_header_encode(h, hdr);
    g_byte_array_append(a, hdr, sizeof(hdr));
    g_byte_array_append(a, payload, (guint)len);
    g_ptr_array_add(fx->srv, a);
}

static void
fx_init(Fx *fx, const VmcMuxConfig *cfg)
{
    fx->mux = vmc_mux_new(cfg);
    fx->notes = g_array_new(FALSE, FALSE, sizeof(guint32));
    fx->srv = g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
    vmc_mux_set_notify_func(fx->mux, on_notify, fx);
    vmc_mux_set_server_message_func(fx->mux, on_server_msg, fx);
    vmc_mux_tick(fx->mux, 0);
}

static void
fx_setup(Fx *fx, gconstpointer data)
{
    fx_init(fx, data);
}

static void
fx_teardown(Fx *fx, gconstpointer data)
{
    vmc_mux_free(fx->mux);
    g_array_unref(fx->notes);
    g_ptr_array_unref(fx->srv);
}

static gboolean
fx_notified(Fx *fx, guint32 id)
{
    for (guint i = 0; i < fx->notes->len; i++)
        if (g_array_index(fx->notes, guint32, i) == id)
            return TRUE;
    return FALSE;
}

/* A client that joins while the agent is connected (INIT covers it) and starts. */
static guint32
fx_client(Fx *fx, guint32 tokens)
{
    guint32 id = vmc_mux_client_add(fx->mux, CAP_TOK);
    g_autoptr(GPtrArray) msgs = mt_pop_all(fx->mux, id);

    g_assert_cmpuint(msgs->len, ==, 0);
    mt_start(fx->mux, id, tokens);
    return id;
}

static void
assert_guest_out(VmcMux *mux, const GByteArray *want)
{
    g_autoptr(GByteArray) got = mt_guest_out(mux);

    mt_assert_bytes(got, want->data, want->len);
}

static void
assert_guest_out_empty(VmcMux *mux)
{
    g_assert_cmpuint(vmc_mux_guest_output_size(mux), ==, 0);
}

static void
assert_no_msgs(VmcMux *mux, guint32 id)
{
    g_autoptr(GPtrArray) msgs = mt_pop_all(mux, id);

    g_assert_cmpuint(msgs->len, ==, 0);
}

/* Pops everything and checks the AGENT_DATA bodies, concatenated. */
static void
assert_data_stream(VmcMux *mux, guint32 id, const guint8 *want, gsize len)
{
    g_autoptr(GPtrArray) msgs = mt_pop_all(mux, id);
    g_autoptr(GByteArray) got = mt_data_stream(msgs, NULL);

    mt_assert_bytes(got, want, len);
}

static const guint8 client_disconnected_chunk[] = {
    0x02, 0, 0, 0, 0x14, 0, 0, 0, 0x01, 0, 0, 0, 0x0d, 0, 0, 0,
    0,    0, 0, 0, 0,    0, 0, 0, 0,    0, 0, 0,
};

/* ========================================================================= */
/* agent-protocol.md §9.1, agent lifecycle */

static void
test_ref_18(Fx *fx, gconstpointer data)
{
    guint32 a = vmc_mux_client_add(fx->mux, CAP_TOK);
    guint32 b = vmc_mux_client_add(fx->mux, 0);
    g_autoptr(GPtrArray) ma = NULL;
    g_autoptr(GPtrArray) mb = NULL;

    /* INIT.agent_tokens: ours is 512, the reference 10 (deliberately wider window) */
    g_assert_cmpuint(vmc_mux_get_agent_window(fx->mux), ==, W);
    g_assert_false(vmc_mux_guest_is_connected(fx->mux));
    vmc_mux_guest_connected(fx->mux);
    g_assert_true(vmc_mux_guest_is_connected(fx->mux));
    ma = mt_pop_all(fx->mux, a);
    mb = mt_pop_all(fx->mux, b);
    g_assert_cmpuint(ma->len, ==, 1);
    mt_assert_u32_msg(ma, 0, SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS, W);
    g_assert_cmpuint(mb->len, ==, 1);
    g_assert_cmpuint(mt_get(mb, 0)->type, ==, SPICE_MSG_MAIN_AGENT_CONNECTED);
    g_assert_cmpuint(mt_get(mb, 0)->body->len, ==, 0);
    g_assert_true(fx_notified(fx, a));
    g_assert_true(fx_notified(fx, b));
    /* a second "connected" without a disconnect is not a new agent */
    vmc_mux_guest_connected(fx->mux);
    assert_no_msgs(fx->mux, a);
}

static void
test_ref_19(Fx *fx, gconstpointer data)
{
    guint32 a, b;
    g_autoptr(GPtrArray) ma = NULL;
    g_autoptr(GPtrArray) mb = NULL;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    b = vmc_mux_client_add(fx->mux, 0); /* never started: told as well */
    vmc_mux_guest_disconnected(fx->mux);
    g_assert_false(vmc_mux_guest_is_connected(fx->mux));
    ma = mt_pop_all(fx->mux, a);
    mb = mt_pop_all(fx->mux, b);
    g_assert_cmpuint(ma->len, ==, 1);
    mt_assert_u32_msg(ma, 0, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);
    g_assert_cmpuint(mb->len, ==, 1);
    mt_assert_u32_msg(mb, 0, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);
    /* a second disconnect is nothing */
    vmc_mux_guest_disconnected(fx->mux);
    assert_no_msgs(fx->mux, a);
}

static void
test_ref_20(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) want = g_byte_array_new();
    guint32 a, b;

    g_byte_array_append(want, client_disconnected_chunk, sizeof(client_disconnected_chunk));

    /* started client leaves: exactly the 28-byte chunk on port 2 */
    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    vmc_mux_client_remove(fx->mux, a);
    assert_guest_out(fx->mux, want);

    /* a client that never sent AGENT_START: the same */
    b = vmc_mux_client_add(fx->mux, CAP_TOK);
    vmc_mux_client_remove(fx->mux, b);
    assert_guest_out(fx->mux, want);

    /* no agent: nothing */
    vmc_mux_guest_disconnected(fx->mux);
    b = vmc_mux_client_add(fx->mux, CAP_TOK);
    vmc_mux_client_remove(fx->mux, b);
    assert_guest_out_empty(fx->mux);
    /* unknown ids are ignored */
    vmc_mux_client_remove(fx->mux, 12345);
}

static void
test_ref_21(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) early = mt_caps(1, 0x38de7);
    g_autoptr(GByteArray) late = mt_msg(VD_AGENT_REPLY, NULL, 8);
    g_autoptr(GPtrArray) msgs = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = vmc_mux_client_add(fx->mux, CAP_TOK);
    g_assert_true(mt_feed_chunk(fx->mux, 1, early->data, early->len));
    assert_no_msgs(fx->mux, a);
    mt_start(fx->mux, a, ~0u);
    assert_no_msgs(fx->mux, a);
    g_assert_cmpuint(mt_gstats(fx->mux).discarded, ==, early->len);
    g_assert_true(mt_feed_chunk(fx->mux, 1, late->data, late->len));
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 1);
    mt_assert_data_msg(msgs, 0, late->data, late->len);
}

/* ========================================================================= */
/* agent -> client */

static void
test_ref_22(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_REPLY, NULL, 8);
    g_autoptr(GPtrArray) msgs = NULL;
    g_autoptr(GPtrArray) msgs2 = NULL;
    g_autoptr(GPtrArray) msgs3 = NULL;
    guint32 a, z;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, 2);
    z = fx_client(fx, 0);
    for (guint i = 0; i < 6; i++)
        g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 2);
    g_assert_cmpuint(mt_stats(fx->mux, a).send_budget, ==, 0);
    assert_no_msgs(fx->mux, z);

    g_assert_true(vmc_mux_client_agent_token(fx->mux, a, 3, NULL));
    msgs2 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs2->len, ==, 3);
    for (guint i = 0; i < 3; i++)
        mt_assert_data_msg(msgs2, i, m->data, m->len);
    g_assert_true(vmc_mux_client_agent_token(fx->mux, a, 100, NULL));
    msgs3 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs3->len, ==, 1);
    g_assert_cmpuint(mt_stats(fx->mux, a).send_budget, ==, 99);
    /* AGENT_START(0): nothing for that client */
    assert_no_msgs(fx->mux, z);
    g_assert_cmpuint(mt_stats(fx->mux, z).queued_bytes, ==, 6 * m->len);
}

static void
test_ref_23(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) small = mt_msg(99, NULL, 80);
    g_autoptr(GByteArray) big = mt_msg(99, NULL, 5000 - 20);
    g_autoptr(GByteArray) split = mt_msg(99, NULL, 2480);
    g_autoptr(GPtrArray) m1 = NULL;
    g_autoptr(GPtrArray) m2 = NULL;
    g_autoptr(GPtrArray) m3 = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);

    g_assert_true(mt_feed_chunk(fx->mux, 1, small->data, small->len));
    m1 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(m1->len, ==, 1);
    mt_assert_data_msg(m1, 0, small->data, small->len);

    g_assert_true(mt_feed_chunk(fx->mux, 1, big->data, big->len));
    m2 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(m2->len, ==, 3);
    mt_assert_data_msg(m2, 0, big->data, 2048);
    mt_assert_data_msg(m2, 1, big->data + 2048, 2048);
    mt_assert_data_msg(m2, 2, big->data + 4096, 904);

    /* Deliberate difference: the reference keeps the agent's chunk boundaries
     * (1000 + 1500 -> two AGENT_DATA of those sizes). We cut every message into
     * 2048-byte pieces from its start, whatever the agent's chunking: fewer,
     * fuller AGENT_DATA (fewer client tokens), same byte stream. */
    g_assert_true(mt_feed_chunk(fx->mux, 1, split->data, 1000));
    g_assert_true(mt_feed_chunk(fx->mux, 1, split->data + 1000, 1500));
    m3 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(m3->len, ==, 2);
    mt_assert_data_msg(m3, 0, split->data, 2048);
    mt_assert_data_msg(m3, 1, split->data + 2048, 452);
}

static void
test_ref_24(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_REPLY, NULL, 8);
    g_autoptr(GByteArray) bad = mt_chunk(3, m->data, m->len);
    g_autoptr(GByteArray) bad0 = mt_chunk(0, m->data, m->len);
    g_autoptr(GPtrArray) msgs = NULL;
    g_autoptr(GPtrArray) msgs2 = NULL;
    GError *error = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    g_assert_true(mt_feed_chunk(fx->mux, 2, m->data, m->len));
    assert_no_msgs(fx->mux, a);
    /* ours: port-2 messages reach the server's own handler */
    g_assert_cmpuint(fx->srv->len, ==, 1);
    mt_assert_bytes(g_ptr_array_index(fx->srv, 0), m->data, m->len);

    /* port 3 (and 0): the agent is dropped */
    g_assert_false(vmc_mux_feed_guest(fx->mux, bad->data, bad->len, &error));
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_PROTOCOL);
    g_clear_error(&error);
    g_assert_false(vmc_mux_guest_is_connected(fx->mux));
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 1);
    mt_assert_u32_msg(msgs, 0, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);
    /* ... and stays dead: input ignored until the runtime reconnects it */
    g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    assert_no_msgs(fx->mux, a);
    g_assert_false(vmc_mux_guest_wants_input(fx->mux));

    vmc_mux_guest_connected(fx->mux);
    msgs2 = mt_pop_all(fx->mux, a);
    mt_assert_u32_msg(msgs2, 0, SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS, W);
    g_assert_false(vmc_mux_feed_guest(fx->mux, bad0->data, bad0->len, NULL));
    g_assert_false(vmc_mux_guest_is_connected(fx->mux));
}

static void
test_ref_25(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m1 = mt_msg(VD_AGENT_REPLY, NULL, 8);
    g_autoptr(GByteArray) m2 = mt_msg(99, NULL, 30);
    g_autoptr(GByteArray) both = g_byte_array_new();
    g_autoptr(GByteArray) p2 = mt_msg(99, NULL, 4);
    g_autoptr(GPtrArray) msgs = NULL;
    g_autoptr(GPtrArray) msgs2 = NULL;
    g_autoptr(GPtrArray) msgs3 = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);

    /* Deliberate difference: two messages in one chunk are split at the message
     * boundary and delivered (the reference drops the agent). Either way no
     * AGENT_DATA ever holds bytes of two messages. */
    g_byte_array_append(both, m1->data, m1->len);
    g_byte_array_append(both, m2->data, m2->len);
    g_assert_true(mt_feed_chunk(fx->mux, 1, both->data, both->len));
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 2);
    mt_assert_data_msg(msgs, 0, m1->data, m1->len);
    mt_assert_data_msg(msgs, 1, m2->data, m2->len);

    /* a header split across chunks: the agent is dropped (as the reference) */
    g_assert_false(mt_feed_chunk(fx->mux, 1, m2->data, 10));
    msgs2 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs2->len, ==, 1);
    mt_assert_u32_msg(msgs2, 0, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);

    /* protocol != 1: dropped */
    vmc_mux_guest_connected(fx->mux);
    mt_start(fx->mux, a, ~0u);
    vmc_put_u32le(p2->data, 2);
    g_assert_false(mt_feed_chunk(fx->mux, 1, p2->data, p2->len));
    msgs3 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(mt_count_type(msgs3, SPICE_MSG_MAIN_AGENT_DISCONNECTED), ==, 1);
    g_assert_cmpuint(mt_count_type(msgs3, SPICE_MSG_MAIN_AGENT_DATA), ==, 0);
}

static void
test_ref_26(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_REPLY, NULL, 8);
    g_autoptr(GPtrArray) msgs = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    /* Deliberate difference: a zero-length chunk is skipped; the reference
     * stalls the agent->client path forever. */
    g_assert_true(mt_feed_chunk(fx->mux, 1, NULL, 0));
    g_assert_true(mt_feed_chunk(fx->mux, 2, NULL, 0));
    g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 1);
    mt_assert_data_msg(msgs, 0, m->data, m->len);
}

static void
test_ref_27(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) grab = mt_u32_msg(VD_AGENT_CLIPBOARD_GRAB, 1, 0, 4);
    g_autoptr(GByteArray) caps = mt_caps(0, 0x0000806a);
    g_autoptr(GByteArray) want = mt_caps(0, 0x0000a002);
    g_autoptr(GByteArray) want_cp = mt_caps(0, 0x00008002);
    g_autoptr(GByteArray) xfer = mt_u32_msg(VD_AGENT_FILE_XFER_STATUS, 1, 0, 8);
    g_autoptr(GPtrArray) msgs = NULL;
    g_autoptr(GPtrArray) msgs2 = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    vmc_mux_set_copy_paste(fx->mux, FALSE);
    g_assert_true(mt_feed_chunk(fx->mux, 1, grab->data, grab->len));
    g_assert_true(mt_feed_chunk(fx->mux, 1, caps->data, caps->len));
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 1);
    mt_assert_data_msg(msgs, 0, want_cp->data, want_cp->len);

    vmc_mux_set_file_xfer(fx->mux, FALSE);
    g_assert_true(mt_feed_chunk(fx->mux, 1, xfer->data, xfer->len)); /* dropped */
    g_assert_true(mt_feed_chunk(fx->mux, 1, caps->data, caps->len));
    msgs2 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs2->len, ==, 1);
    mt_assert_data_msg(msgs2, 0, want->data, want->len);
    /* the mux remembers what the agent really announced */
    g_assert_true(vmc_mux_agent_has_cap(fx->mux, VD_AGENT_CAP_GRAPHICS_DEVICE_INFO));
    g_assert_true(vmc_mux_agent_has_cap(fx->mux, VD_AGENT_CAP_CLIPBOARD));
    g_assert_false(vmc_mux_agent_has_cap(fx->mux, VD_AGENT_CAP_FILE_XFER_DISABLED));
    g_assert_false(vmc_mux_agent_has_cap(fx->mux, 200));
    vmc_mux_guest_disconnected(fx->mux);
    g_assert_false(vmc_mux_agent_has_cap(fx->mux, VD_AGENT_CAP_GRAPHICS_DEVICE_INFO));
    /* GRAPHICS_DEVICE_INFO on cap 15 is the embedder's job (it knows the
     * displays): vmc_mux_send_server_message(), see the server tests. */
}

static void
test_ref_28(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(99, NULL, 3000 - 20);
    g_autoptr(GPtrArray) msgs = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    vmc_mux_set_copy_paste(fx->mux, FALSE);
    vmc_mux_set_file_xfer(fx->mux, FALSE);
    /* the second piece looks like an ANNOUNCE_CAPABILITIES header */
    vmc_put_u32le(m->data + 2048, 1);
    vmc_put_u32le(m->data + 2048 + 4, VD_AGENT_ANNOUNCE_CAPABILITIES);
    vmc_put_u32le(m->data + 2048 + 24, 0xffffffff);
    g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    msgs = mt_pop_all(fx->mux, a);
    /* Fixed reference bug: only real headers are rewritten, the continuation
     * piece goes out unchanged (the reference makes ffffffff 97ffffff). */
    g_assert_cmpuint(msgs->len, ==, 2);
    mt_assert_data_msg(msgs, 0, m->data, 2048);
    mt_assert_data_msg(msgs, 1, m->data + 2048, 952);
}

static void
test_ref_29(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(99, NULL, 300);
    g_autoptr(GByteArray) c = mt_chunk(1, m->data, m->len);
    g_autoptr(GPtrArray) msgs = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    for (guint i = 0; i < c->len; i++)
        g_assert_true(mt_feed_guest(fx->mux, c->data + i, 1));
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 1);
    mt_assert_data_msg(msgs, 0, m->data, m->len);
}

/* ========================================================================= */
/* client -> agent */

static void
test_ref_30(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MONITORS_CONFIG, NULL, 28);
    g_autoptr(GByteArray) want = mt_chunk(1, b->data, b->len);
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, b->data, b->len);
    g_assert_true(fx_notified(fx, 0));
    assert_guest_out(fx->mux, want);
    assert_guest_out_empty(fx->mux);
}

static void
test_ref_31(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MONITORS_CONFIG, NULL, 28);
    g_autoptr(GPtrArray) msgs = NULL;
    g_autoptr(GPtrArray) msgs2 = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = vmc_mux_client_add(fx->mux, CAP_TOK);
    mt_data_ok(fx->mux, a, b->data, b->len);
    assert_guest_out_empty(fx->mux);
    /* Deliberate difference: the discarded unit's token comes back (the
     * reference keeps it, so a client without AGENT_CONNECTED_TOKENS loses a
     * token for good each time). */
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 1);
    mt_assert_u32_msg(msgs, 0, SPICE_MSG_MAIN_AGENT_TOKEN, 1);
    g_assert_cmpuint(mt_stats(fx->mux, a).discarded, ==, b->len);

    /* after a detach, before the new AGENT_START: also discarded */
    mt_start(fx->mux, a, ~0u);
    vmc_mux_guest_disconnected(fx->mux);
    vmc_mux_guest_connected(fx->mux);
    mt_data_ok(fx->mux, a, b->data, b->len);
    assert_guest_out_empty(fx->mux);
    msgs2 = mt_pop_all(fx->mux, a);
    /* this one was sent before the client read AGENT_CONNECTED_TOKENS (which
     * resets its count): forgiven, not returned */
    g_assert_cmpuint(mt_tokens(msgs2), ==, 0);
}

static void
test_ref_32(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MAX_CLIPBOARD, NULL, 4);
    g_autoptr(GByteArray) clip = mt_u32_msg(VD_AGENT_CLIPBOARD_RELEASE, 0, 0, 0);
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GPtrArray) m1 = NULL;
    g_autoptr(GPtrArray) m2 = NULL;
    g_autoptr(GPtrArray) m3 = NULL;
    g_autoptr(GPtrArray) m4 = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    for (guint i = 0; i < 40; i++)
        mt_data_ok(fx->mux, a, b->data, b->len);
    assert_no_msgs(fx->mux, a);
    g_assert_cmpuint(mt_stats(fx->mux, a).tokens_in_use, ==, 40);
    /* Deliberate difference: batches of window/8 (32 for 512) instead of 5, and
     * the rest as soon as nothing of the client is in flight. */
    out = mt_guest_out_some(fx->mux, 32 * (8 + b->len));
    m1 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(m1->len, ==, 1);
    mt_assert_u32_msg(m1, 0, SPICE_MSG_MAIN_AGENT_TOKEN, 32);
    g_assert_cmpuint(mt_stats(fx->mux, a).tokens_in_use, ==, 8);
    g_byte_array_unref(mt_guest_out(fx->mux));
    m2 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(m2->len, ==, 1);
    mt_assert_u32_msg(m2, 0, SPICE_MSG_MAIN_AGENT_TOKEN, 8);
    g_assert_cmpuint(mt_stats(fx->mux, a).tokens_in_use, ==, 0);

    /* discarded messages count too: with copy-paste off the token of a dropped
     * clipboard message comes back at once */
    vmc_mux_set_copy_paste(fx->mux, FALSE);
    mt_data_ok(fx->mux, a, clip->data, clip->len);
    m3 = mt_pop_all(fx->mux, a);
    mt_assert_u32_msg(m3, 0, SPICE_MSG_MAIN_AGENT_TOKEN, 1);
    assert_guest_out_empty(fx->mux);

    /* tokens of a partial write come back only when the chunk is whole */
    mt_data_ok(fx->mux, a, b->data, b->len);
    g_byte_array_unref(mt_guest_out_some(fx->mux, 10));
    assert_no_msgs(fx->mux, a);
    g_byte_array_unref(mt_guest_out(fx->mux));
    m4 = mt_pop_all(fx->mux, a);
    mt_assert_u32_msg(m4, 0, SPICE_MSG_MAIN_AGENT_TOKEN, 1);
    g_assert_cmpuint(mt_stats(fx->mux, a).tokens_granted, ==, W + 42);
}

static void
test_ref_33(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MAX_CLIPBOARD, NULL, 4);
    GError *error;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    /* the guest writes nothing: the window (512 here, 10 in the reference) is
     * accepted, one more cuts the client off */
    for (guint i = 0; i < W; i++)
        mt_data_ok(fx->mux, a, b->data, b->len);
    g_assert_false(vmc_mux_client_failed(fx->mux, a, NULL));
    error = mt_data_err(fx->mux, a, b->data, b->len);
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_FLOW_CONTROL);
    g_clear_error(&error);
    g_assert_true(vmc_mux_client_failed(fx->mux, a, &error));
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_FLOW_CONTROL);
    g_clear_error(&error);
    g_assert_true(fx_notified(fx, a));
    /* poisoned: later calls fail CLOSED */
    g_assert_false(vmc_mux_client_agent_start(fx->mux, a, 1, &error));
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_CLOSED);
    g_clear_error(&error);
    vmc_mux_client_remove(fx->mux, a);
}

static void
test_ref_33_window10(void)
{
    VmcMuxConfig cfg;
    g_autoptr(VmcMux) mux = NULL;
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MAX_CLIPBOARD, NULL, 4);
    GError *error;
    guint32 a;

    /* the reference's window, configured */
    vmc_mux_config_init(&cfg);
    cfg.agent_window = 10;
    mux = vmc_mux_new(&cfg);
    vmc_mux_guest_connected(mux);
    a = vmc_mux_client_add(mux, CAP_TOK);
    mt_start(mux, a, ~0u);
    for (guint i = 0; i < 10; i++)
        mt_data_ok(mux, a, b->data, b->len);
    error = mt_data_err(mux, a, b->data, b->len);
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_FLOW_CONTROL);
    g_error_free(error);
}

static void
expect_client_error(Fx *fx, const guint8 *body, gsize len, const GByteArray *prefix)
{
    guint32 a = fx_client(fx, ~0u);
    GError *error;

    if (prefix)
        mt_data_ok(fx->mux, a, prefix->data, prefix->len);
    error = mt_data_err(fx->mux, a, body, len);
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_PROTOCOL);
    g_error_free(error);
    g_assert_true(vmc_mux_client_failed(fx->mux, a, NULL));
    vmc_mux_client_remove(fx->mux, a);
}

static void
test_ref_34(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) big = mt_msg(99, NULL, 2049 - 20);
    g_autoptr(GByteArray) p2 = mt_msg(99, NULL, 10);
    g_autoptr(GByteArray) longer = mt_msg(99, NULL, 10);
    g_autoptr(GByteArray) first = mt_msg(99, NULL, 3000);
    g_autoptr(GByteArray) unknown = mt_msg(99, NULL, 10);
    g_autoptr(GByteArray) want = mt_chunk(1, unknown->data, unknown->len);
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    expect_client_error(fx, big->data, big->len, NULL);          /* 2049 bytes */
    expect_client_error(fx, p2->data, 19, NULL);                 /* < 20 at a start */
    vmc_put_u32le(p2->data, 2);
    expect_client_error(fx, p2->data, p2->len, NULL);            /* protocol 2 */
    g_byte_array_set_size(longer, longer->len + 1);
    expect_client_error(fx, longer->data, longer->len, NULL);    /* past its size */
    /* ... also in a continuation */
    {
        guint32 b = fx_client(fx, ~0u);
        GError *error;

        mt_data_ok(fx->mux, b, first->data, 2048);
        error = mt_data_err(fx->mux, b, first->data, 1000); /* 972 left */
        g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_PROTOCOL);
        g_error_free(error);
        vmc_mux_client_remove(fx->mux, b);
    }
    /* an empty AGENT_DATA */
    {
        guint32 b = fx_client(fx, ~0u);
        GError *error = mt_data_err(fx->mux, b, first->data, 0);

        g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_PROTOCOL);
        g_error_free(error);
        vmc_mux_client_remove(fx->mux, b);
    }
    g_byte_array_unref(mt_guest_out(fx->mux)); /* CLIENT_DISCONNECTED chunks */

    /* unknown type: forwarded unchanged */
    a = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, unknown->data, unknown->len);
    assert_guest_out(fx->mux, want);
}

static void
test_ref_34_size_rules(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) req = mt_msg(VD_AGENT_CLIPBOARD_REQUEST, NULL, 100);
    g_autoptr(GByteArray) mouse = mt_msg(VD_AGENT_MOUSE_STATE, NULL, 12);
    g_autoptr(GByteArray) xfer = mt_msg(VD_AGENT_FILE_XFER_DATA, NULL, 11);
    g_autoptr(GByteArray) ok_req = mt_msg(VD_AGENT_CLIPBOARD_REQUEST, NULL, 8);
    g_autoptr(GByteArray) ok_req2 = mt_msg(VD_AGENT_CLIPBOARD_REQUEST, NULL, 4);
    guint32 a;

    /* the per-type size rules (spice-protocol 0.14.3) at a message start */
    vmc_mux_guest_connected(fx->mux);
    expect_client_error(fx, req->data, req->len, NULL);
    expect_client_error(fx, mouse->data, mouse->len, NULL);
    expect_client_error(fx, xfer->data, xfer->len, NULL);
    g_byte_array_unref(mt_guest_out(fx->mux));
    /* with and without the selection prefix both pass */
    a = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, ok_req->data, ok_req->len);
    mt_data_ok(fx->mux, a, ok_req2->data, ok_req2->len);
}

static void
test_ref_35(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_CLIPBOARD, NULL, 3000);
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GPtrArray) chunks = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    mt_send_msg(fx->mux, a, m);
    out = mt_guest_out(fx->mux);
    g_assert_cmpuint(out->len, ==, 2056 + 980);
    chunks = mt_parse_chunks(out);
    g_assert_cmpuint(chunks->len, ==, 2);
    mt_assert_bytes(((MtChunk *)g_ptr_array_index(chunks, 0))->data, m->data, 2048);
    mt_assert_bytes(((MtChunk *)g_ptr_array_index(chunks, 1))->data, m->data + 2048, 972);
}

static void
test_ref_36(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MAX_CLIPBOARD, NULL, 4);
    g_autoptr(GPtrArray) m1 = NULL;
    g_autoptr(GPtrArray) m2 = NULL;
    g_autoptr(GPtrArray) m3 = NULL;
    GError *error;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    for (guint i = 0; i < 3; i++)
        mt_data_ok(fx->mux, a, b->data, b->len);
    vmc_mux_guest_disconnected(fx->mux);
    /* Deliberate difference: every pending token comes back before
     * AGENT_DISCONNECTED (the reference sends only whole batches of 5 and keeps
     * the rest, which a client without AGENT_CONNECTED_TOKENS never recovers). */
    m1 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(m1->len, ==, 2);
    mt_assert_u32_msg(m1, 0, SPICE_MSG_MAIN_AGENT_TOKEN, 3);
    mt_assert_u32_msg(m1, 1, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);
    assert_guest_out_empty(fx->mux);

    vmc_mux_guest_connected(fx->mux);
    m2 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(m2->len, ==, 1);
    mt_assert_u32_msg(m2, 0, SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS, W);
    mt_start(fx->mux, a, ~0u);
    for (guint i = 0; i < 7; i++)
        mt_data_ok(fx->mux, a, b->data, b->len);
    vmc_mux_guest_disconnected(fx->mux);
    m3 = mt_pop_all(fx->mux, a);
    mt_assert_u32_msg(m3, 0, SPICE_MSG_MAIN_AGENT_TOKEN, 7);
    mt_assert_u32_msg(m3, 1, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);

    /* after re-attach + AGENT_START exactly the window may be outstanding */
    vmc_mux_guest_connected(fx->mux);
    g_ptr_array_unref(mt_pop_all(fx->mux, a));
    mt_start(fx->mux, a, ~0u);
    for (guint i = 0; i < W; i++)
        mt_data_ok(fx->mux, a, b->data, b->len);
    error = mt_data_err(fx->mux, a, b->data, b->len);
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_FLOW_CONTROL);
    g_error_free(error);
}

static void
test_ref_37(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_CLIPBOARD, NULL, 3000);
    g_autoptr(GByteArray) next = mt_msg(VD_AGENT_MAX_CLIPBOARD, NULL, 4);
    g_autoptr(GByteArray) want = mt_chunk(1, next->data, next->len);
    g_autoptr(GByteArray) first = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, m->data, 2048);
    first = mt_guest_out(fx->mux);
    g_assert_cmpuint(first->len, ==, 2056);
    vmc_mux_guest_disconnected(fx->mux);
    vmc_mux_guest_connected(fx->mux);
    mt_start(fx->mux, a, ~0u);
    /* the rest of the half-sent message: swallowed, no error */
    mt_data_ok(fx->mux, a, m->data + 2048, m->len - 2048);
    assert_guest_out_empty(fx->mux);
    g_assert_false(vmc_mux_client_failed(fx->mux, a, NULL));
    mt_data_ok(fx->mux, a, next->data, next->len);
    assert_guest_out(fx->mux, want);
}

static void
test_ref_38(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MAX_CLIPBOARD, NULL, 4);
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_REPLY, NULL, 8);
    g_autoptr(GByteArray) want = mt_chunk(1, b->data, b->len);
    g_autoptr(GPtrArray) msgs = NULL;
    guint32 a;

    /* VM stopped = the runtime neither writes nor pops: everything waits in the
     * mux (bounded), and flows when it resumes */
    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, b->data, b->len);
    g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    g_assert_cmpuint(vmc_mux_guest_output_size(fx->mux), ==, want->len);
    g_assert_cmpuint(mt_stats(fx->mux, a).queued_bytes, ==, m->len);
    assert_guest_out(fx->mux, want);
    msgs = mt_pop_all(fx->mux, a);
    mt_assert_data_msg(msgs, 0, m->data, m->len);
}

static void
test_ref_39(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(99, NULL, 0);
    guint32 a;

    g_byte_array_append(m, (const guint8 *)"JUNKJUNK", 8);
    vmc_mux_guest_connected(fx->mux);
    /* Deliberate difference (stricter): a 20-byte header of size 0 followed by
     * junk is a protocol error in both directions; the reference forwards it. */
    expect_client_error(fx, m->data, m->len, NULL);
    g_byte_array_unref(mt_guest_out(fx->mux));
    a = fx_client(fx, ~0u);
    g_assert_false(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    g_assert_cmpuint(mt_stats(fx->mux, a).bytes_out, ==, 0);
}

static void
test_ref_40(void)
{
    VmcMuxConfig cfg;
    g_autoptr(VmcMux) mux = NULL;
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_REPLY, NULL, 8);
    g_autoptr(GPtrArray) ma = NULL;
    g_autoptr(GPtrArray) mb = NULL;
    g_autoptr(GPtrArray) mb2 = NULL;
    guint32 a, b;

    vmc_mux_config_init(&cfg);
    cfg.max_clients = 2;
    mux = vmc_mux_new(&cfg);
    vmc_mux_guest_connected(mux);
    a = vmc_mux_client_add(mux, CAP_TOK);
    b = vmc_mux_client_add(mux, CAP_TOK);
    mt_start(mux, a, ~0u);
    mt_start(mux, b, 1);
    for (guint i = 0; i < 7; i++)
        g_assert_true(mt_feed_chunk(mux, 1, m->data, m->len));
    /* Deliberate difference: no shared 5-buffer pool, so the slow client does
     * not stop the fast one (it has its own bounded queue) ... */
    ma = mt_pop_all(mux, a);
    mb = mt_pop_all(mux, b);
    g_assert_cmpuint(ma->len, ==, 7);
    g_assert_cmpuint(mb->len, ==, 1);
    for (guint i = 0; i < 7; i++)
        mt_assert_data_msg(ma, i, m->data, m->len);
    /* ... and tokens to a client with queued pieces flush them (the reference
     * aborts here) */
    g_assert_true(vmc_mux_client_agent_token(mux, b, 10, NULL));
    mb2 = mt_pop_all(mux, b);
    g_assert_cmpuint(mb2->len, ==, 6);
    g_assert_cmpuint(mt_stats(mux, b).send_budget, ==, 4);
}

/* ========================================================================= */
/* guest side */

static void
test_guest_big_chunk(Fx *fx, gconstpointer data)
{
    gsize len = 1024 * 1024;
    g_autoptr(GByteArray) m = mt_msg_pattern(VD_AGENT_CLIPBOARD, len, 7);
    g_autoptr(GPtrArray) msgs = NULL;
    g_autoptr(GByteArray) stream = NULL;
    guint other;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    /* spice-vdagentd writes a whole clipboard as one chunk */
    g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, (m->len + 2047) / 2048);
    for (guint i = 0; i < msgs->len; i++)
        g_assert_cmpuint(mt_get(msgs, i)->body->len, <=, 2048);
    stream = mt_data_stream(msgs, &other);
    g_assert_cmpuint(other, ==, 0);
    mt_assert_bytes(stream, m->data, m->len);
    g_assert_cmpuint(mt_stats(fx->mux, a).messages_out, ==, 1);
    g_assert_cmpuint(mt_gstats(fx->mux).messages_in, ==, 1);
    g_assert_cmpuint(mt_gstats(fx->mux).bytes_in, ==, m->len);
}

static void
test_guest_ports_apart(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m1 = mt_msg_pattern(99, 3000, 1);
    g_autoptr(GByteArray) m2 = mt_msg_pattern(VD_AGENT_REPLY, 8, 2);
    g_autoptr(GByteArray) s = g_byte_array_new();
    g_autoptr(GPtrArray) msgs = NULL;
    g_autoptr(GByteArray) stream = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    /* port-1 message in two chunks, a port-2 message split over two chunks in
     * between and around: each port is reassembled on its own */
    mt_append_chunk(s, 1, m1->data, 1500);
    mt_append_chunk(s, 2, m2->data, 20);
    mt_append_chunk(s, 1, m1->data + 1500, m1->len - 1500);
    mt_append_chunk(s, 2, m2->data + 20, 8);
    g_assert_true(mt_feed_guest(fx->mux, s->data, s->len));
    msgs = mt_pop_all(fx->mux, a);
    stream = mt_data_stream(msgs, NULL);
    mt_assert_bytes(stream, m1->data, m1->len);
    g_assert_cmpuint(fx->srv->len, ==, 1);
    mt_assert_bytes(g_ptr_array_index(fx->srv, 0), m2->data, m2->len);
}

static void
test_guest_port2_large_skipped(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) big = mt_msg_pattern(VD_AGENT_REPLY, 64 * 1024 + 1, 3);
    g_autoptr(GByteArray) ok = mt_msg_pattern(VD_AGENT_REPLY, 64 * 1024, 4);
    g_autoptr(GByteArray) s = g_byte_array_new();

    vmc_mux_guest_connected(fx->mux);
    mt_append_chunk(s, 2, big->data, big->len);
    mt_append_chunk(s, 2, ok->data, ok->len);
    /* a chunk of any size is fine on the way in */
    g_assert_true(mt_feed_guest(fx->mux, s->data, s->len));
    g_assert_cmpuint(fx->srv->len, ==, 1);
    mt_assert_bytes(g_ptr_array_index(fx->srv, 0), ok->data, ok->len);
    g_assert_cmpuint(mt_gstats(fx->mux).discarded, ==, big->len);
}

static void
test_guest_join_mid_message(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m1 = mt_msg_pattern(99, 5000, 5);
    g_autoptr(GByteArray) m2 = mt_msg_pattern(99, 10, 6);
    g_autoptr(GPtrArray) ma = NULL;
    g_autoptr(GPtrArray) mb = NULL;
    g_autoptr(GByteArray) sa = NULL;
    guint32 a, b;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    b = vmc_mux_client_add(fx->mux, CAP_TOK);
    g_assert_true(mt_feed_chunk(fx->mux, 1, m1->data, 3000));
    /* b starts mid-message: it must not get the tail of it */
    mt_start(fx->mux, b, ~0u);
    g_assert_true(mt_feed_chunk(fx->mux, 1, m1->data + 3000, m1->len - 3000));
    g_assert_true(mt_feed_chunk(fx->mux, 1, m2->data, m2->len));
    ma = mt_pop_all(fx->mux, a);
    mb = mt_pop_all(fx->mux, b);
    sa = mt_data_stream(ma, NULL);
    g_assert_cmpuint(sa->len, ==, m1->len + m2->len);
    g_assert_cmpuint(mb->len, ==, 1);
    mt_assert_data_msg(mb, 0, m2->data, m2->len);
}

static void
test_guest_disconnect_mid_message(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m1 = mt_msg_pattern(99, 5000, 5);
    g_autoptr(GByteArray) m2 = mt_msg_pattern(99, 10, 6);
    g_autoptr(GPtrArray) msgs = NULL;
    g_autoptr(GPtrArray) msgs2 = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    g_assert_true(mt_feed_chunk(fx->mux, 1, m1->data, 3000));
    vmc_mux_guest_disconnected(fx->mux);
    msgs = mt_pop_all(fx->mux, a);
    /* what was delivered stays, then AGENT_DISCONNECTED (spice-gtk resets its
     * reassembly on it) */
    g_assert_cmpuint(msgs->len, ==, 2);
    g_assert_cmpuint(mt_get(msgs, 0)->body->len, ==, 2048);
    mt_assert_u32_msg(msgs, 1, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);
    /* the new agent starts a fresh stream */
    vmc_mux_guest_connected(fx->mux);
    mt_start(fx->mux, a, ~0u);
    g_assert_true(mt_feed_chunk(fx->mux, 1, m2->data, m2->len));
    msgs2 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs2->len, ==, 2);
    mt_assert_data_msg(msgs2, 1, m2->data, m2->len);
}

static void
test_guest_not_connected(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_REPLY, NULL, 8);
    GError *error = NULL;

    g_assert_false(vmc_mux_guest_wants_input(fx->mux));
    g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    g_assert_cmpuint(mt_gstats(fx->mux).discarded, ==, m->len + 8);
    g_assert_false(vmc_mux_send_server_message(fx->mux, VD_AGENT_MOUSE_STATE, m->data, 13,
                                               &error));
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_CLOSED);
    g_clear_error(&error);
    vmc_mux_guest_connected(fx->mux);
    g_assert_true(vmc_mux_guest_wants_input(fx->mux));
    g_assert_true(fx_notified(fx, 0));
}

/* ========================================================================= */
/* client side */

static void
test_client_unlimited(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_REPLY, NULL, 8);
    g_autoptr(GPtrArray) msgs = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, 0xffffffffu);
    for (guint i = 0; i < 100; i++)
        g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 100);
    g_assert_cmpuint(mt_stats(fx->mux, a).send_budget, ==, 0xffffffffu);
    /* AGENT_TOKEN on an unlimited budget keeps it unlimited; on a finite one it
     * saturates below "unlimited" */
    g_assert_true(vmc_mux_client_agent_token(fx->mux, a, 0xffffffffu, NULL));
    g_assert_cmpuint(mt_stats(fx->mux, a).send_budget, ==, 0xffffffffu);
    mt_start(fx->mux, a, 5);
    g_assert_true(vmc_mux_client_agent_token(fx->mux, a, 0xffffffffu, NULL));
    g_assert_true(vmc_mux_client_agent_token(fx->mux, a, 0xffffffffu, NULL));
    g_assert_cmpuint(mt_stats(fx->mux, a).send_budget, ==, 0xfffffffeu);
}

static void
test_client_token_before_start(Fx *fx, gconstpointer data)
{
    guint32 a;

    /* the reference aborts on this; here it is simply accepted */
    vmc_mux_guest_connected(fx->mux);
    a = vmc_mux_client_add(fx->mux, CAP_TOK);
    g_assert_true(vmc_mux_client_agent_token(fx->mux, a, 5, NULL));
    g_assert_false(vmc_mux_client_failed(fx->mux, a, NULL));
    /* AGENT_START with no agent: ignored */
    vmc_mux_guest_disconnected(fx->mux);
    g_ptr_array_unref(mt_pop_all(fx->mux, a));
    mt_start(fx->mux, a, 3);
    g_assert_cmpuint(mt_stats(fx->mux, a).send_budget, ==, 5);
}

static void
test_client_no_connected_tokens_cap(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MAX_CLIPBOARD, NULL, 4);
    g_autoptr(GPtrArray) m1 = NULL;
    g_autoptr(GPtrArray) m2 = NULL;
    guint32 a;
    guint32 client_count = W; /* what the client believes */

    /* a client without AGENT_CONNECTED_TOKENS never has its count reset, so the
     * mux keeps exact accounting across agent reconnects */
    vmc_mux_guest_connected(fx->mux);
    a = vmc_mux_client_add(fx->mux, 0);
    mt_start(fx->mux, a, ~0u);
    for (guint i = 0; i < 10; i++) {
        mt_data_ok(fx->mux, a, b->data, b->len);
        client_count--;
    }
    vmc_mux_guest_disconnected(fx->mux);
    for (guint i = 0; i < 5; i++) {
        mt_data_ok(fx->mux, a, b->data, b->len); /* late data: discarded */
        client_count--;
    }
    vmc_mux_guest_connected(fx->mux);
    m1 = mt_pop_all(fx->mux, a);
    client_count += mt_tokens(m1);
    g_assert_cmpuint(mt_count_type(m1, SPICE_MSG_MAIN_AGENT_CONNECTED), ==, 1);
    g_assert_cmpuint(client_count, ==, W);
    mt_start(fx->mux, a, ~0u);
    for (guint i = 0; i < W; i++)
        mt_data_ok(fx->mux, a, b->data, b->len);
    g_byte_array_unref(mt_guest_out(fx->mux));
    m2 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(mt_tokens(m2), ==, W);
}

static void
test_client_forgiven_after_reconnect(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MAX_CLIPBOARD, NULL, 4);
    g_autoptr(GPtrArray) m1 = NULL;
    g_autoptr(GPtrArray) m2 = NULL;
    GError *error;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    for (guint i = 0; i < 100; i++)
        mt_data_ok(fx->mux, a, b->data, b->len);
    /* the agent goes and comes back before the client has read anything */
    vmc_mux_guest_disconnected(fx->mux);
    vmc_mux_guest_connected(fx->mux);
    /* the client keeps sending from its old count (412 left) */
    for (guint i = 0; i < 412; i++)
        mt_data_ok(fx->mux, a, b->data, b->len);
    m1 = mt_pop_all(fx->mux, a);
    /* it reads: TOKEN(100) adds, CONNECTED_TOKENS sets to the window */
    mt_assert_u32_msg(m1, 0, SPICE_MSG_MAIN_AGENT_TOKEN, 100);
    mt_assert_u32_msg(m1, 1, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);
    mt_assert_u32_msg(m1, 2, SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS, W);
    g_assert_cmpuint(m1->len, ==, 3);
    mt_start(fx->mux, a, ~0u);
    for (guint i = 0; i < W; i++)
        mt_data_ok(fx->mux, a, b->data, b->len);
    error = mt_data_err(fx->mux, a, b->data, b->len);
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_FLOW_CONTROL);
    g_error_free(error);
    m2 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(m2->len, ==, 0);
}

static void
test_client_token_coalesced(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = mt_msg(VD_AGENT_MAX_CLIPBOARD, NULL, 4);
    g_autoptr(GPtrArray) m1 = NULL;
    VmcMuxMsg peek;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    for (guint r = 0; r < 3; r++) {
        mt_data_ok(fx->mux, a, b->data, b->len);
        g_byte_array_unref(mt_guest_out(fx->mux));
    }
    /* three returns, not read yet: one AGENT_TOKEN(3) */
    g_assert_true(vmc_mux_client_peek(fx->mux, a, &peek));
    g_assert_cmpuint(peek.type, ==, SPICE_MSG_MAIN_AGENT_TOKEN);
    g_assert_cmpuint(vmc_get_u32le(peek.data), ==, 3);
    /* once peeked it is never changed: the next return is a new message */
    mt_data_ok(fx->mux, a, b->data, b->len);
    g_byte_array_unref(mt_guest_out(fx->mux));
    m1 = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(m1->len, ==, 2);
    mt_assert_u32_msg(m1, 0, SPICE_MSG_MAIN_AGENT_TOKEN, 3);
    mt_assert_u32_msg(m1, 1, SPICE_MSG_MAIN_AGENT_TOKEN, 1);
}

static void
test_client_server_only_messages_dropped(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg(VD_AGENT_CLIENT_DISCONNECTED, NULL, 0);
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, m->data, m->len);
    assert_guest_out_empty(fx->mux);
    g_assert_cmpuint(mt_stats(fx->mux, a).discarded, ==, m->len);
}

/* ========================================================================= */
/* policy */

static void
test_policy_file_xfer_start_answered(Fx *fx, gconstpointer data)
{
    static const char text[] = "[vdagent-file-xfer]\nname=a\nsize=1\n";
    g_autoptr(GByteArray) start = NULL;
    g_autoptr(GByteArray) want = mt_u32_msg(VD_AGENT_FILE_XFER_STATUS, 42,
                                            VD_AGENT_FILE_XFER_STATUS_DISABLED, 8);
    g_autoptr(GByteArray) data_msg = mt_msg(VD_AGENT_FILE_XFER_DATA, NULL, 20);
    g_autoptr(GPtrArray) msgs = NULL;
    guint8 payload[4 + sizeof(text)];
    guint32 a;

    vmc_put_u32le(payload, 42);
    memcpy(payload + 4, text, sizeof(text));
    start = mt_msg(VD_AGENT_FILE_XFER_START, payload, sizeof(payload));
    vmc_mux_set_file_xfer(fx->mux, FALSE);
    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    /* the id arrives in the second unit: the answer waits for it */
    mt_data_ok(fx->mux, a, start->data, 20);
    {
        g_autoptr(GPtrArray) early = mt_pop_all(fx->mux, a);

        g_assert_cmpuint(mt_count_type(early, SPICE_MSG_MAIN_AGENT_DATA), ==, 0);
        g_assert_cmpuint(mt_tokens(early), ==, 1);
    }
    mt_data_ok(fx->mux, a, start->data + 20, start->len - 20);
    mt_data_ok(fx->mux, a, data_msg->data, data_msg->len);
    assert_guest_out_empty(fx->mux);
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(mt_count_type(msgs, SPICE_MSG_MAIN_AGENT_DATA), ==, 1);
    g_assert_cmpuint(mt_tokens(msgs), ==, 2);
    for (guint i = 0; i < msgs->len; i++)
        if (mt_get(msgs, i)->type == SPICE_MSG_MAIN_AGENT_DATA)
            mt_assert_data_msg(msgs, i, want->data, want->len);
}

static void
test_policy_answer_waits_for_boundary(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) start = mt_u32_msg(VD_AGENT_FILE_XFER_START, 7, 0, 5);
    g_autoptr(GByteArray) big = mt_msg_pattern(99, 5000, 9);
    g_autoptr(GByteArray) want = mt_u32_msg(VD_AGENT_FILE_XFER_STATUS, 7,
                                            VD_AGENT_FILE_XFER_STATUS_DISABLED, 8);
    g_autoptr(GByteArray) expect = g_byte_array_new();
    g_autoptr(GPtrArray) msgs = NULL;
    g_autoptr(GByteArray) stream = NULL;
    guint32 a;

    vmc_mux_set_file_xfer(fx->mux, FALSE);
    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    /* an agent message is half delivered when the answer is made: it goes
     * after that message, never inside it */
    g_assert_true(mt_feed_chunk(fx->mux, 1, big->data, 3000));
    mt_data_ok(fx->mux, a, start->data, start->len);
    g_assert_true(mt_feed_chunk(fx->mux, 1, big->data + 3000, big->len - 3000));
    msgs = mt_pop_all(fx->mux, a);
    stream = mt_data_stream(msgs, NULL);
    g_byte_array_append(expect, big->data, big->len);
    g_byte_array_append(expect, want->data, want->len);
    mt_assert_bytes(stream, expect->data, expect->len);
}

static void
test_policy_clipboard_both_ways(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) grab = mt_u32_msg(VD_AGENT_CLIPBOARD_GRAB, 1, 0, 4);
    g_autoptr(GByteArray) clip = mt_msg_pattern(VD_AGENT_CLIPBOARD, 5000, 3);
    guint32 a;

    vmc_mux_set_copy_paste(fx->mux, FALSE);
    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, grab->data, grab->len);
    mt_send_msg(fx->mux, a, clip);
    assert_guest_out_empty(fx->mux);
    g_assert_true(mt_feed_chunk(fx->mux, 1, clip->data, clip->len));
    g_assert_true(mt_feed_chunk(fx->mux, 1, grab->data, grab->len));
    {
        g_autoptr(GPtrArray) msgs = mt_pop_all(fx->mux, a);

        g_assert_cmpuint(mt_count_type(msgs, SPICE_MSG_MAIN_AGENT_DATA), ==, 0);
        g_assert_cmpuint(mt_tokens(msgs), ==, 4);
    }
    g_assert_cmpuint(mt_stats(fx->mux, a).discarded, ==, grab->len + clip->len);
    g_assert_cmpuint(mt_gstats(fx->mux).discarded, ==, grab->len + clip->len);
}

/* ========================================================================= */
/* several clients */

static VmcMuxConfig *
multi_cfg(guint max_clients)
{
    static VmcMuxConfig cfg;

    vmc_mux_config_init(&cfg);
    cfg.max_clients = max_clients;
    return &cfg;
}

static void
test_multi_no_interleave(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) ma = mt_msg_pattern(VD_AGENT_CLIPBOARD, 5000, 1);
    g_autoptr(GByteArray) mb = mt_msg_pattern(VD_AGENT_CLIPBOARD, 3000, 2);
    g_autoptr(GByteArray) mb2 = mt_msg_pattern(100, 4, 3);
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GByteArray) want = g_byte_array_new();
    guint32 a, b;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    b = fx_client(fx, ~0u);
    /* a and b interleave their AGENT_DATA (the reference aborts on this) */
    mt_data_ok(fx->mux, a, ma->data, 2048);
    mt_data_ok(fx->mux, b, mb->data, 2048);
    mt_data_ok(fx->mux, b, mb->data + 2048, mb->len - 2048);
    mt_data_ok(fx->mux, b, mb2->data, mb2->len);
    mt_data_ok(fx->mux, a, ma->data + 2048, 2048);
    mt_data_ok(fx->mux, a, ma->data + 4096, ma->len - 4096);
    out = mt_guest_out(fx->mux);
    /* the guest sees whole messages: with a shared agent a message starts only
     * once it is whole (docs/sharing.md), so b's two go first, then a's */
    mt_append_chunk(want, 1, mb->data, 2048);
    mt_append_chunk(want, 1, mb->data + 2048, mb->len - 2048);
    mt_append_chunk(want, 1, mb2->data, mb2->len);
    mt_append_chunk(want, 1, ma->data, 2048);
    mt_append_chunk(want, 1, ma->data + 2048, 2048);
    mt_append_chunk(want, 1, ma->data + 4096, ma->len - 4096);
    mt_assert_bytes(out, want->data, want->len);
}

static void
test_multi_round_robin(void)
{
    VmcMuxConfig cfg;
    g_autoptr(VmcMux) mux = NULL;
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GPtrArray) chunks = NULL;
    guint32 id[3];

    /* a guest output of two chunks: the scheduler has to arbitrate */
    vmc_mux_config_init(&cfg);
    cfg.max_clients = 3;
    cfg.guest_out_limit = 1;
    mux = vmc_mux_new(&cfg);
    vmc_mux_guest_connected(mux);
    for (guint i = 0; i < 3; i++) {
        id[i] = vmc_mux_client_add(mux, CAP_TOK);
        mt_start(mux, id[i], ~0u);
    }
    /* client 0 sends 6 messages first, then 1 and 2 send 4 each */
    for (guint k = 0; k < 6; k++) {
        g_autoptr(GByteArray) m = mt_msg_pattern(100, 2000, k);

        mt_data_ok(mux, id[0], m->data, m->len);
    }
    for (guint k = 0; k < 4; k++)
        for (guint i = 1; i < 3; i++) {
            g_autoptr(GByteArray) m = mt_msg_pattern(100 + i, 2000, k);

            mt_data_ok(mux, id[i], m->data, m->len);
        }
    out = mt_guest_out(mux);
    chunks = mt_parse_chunks(out);
    g_assert_cmpuint(chunks->len, ==, 14);
    {
        /* three of client 0's fit the guest output at once (the limit is at
         * least two full chunks); then one message per client in turn */
        static const guint32 want[] = { 100, 100, 100, 101, 102, 100, 101,
                                        102, 100, 101, 102, 100, 101, 102 };

        for (guint i = 0; i < chunks->len; i++) {
            MtChunk *c = g_ptr_array_index(chunks, i);

            g_assert_cmpuint(vmc_get_u32le(c->data->data + 4), ==, want[i]);
        }
    }
}

static void
test_multi_leave_mid_message(Fx *fx, gconstpointer data)
{
    /* 35 AGENT_DATA: bigger than what the shared agent stages whole (33) */
    g_autoptr(GByteArray) ma = mt_msg_pattern(100, 70000, 1);
    g_autoptr(GByteArray) mb = mt_msg_pattern(101, 4, 2);
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GByteArray) want = g_byte_array_new();
    static const guint8 zeros[2048];
    guint32 a, b;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    b = fx_client(fx, ~0u);
    for (guint i = 0; i < 34; i++)
        mt_data_ok(fx->mux, a, ma->data + i * 2048, 2048);
    mt_data_ok(fx->mux, b, mb->data, mb->len);
    /* a leaves in the middle of its message while b stays: the mux completes it
     * with zeros (no CLIENT_DISCONNECTED, which would reset the agent for b),
     * then b's message */
    vmc_mux_client_remove(fx->mux, a);
    out = mt_guest_out(fx->mux);
    for (guint i = 0; i < 34; i++)
        mt_append_chunk(want, 1, ma->data + i * 2048, 2048);
    mt_append_chunk(want, 1, zeros, ma->len - 34 * 2048);
    mt_append_chunk(want, 1, mb->data, mb->len);
    mt_assert_bytes(out, want->data, want->len);
}

static void
test_multi_leave_not_last(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg_pattern(VD_AGENT_MAX_CLIPBOARD, 4, 2);
    g_autoptr(GByteArray) partial = mt_msg_pattern(VD_AGENT_CLIPBOARD, 5000, 1);
    guint32 a, b;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    b = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, m->data, m->len);
    g_byte_array_unref(mt_guest_out(fx->mux));
    /* a leaves between messages while b stays: the agent keeps its state */
    vmc_mux_client_remove(fx->mux, a);
    assert_guest_out_empty(fx->mux);
    /* b leaves last: CLIENT_DISCONNECTED */
    (void)partial;
    vmc_mux_client_remove(fx->mux, b);
    {
        g_autoptr(GByteArray) out = mt_guest_out(fx->mux);

        mt_assert_bytes(out, client_disconnected_chunk, sizeof(client_disconnected_chunk));
    }
}

static void
test_multi_leave_with_staged_partial(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) ma = mt_msg_pattern(VD_AGENT_CLIPBOARD, 5000, 1);
    g_autoptr(GByteArray) mb = mt_msg_pattern(VD_AGENT_CLIPBOARD, 5000, 2);
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GByteArray) want = g_byte_array_new();
    guint32 a, b, c;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    b = fx_client(fx, ~0u);
    c = fx_client(fx, ~0u);
    (void)c;
    mt_data_ok(fx->mux, a, ma->data, 2048); /* a owns the port */
    mt_data_ok(fx->mux, b, mb->data, 2048); /* b waits, partial */
    vmc_mux_client_remove(fx->mux, b);      /* its partial never reached the port */
    mt_data_ok(fx->mux, a, ma->data + 2048, 2048);
    mt_data_ok(fx->mux, a, ma->data + 4096, ma->len - 4096);
    out = mt_guest_out(fx->mux);
    mt_append_chunk(want, 1, ma->data, 2048);
    mt_append_chunk(want, 1, ma->data + 2048, 2048);
    mt_append_chunk(want, 1, ma->data + 4096, ma->len - 4096);
    mt_assert_bytes(out, want->data, want->len);
}

static void
test_multi_stall_hold(Fx *fx, gconstpointer data)
{
    /* bigger than what the shared agent stages whole: it starts at 33 units */
    g_autoptr(GByteArray) ma = mt_msg_pattern(100, 70000, 1);
    g_autoptr(GByteArray) mb = mt_msg_pattern(101, 4, 2);
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GByteArray) want = g_byte_array_new();
    static const guint8 zeros[2048];
    GError *error = NULL;
    guint32 a, b;
    gint64 t0 = 1000;

    vmc_mux_tick(fx->mux, t0);
    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    b = fx_client(fx, ~0u);
    for (guint i = 0; i < 33; i++)
        mt_data_ok(fx->mux, a, ma->data + i * 2048, 2048);
    g_assert_cmpint(vmc_mux_next_deadline(fx->mux), ==, -1); /* nobody waits */
    vmc_mux_tick(fx->mux, t0 + 5 * G_USEC_PER_SEC);
    mt_data_ok(fx->mux, b, mb->data, mb->len);
    /* b waits for a: the clock runs from now */
    g_assert_cmpint(vmc_mux_next_deadline(fx->mux), ==, t0 + 35 * G_USEC_PER_SEC);
    /* progress by a restarts it */
    vmc_mux_tick(fx->mux, t0 + 20 * G_USEC_PER_SEC);
    mt_data_ok(fx->mux, a, ma->data + 33 * 2048, 2048);
    g_assert_cmpint(vmc_mux_next_deadline(fx->mux), ==, t0 + 50 * G_USEC_PER_SEC);
    vmc_mux_tick(fx->mux, t0 + 49 * G_USEC_PER_SEC);
    g_assert_false(vmc_mux_client_failed(fx->mux, a, NULL));
    vmc_mux_tick(fx->mux, t0 + 50 * G_USEC_PER_SEC);
    g_assert_true(vmc_mux_client_failed(fx->mux, a, &error));
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_STALLED);
    g_clear_error(&error);
    g_assert_true(fx_notified(fx, a));
    out = mt_guest_out(fx->mux);
    /* its message is completed with zeros, then b's goes */
    for (guint i = 0; i < 34; i++)
        mt_append_chunk(want, 1, ma->data + i * 2048, 2048);
    mt_append_chunk(want, 1, zeros, ma->len - 34 * 2048);
    mt_append_chunk(want, 1, mb->data, mb->len);
    mt_assert_bytes(out, want->data, want->len);
    g_assert_cmpint(vmc_mux_next_deadline(fx->mux), ==, -1);
}

static void
test_multi_slow_reader(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg_pattern(99, 2028, 1);
    GError *error = NULL;
    guint32 a, b;
    guint fed = 0;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u); /* reads */
    b = fx_client(fx, ~0u); /* never reads */
    while (vmc_mux_guest_wants_input(fx->mux)) {
        g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
        g_ptr_array_unref(mt_pop_all(fx->mux, a));
        fed++;
    }
    /* b's queue reached its limit (1 MiB): the guest is paused for everybody */
    g_assert_cmpuint(fed, ==, 512);
    g_assert_cmpuint(mt_stats(fx->mux, b).queued_bytes, ==, 1024 * 1024);
    g_assert_cmpint(vmc_mux_next_deadline(fx->mux), ==, 30 * G_USEC_PER_SEC);
    g_array_set_size(fx->notes, 0);
    vmc_mux_tick(fx->mux, 30 * G_USEC_PER_SEC);
    g_assert_true(vmc_mux_client_failed(fx->mux, b, &error));
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_STALLED);
    g_clear_error(&error);
    /* the guest flows again */
    g_assert_true(vmc_mux_guest_wants_input(fx->mux));
    g_assert_true(fx_notified(fx, 0));
    g_assert_true(fx_notified(fx, b));
    g_assert_cmpuint(mt_stats(fx->mux, b).queued_bytes, ==, 0);
}

static void
test_single_slow_reader_not_cut(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg_pattern(99, 2028, 1);
    g_autoptr(GPtrArray) msgs = NULL;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    while (vmc_mux_guest_wants_input(fx->mux))
        g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    /* a single slow client only pauses the guest: nobody else is starved */
    g_assert_cmpint(vmc_mux_next_deadline(fx->mux), ==, -1);
    vmc_mux_tick(fx->mux, (gint64)3600 * G_USEC_PER_SEC);
    g_assert_false(vmc_mux_client_failed(fx->mux, a, NULL));
    g_array_set_size(fx->notes, 0);
    msgs = mt_pop_all(fx->mux, a);
    g_assert_cmpuint(msgs->len, ==, 512);
    g_assert_true(vmc_mux_guest_wants_input(fx->mux));
    g_assert_true(fx_notified(fx, 0));
}

static void
test_limits_hard(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg_pattern(99, 2028, 1);
    GError *error = NULL;
    guint32 a;
    guint n = 0;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, 0); /* never grants a token */
    /* a runtime that ignores wants_input: the client is cut off at twice its
     * limit, nothing grows further */
    while (!vmc_mux_client_failed(fx->mux, a, NULL)) {
        g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
        n++;
        g_assert_cmpuint(n, <=, 1025);
    }
    g_assert_cmpuint(n, ==, 1025);
    g_assert_true(vmc_mux_client_failed(fx->mux, a, &error));
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_TOO_LARGE);
    g_clear_error(&error);
    g_assert_cmpuint(mt_stats(fx->mux, a).queued_bytes, ==, 0);
    g_assert_cmpuint(mt_stats(fx->mux, a).queued_peak, >, 2 * 1024 * 1024);
}

static void
test_limits_guest_output(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg_pattern(99, 2028, 1);
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    /* the guest does not read: at most guest_out_limit (+ one chunk) is queued
     * for it, the rest waits in the client's staging (bounded by its window) */
    for (guint i = 0; i < W; i++)
        mt_data_ok(fx->mux, a, m->data, m->len);
    g_assert_cmpuint(vmc_mux_guest_output_size(fx->mux), <, 256 * 1024 + 2056);
    g_assert_cmpuint(vmc_mux_guest_output_size(fx->mux), >=, 256 * 1024);
    g_assert_cmpuint(mt_stats(fx->mux, a).tokens_in_use, ==, W);
    g_byte_array_unref(mt_guest_out(fx->mux));
    g_assert_cmpuint(mt_gstats(fx->mux).messages_out, ==, W);
    g_assert_cmpuint(mt_gstats(fx->mux).bytes_out, ==, W * m->len);
    g_assert_cmpuint(mt_gstats(fx->mux).queued_peak, >=, 256 * 1024);
}

static void
test_multi_caps_from_cache(Fx *fx, gconstpointer data)
{
    /* spice-vdagentd's answer to a client's request */
    g_autoptr(GByteArray) agent_caps = mt_caps(0, 0x38de7);
    g_autoptr(GByteArray) client_caps = mt_caps(1, 0x35077);
    g_autoptr(GByteArray) answer = mt_caps(0, 0x38de7);
    g_autoptr(GByteArray) want = mt_chunk(1, client_caps->data, client_caps->len);
    g_autoptr(GPtrArray) mb = NULL;
    guint32 a, b;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    /* first client: forwarded (the agent learns the client's caps) */
    mt_data_ok(fx->mux, a, client_caps->data, client_caps->len);
    assert_guest_out(fx->mux, want);
    g_assert_true(mt_feed_chunk(fx->mux, 1, agent_caps->data, agent_caps->len));
    g_ptr_array_unref(mt_pop_all(fx->mux, a));
    /* a second client joins: answered from the cache, the agent (which would
     * reset every transfer) never sees it */
    b = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, b, client_caps->data, client_caps->len);
    assert_guest_out_empty(fx->mux);
    mb = mt_pop_all(fx->mux, b);
    g_assert_cmpuint(mt_count_type(mb, SPICE_MSG_MAIN_AGENT_DATA), ==, 1);
    {
        g_autoptr(GByteArray) got = mt_data_stream(mb, NULL);

        mt_assert_bytes(got, answer->data, answer->len);
    }
    g_assert_cmpuint(mt_tokens(mb), ==, 1);
}

static void
test_multi_xfer_remap(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) sa = mt_u32_msg(VD_AGENT_FILE_XFER_START, 1, 0, 5);
    g_autoptr(GByteArray) sb = mt_u32_msg(VD_AGENT_FILE_XFER_START, 1, 0, 5);
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GPtrArray) chunks = NULL;
    g_autoptr(GPtrArray) ma = NULL;
    g_autoptr(GPtrArray) mb = NULL;
    guint32 a, b, ida, idb;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    b = fx_client(fx, ~0u);
    /* both clients use transfer id 1 (spice-gtk counts from 1 per process) */
    mt_data_ok(fx->mux, a, sa->data, sa->len);
    mt_data_ok(fx->mux, b, sb->data, sb->len);
    out = mt_guest_out(fx->mux);
    chunks = mt_parse_chunks(out);
    g_assert_cmpuint(chunks->len, ==, 2);
    ida = vmc_get_u32le(((MtChunk *)g_ptr_array_index(chunks, 0))->data->data + 20);
    idb = vmc_get_u32le(((MtChunk *)g_ptr_array_index(chunks, 1))->data->data + 20);
    g_assert_cmpuint(ida, !=, idb);
    /* the agent's answers go to the owner only, with its own id */
    {
        g_autoptr(GByteArray) st = mt_u32_msg(VD_AGENT_FILE_XFER_STATUS, idb,
                                              VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA, 8);
        g_autoptr(GByteArray) wantb = mt_u32_msg(VD_AGENT_FILE_XFER_STATUS, 1,
                                                 VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA, 8);

        g_assert_true(mt_feed_chunk(fx->mux, 1, st->data, st->len));
        ma = mt_pop_all(fx->mux, a);
        mb = mt_pop_all(fx->mux, b);
        g_assert_cmpuint(mt_count_type(ma, SPICE_MSG_MAIN_AGENT_DATA), ==, 0);
        g_assert_cmpuint(mt_count_type(mb, SPICE_MSG_MAIN_AGENT_DATA), ==, 1);
        for (guint i = 0; i < mb->len; i++)
            if (mt_get(mb, i)->type == SPICE_MSG_MAIN_AGENT_DATA)
                mt_assert_data_msg(mb, i, wantb->data, wantb->len);
    }
    /* a leaves (b stays): the agent is told a's transfer was cancelled */
    vmc_mux_client_remove(fx->mux, a);
    {
        g_autoptr(GByteArray) want = mt_u32_msg(VD_AGENT_FILE_XFER_STATUS, ida,
                                                VD_AGENT_FILE_XFER_STATUS_CANCELLED, 8);
        g_autoptr(GByteArray) wantc = mt_chunk(1, want->data, want->len);

        assert_guest_out(fx->mux, wantc);
    }
}

static void
test_multi_clipboard_routing(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) grab = mt_u32_msg(VD_AGENT_CLIPBOARD_GRAB, 1, 0, 4);
    g_autoptr(GByteArray) req = mt_u32_msg(VD_AGENT_CLIPBOARD_REQUEST, 1, 0, 4);
    g_autoptr(GByteArray) rel = mt_u32_msg(VD_AGENT_CLIPBOARD_RELEASE, 0, 0, 0);
    g_autoptr(GByteArray) clip = mt_u32_msg(VD_AGENT_CLIPBOARD, 1, 0x41414141, 8);
    guint32 a, b;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    b = fx_client(fx, ~0u);
    /* b grabs: the agent's request goes to b only */
    mt_data_ok(fx->mux, b, grab->data, grab->len);
    g_byte_array_unref(mt_guest_out(fx->mux));
    g_assert_true(mt_feed_chunk(fx->mux, 1, req->data, req->len));
    assert_data_stream(fx->mux, a, NULL, 0);
    assert_data_stream(fx->mux, b, req->data, req->len);
    /* a stale release from a is dropped */
    mt_data_ok(fx->mux, a, rel->data, rel->len);
    assert_guest_out_empty(fx->mux);
    /* a asks for the guest's clipboard: the data goes to a only */
    mt_data_ok(fx->mux, a, req->data, req->len);
    g_byte_array_unref(mt_guest_out(fx->mux));
    g_assert_true(mt_feed_chunk(fx->mux, 1, clip->data, clip->len));
    assert_data_stream(fx->mux, a, clip->data, clip->len);
    assert_data_stream(fx->mux, b, NULL, 0);
    /* the owner leaves while a stays: released on its behalf */
    vmc_mux_client_remove(fx->mux, b);
    {
        g_autoptr(GByteArray) want = mt_chunk(1, rel->data, rel->len);

        assert_guest_out(fx->mux, want);
    }
}

/* ========================================================================= */
/* server messages */

static void
test_server_mouse_coalesced(Fx *fx, gconstpointer data)
{
    guint8 s1[13] = { 1 }, s2[13] = { 2 }, s3[13] = { 3 };
    g_autoptr(GByteArray) m2 = mt_msg(VD_AGENT_MOUSE_STATE, s2, 13);
    g_autoptr(GByteArray) m3 = mt_msg(VD_AGENT_MOUSE_STATE, s3, 13);
    g_autoptr(GByteArray) want = g_byte_array_new();
    g_autoptr(GByteArray) first = NULL;
    g_autoptr(GByteArray) rest = NULL;

    vmc_mux_guest_connected(fx->mux);
    g_assert_true(vmc_mux_send_server_message(fx->mux, VD_AGENT_MOUSE_STATE, s1, 13, NULL));
    g_assert_true(vmc_mux_send_server_message(fx->mux, VD_AGENT_MOUSE_STATE, s2, 13, NULL));
    /* the first is replaced before it went out: one chunk, latest state */
    g_assert_cmpuint(vmc_mux_guest_output_size(fx->mux), ==, 41);
    first = mt_guest_out_some(fx->mux, 5);
    /* started: a new state queues behind it, and replaces any later one */
    g_assert_true(vmc_mux_send_server_message(fx->mux, VD_AGENT_MOUSE_STATE, s1, 13, NULL));
    g_assert_true(vmc_mux_send_server_message(fx->mux, VD_AGENT_MOUSE_STATE, s3, 13, NULL));
    rest = mt_guest_out(fx->mux);
    g_byte_array_append(first, rest->data, rest->len);
    mt_append_chunk(want, 2, m2->data, m2->len);
    mt_append_chunk(want, 2, m3->data, m3->len);
    mt_assert_bytes(first, want->data, want->len);
}

static void
test_server_interleave_rules(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) ma = mt_msg_pattern(VD_AGENT_CLIPBOARD, 5000, 1);
    g_autoptr(GByteArray) info = mt_msg_pattern(VD_AGENT_GRAPHICS_DEVICE_INFO, 3000, 2);
    guint8 s1[13] = { 9 };
    g_autoptr(GByteArray) mouse = mt_msg(VD_AGENT_MOUSE_STATE, s1, 13);
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GByteArray) want = g_byte_array_new();
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, ma->data, 2048);
    /* a single-chunk port-2 message goes out at the next chunk boundary, even
     * inside a client's port-1 message; a longer one waits for its end */
    g_assert_true(vmc_mux_send_server_message(fx->mux, VD_AGENT_GRAPHICS_DEVICE_INFO,
                                              info->data + 20, 3000, NULL));
    g_assert_true(vmc_mux_send_server_message(fx->mux, VD_AGENT_MOUSE_STATE, s1, 13, NULL));
    mt_data_ok(fx->mux, a, ma->data + 2048, 2048);
    mt_data_ok(fx->mux, a, ma->data + 4096, ma->len - 4096);
    out = mt_guest_out(fx->mux);
    mt_append_chunk(want, 1, ma->data, 2048);
    mt_append_chunk(want, 2, mouse->data, mouse->len);
    mt_append_chunk(want, 1, ma->data + 2048, 2048);
    mt_append_chunk(want, 1, ma->data + 4096, ma->len - 4096);
    mt_append_chunk(want, 2, info->data, 2048);
    mt_append_chunk(want, 2, info->data + 2048, info->len - 2048);
    mt_assert_bytes(out, want->data, want->len);
}

static void
test_server_client_disconnected_waits(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) ma = mt_msg_pattern(VD_AGENT_CLIPBOARD, 3000, 1);
    g_autoptr(GByteArray) out = NULL;
    g_autoptr(GByteArray) want = g_byte_array_new();
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    mt_data_ok(fx->mux, a, ma->data, 2048);
    /* an embedder's CLIENT_DISCONNECTED resets the agent's port-1 reassembly:
     * it waits for the client's message to end */
    g_assert_true(vmc_mux_send_server_message(fx->mux, VD_AGENT_CLIENT_DISCONNECTED, NULL, 0,
                                              NULL));
    mt_data_ok(fx->mux, a, ma->data + 2048, ma->len - 2048);
    out = mt_guest_out(fx->mux);
    mt_append_chunk(want, 1, ma->data, 2048);
    mt_append_chunk(want, 1, ma->data + 2048, ma->len - 2048);
    g_byte_array_append(want, client_disconnected_chunk, sizeof(client_disconnected_chunk));
    mt_assert_bytes(out, want->data, want->len);
}

static void
test_server_too_large(Fx *fx, gconstpointer data)
{
    g_autofree guint8 *big = g_malloc0(64 * 1024 + 1);
    GError *error = NULL;

    vmc_mux_guest_connected(fx->mux);
    g_assert_false(vmc_mux_send_server_message(fx->mux, 99, big, 64 * 1024 + 1, &error));
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_TOO_LARGE);
    g_clear_error(&error);
    g_assert_true(vmc_mux_send_server_message(fx->mux, 99, big, 64 * 1024, NULL));
    {
        g_autoptr(GByteArray) out = mt_guest_out(fx->mux);
        g_autoptr(GPtrArray) chunks = mt_parse_chunks(out);

        g_assert_cmpuint(chunks->len, ==, (64 * 1024 + 20 + 2047) / 2048);
    }
}

/* ========================================================================= */
/* observation */

typedef struct {
    guint count[4];
    GByteArray *agent_client;
} TapRec;

static void
on_tap(gpointer user_data, VmcMuxDirection dir, guint32 client_id, guint32 port,
       const guint8 *data, gsize len, guint span_flags)
{
    TapRec *r = user_data;

    r->count[dir]++;
    if (dir == VMC_MUX_DIR_AGENT_CLIENT)
        g_byte_array_append(r->agent_client, data, (guint)len);
}

static void
test_tap(Fx *fx, gconstpointer data)
{
    TapRec r = { { 0 }, g_byte_array_new() };
    g_autoptr(GByteArray) m = mt_msg_pattern(99, 5000, 1);
    guint32 a;

    vmc_mux_set_tap_func(fx->mux, on_tap, &r);
    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    g_assert_true(mt_feed_chunk(fx->mux, 2, m->data, m->len));
    mt_send_msg(fx->mux, a, m);
    g_assert_true(vmc_mux_send_server_message(fx->mux, VD_AGENT_MOUSE_STATE, m->data, 13, NULL));
    g_assert_cmpuint(r.count[VMC_MUX_DIR_AGENT_CLIENT], ==, 3);
    g_assert_cmpuint(r.count[VMC_MUX_DIR_AGENT_SERVER], ==, 1);
    g_assert_cmpuint(r.count[VMC_MUX_DIR_CLIENT_AGENT], ==, 3);
    g_assert_cmpuint(r.count[VMC_MUX_DIR_SERVER_AGENT], ==, 1);
    mt_assert_bytes(r.agent_client, m->data, m->len);
    g_byte_array_unref(r.agent_client);
}

static void
test_stats(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg_pattern(99, 5000, 1);
    VmcMuxStats s;
    guint32 a;

    vmc_mux_guest_connected(fx->mux);
    a = fx_client(fx, ~0u);
    g_assert_false(vmc_mux_client_get_stats(fx->mux, 999, &s));
    g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
    s = mt_stats(fx->mux, a);
    g_assert_cmpuint(s.queued_bytes, ==, m->len);
    g_assert_cmpuint(s.bytes_out, ==, 0);
    g_ptr_array_unref(mt_pop_all(fx->mux, a));
    mt_send_msg(fx->mux, a, m);
    s = mt_stats(fx->mux, a);
    g_assert_cmpuint(s.bytes_out, ==, m->len);
    g_assert_cmpuint(s.messages_out, ==, 1);
    g_assert_cmpuint(s.bytes_in, ==, m->len);
    g_assert_cmpuint(s.messages_in, ==, 1);
    g_assert_cmpuint(s.tokens_in_use, ==, 3);
    g_assert_cmpuint(s.tokens_granted, ==, W);
    g_assert_cmpuint(s.queued_peak, ==, m->len);
    g_assert_cmpuint(s.send_budget, ==, 0xffffffffu);
    s = mt_gstats(fx->mux);
    g_assert_cmpuint(s.queued_bytes, ==, m->len + 3 * 8);
    g_assert_cmpuint(s.bytes_in, ==, m->len);
    g_assert_cmpuint(s.messages_in, ==, 1);
}

static void
test_config_defaults(void)
{
    VmcMuxConfig cfg;
    g_autoptr(VmcMux) mux = NULL;

    vmc_mux_config_init(&cfg);
    g_assert_cmpuint(cfg.agent_window, ==, 512);
    g_assert_true(cfg.copy_paste);
    g_assert_true(cfg.file_xfer);
    g_assert_cmpuint(cfg.max_clients, ==, 1);
    g_assert_cmpuint(cfg.client_out_limit, ==, 1024 * 1024);
    g_assert_cmpuint(cfg.guest_out_limit, ==, 256 * 1024);
    g_assert_cmpint(cfg.stall_timeout_us, ==, 30 * G_USEC_PER_SEC);
    cfg.agent_window = 0;
    mux = vmc_mux_new(&cfg);
    g_assert_cmpuint(vmc_mux_get_agent_window(mux), ==, 1);
    vmc_mux_free(NULL);
}

/* ========================================================================= */

#define ADD(path, fn) g_test_add(path, Fx, NULL, fx_setup, fn, fx_teardown)
#define ADD_CFG(path, cfg, fn) g_test_add(path, Fx, cfg, fx_setup, fn, fx_teardown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("Scripted transcripts for the multiplexer core");

    ADD("/mux/ref/18-agent-added-connected-tokens", test_ref_18);
    ADD("/mux/ref/19-agent-removed-disconnected", test_ref_19);
    ADD("/mux/ref/20-client-leaves-client-disconnected", test_ref_20);
    ADD("/mux/ref/21-agent-data-before-start-lost", test_ref_21);
    ADD("/mux/ref/22-send-budget", test_ref_22);
    ADD("/mux/ref/23-chunk-5000-split", test_ref_23);
    ADD("/mux/ref/24-port2-and-bad-ports", test_ref_24);
    ADD("/mux/ref/25-two-messages-split-header-protocol", test_ref_25);
    ADD("/mux/ref/26-zero-length-chunk", test_ref_26);
    ADD("/mux/ref/27-policy-caps-rewrite", test_ref_27);
    ADD("/mux/ref/28-continuation-not-rewritten", test_ref_28);
    ADD("/mux/ref/29-one-byte-reads", test_ref_29);
    ADD("/mux/ref/30-agent-data-one-chunk", test_ref_30);
    ADD("/mux/ref/31-data-before-start-discarded", test_ref_31);
    ADD("/mux/ref/32-token-return-batches", test_ref_32);
    ADD("/mux/ref/33-token-violation", test_ref_33);
    g_test_add_func("/mux/ref/33-token-violation-window-10", test_ref_33_window10);
    ADD("/mux/ref/34-client-framing-errors", test_ref_34);
    ADD("/mux/ref/34-size-rules", test_ref_34_size_rules);
    ADD("/mux/ref/35-multi-part-message", test_ref_35);
    ADD("/mux/ref/36-detach-pending-tokens", test_ref_36);
    ADD("/mux/ref/37-half-message-swallowed", test_ref_37);
    ADD("/mux/ref/38-output-waits-for-runtime", test_ref_38);
    ADD("/mux/ref/39-size-0-junk", test_ref_39);
    g_test_add_func("/mux/ref/40-multi-client-broadcast", test_ref_40);

    ADD("/mux/guest/big-chunk-1mib", test_guest_big_chunk);
    ADD("/mux/guest/ports-apart", test_guest_ports_apart);
    ADD("/mux/guest/port2-large-skipped", test_guest_port2_large_skipped);
    ADD("/mux/guest/join-mid-message", test_guest_join_mid_message);
    ADD("/mux/guest/disconnect-mid-message", test_guest_disconnect_mid_message);
    ADD("/mux/guest/not-connected", test_guest_not_connected);

    ADD("/mux/client/unlimited-budget", test_client_unlimited);
    ADD("/mux/client/token-before-start", test_client_token_before_start);
    ADD("/mux/client/no-connected-tokens-cap", test_client_no_connected_tokens_cap);
    ADD("/mux/client/forgiven-after-reconnect", test_client_forgiven_after_reconnect);
    ADD("/mux/client/token-coalesced", test_client_token_coalesced);
    ADD("/mux/client/server-only-messages-dropped", test_client_server_only_messages_dropped);

    ADD("/mux/policy/file-xfer-start-answered", test_policy_file_xfer_start_answered);
    ADD("/mux/policy/answer-waits-for-boundary", test_policy_answer_waits_for_boundary);
    ADD("/mux/policy/clipboard-both-ways", test_policy_clipboard_both_ways);

    ADD_CFG("/mux/multi/no-interleave", multi_cfg(4), test_multi_no_interleave);
    g_test_add_func("/mux/multi/round-robin", test_multi_round_robin);
    ADD_CFG("/mux/multi/leave-mid-message", multi_cfg(4), test_multi_leave_mid_message);
    ADD_CFG("/mux/multi/leave-not-last", multi_cfg(4), test_multi_leave_not_last);
    ADD_CFG("/mux/multi/leave-with-staged-partial", multi_cfg(4),
            test_multi_leave_with_staged_partial);
    ADD_CFG("/mux/multi/stall-hold", multi_cfg(4), test_multi_stall_hold);
    ADD_CFG("/mux/multi/slow-reader", multi_cfg(4), test_multi_slow_reader);
    ADD_CFG("/mux/multi/caps-from-cache", multi_cfg(4), test_multi_caps_from_cache);
    ADD_CFG("/mux/multi/xfer-remap", multi_cfg(4), test_multi_xfer_remap);
    ADD_CFG("/mux/multi/clipboard-routing", multi_cfg(4), test_multi_clipboard_routing);
    ADD("/mux/limits/single-slow-reader-not-cut", test_single_slow_reader_not_cut);
    ADD("/mux/limits/client-hard-limit", test_limits_hard);
    ADD("/mux/limits/guest-output", test_limits_guest_output);

    ADD("/mux/server/mouse-coalesced", test_server_mouse_coalesced);
    ADD("/mux/server/interleave-rules", test_server_interleave_rules);
    ADD("/mux/server/client-disconnected-waits", test_server_client_disconnected_waits);
    ADD("/mux/server/too-large", test_server_too_large);

    ADD("/mux/observe/tap", test_tap);
    ADD("/mux/observe/stats", test_stats);
    g_test_add_func("/mux/config/defaults", test_config_defaults);

    return g_test_run();
}
