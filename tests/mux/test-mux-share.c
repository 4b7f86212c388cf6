/* test-mux-share.c — the shared-agent rules (max_clients > 1) of the multiplexer
 * core (suite 'mux-share'), see docs/sharing.md.
 *
 * /mux-share/<rule>/...: scripted transcripts, one behaviour each: message
 * atomicity, capabilities, file-transfer ids, clipboard (owners, requests,
 * serials), guest-wide settings, clients that leave or stall, fairness.
 * /mux-share/random/N: a seeded model test with N spice-gtk-like clients (file
 * transfers numbered from 1, clipboard grabs with serials) and a
 * spice-vdagentd-like agent, clients joining and leaving (also mid-message);
 * reproduce with --seed, VMC_MUX_SHARE_RANDOM_STEPS=N or -m slow for longer runs.
 */
#include <stdio.h>

#include "mux-test-util.h"

#define CAP_TOK VMC_MUX_CLIENT_CAP_CONNECTED_TOKENS
#define GTK_CAPS 0x00035077u   /* spice-gtk 0.42 */
#define AGENT_CAPS 0x00038de7u /* spice-vdagentd 0.22.1 */
#define BIT(n) (1u << (n))

/* ========================================================================= */
/* fixture: a mux, the agent's view of the guest output, each client's view */

typedef struct {
    guint32 port;
    GByteArray *m; /* header + payload */
} GMsg;

static void
gmsg_free(gpointer p)
{
    GMsg *g = p;

    g_byte_array_unref(g->m);
    g_free(g);
}

typedef struct {
    VmcMux *mux;
    VmcMuxConfig cfg;
    GByteArray *rx[2]; /* guest-side reassembly, ports 1 and 2 */
    gsize need[2];
    GByteArray *raw;   /* guest bytes not parsed yet */
    GPtrArray *gmsgs;  /* GMsg, not taken yet */
    GHashTable *crx;   /* client id -> GByteArray (agent stream reassembly) */
    GArray *notes;
} Fx;

static void
on_notify(gpointer user_data, guint32 client_id)
{
    Fx *fx = user_data;

    g_array_append_val(fx->notes, client_id);
}

static void
fx_setup_cfg(Fx *fx, const VmcMuxConfig *cfg)
{
    fx->cfg = *cfg;
    fx->mux = vmc_mux_new(cfg);
    for (guint i = 0; i < 2; i++)
        fx->rx[i] = g_byte_array_new();
    fx->raw = g_byte_array_new();
    fx->gmsgs = g_ptr_array_new_with_free_func(gmsg_free);
    fx->crx = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                    (GDestroyNotify)g_byte_array_unref);
    fx->notes = g_array_new(FALSE, FALSE, sizeof(guint32));
    vmc_mux_set_notify_func(fx->mux, on_notify, fx);
    vmc_mux_tick(fx->mux, 0);
    vmc_mux_guest_connected(fx->mux);
}

static void
fx_setup(Fx *fx, gconstpointer data)
{
    VmcMuxConfig cfg;

    vmc_mux_config_init(&cfg);
    cfg.max_clients = 8;
    fx_setup_cfg(fx, &cfg);
}

static void
fx_teardown(Fx *fx, gconstpointer data)
{
    vmc_mux_free(fx->mux);
    for (guint i = 0; i < 2; i++)
        g_byte_array_unref(fx->rx[i]);
    g_byte_array_unref(fx->raw);
    g_ptr_array_unref(fx->gmsgs);
    g_hash_table_unref(fx->crx);
    g_array_unref(fx->notes);
}

/* The agent's side: parses chunks the way spice-vdagentd does (per-port
 * reassembly; a chunk over 2048 bytes or past its message's end is fatal). */
static void
guest_parse(Fx *fx)
{
    gsize off = 0;

    while (fx->raw->len - off >= 8) {
        guint32 port = vmc_get_u32le(fx->raw->data + off);
        guint32 size = vmc_get_u32le(fx->raw->data + off + 4);
        const guint8 *payload;
        guint idx;

        g_assert_true(port == 1 || port == 2);
        g_assert_cmpuint(size, >, 0);
        g_assert_cmpuint(size, <=, 2048);
        if (fx->raw->len - off - 8 < size)
            break;
        payload = fx->raw->data + off + 8;
        idx = port - 1;
        if (fx->rx[idx]->len == 0) {
            g_assert_cmpuint(size, >=, VMC_AGENT_HEADER_SIZE);
            fx->need[idx] = VMC_AGENT_HEADER_SIZE + vmc_get_u32le(payload + 16);
        }
        g_assert_cmpuint(fx->rx[idx]->len + size, <=, fx->need[idx]);
        g_byte_array_append(fx->rx[idx], payload, size);
        if (fx->rx[idx]->len == fx->need[idx]) {
            GMsg *g = g_new0(GMsg, 1);

            g->port = port;
            g->m = fx->rx[idx];
            fx->rx[idx] = g_byte_array_new();
            g_ptr_array_add(fx->gmsgs, g);
            /* spice-vdagentd drops its half-built port-1 message on this */
            if (port == 2 && vmc_get_u32le(g->m->data + 4) == VD_AGENT_CLIENT_DISCONNECTED)
                g_byte_array_set_size(fx->rx[0], 0);
        }
        off += 8 + size;
    }
    g_byte_array_remove_range(fx->raw, 0, (guint)off);
}

/* Writes all guest output and returns the whole messages that arrived (taken). */
static GPtrArray *
guest_take(Fx *fx)
{
    g_autoptr(GByteArray) out = mt_guest_out(fx->mux);
    GPtrArray *r = g_ptr_array_new_with_free_func(gmsg_free);

    g_byte_array_append(fx->raw, out->data, out->len);
    guest_parse(fx);
    while (fx->gmsgs->len > 0)
        g_ptr_array_add(r, g_ptr_array_steal_index(fx->gmsgs, 0));
    return r;
}

/* Bytes of a half-received port-1 message at the agent. */
static gsize
guest_partial(Fx *fx)
{
    return fx->rx[0]->len;
}

static GMsg *
gm(GPtrArray *a, guint i)
{
    g_assert_cmpuint(i, <, a->len);
    return g_ptr_array_index(a, i);
}

static guint32
m_type(const GByteArray *m)
{
    return vmc_get_u32le(m->data + 4);
}

static guint32
m_u32(const GByteArray *m, gsize payload_off)
{
    g_assert_cmpuint(m->len, >=, VMC_AGENT_HEADER_SIZE + payload_off + 4);
    return vmc_get_u32le(m->data + VMC_AGENT_HEADER_SIZE + payload_off);
}

static void
assert_msg(const GByteArray *got, const GByteArray *want)
{
    mt_assert_bytes(got, want->data, want->len);
}

/* Pops a client's output and returns the agent messages it got (spice-gtk's
 * reassembly of the AGENT_DATA stream); control messages are skipped. */
static GPtrArray *
client_take(Fx *fx, guint32 id)
{
    GByteArray *rx = g_hash_table_lookup(fx->crx, GUINT_TO_POINTER(id));
    GPtrArray *r = g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
    VmcMuxMsg m;

    if (!rx) {
        rx = g_byte_array_new();
        g_hash_table_insert(fx->crx, GUINT_TO_POINTER(id), rx);
    }
    while (vmc_mux_client_peek(fx->mux, id, &m)) {
        if (m.type == SPICE_MSG_MAIN_AGENT_DATA) {
            g_assert_cmpuint(m.len, <=, 2048);
            g_byte_array_append(rx, m.data, (guint)m.len);
        } else if (m.type == SPICE_MSG_MAIN_AGENT_DISCONNECTED) {
            g_byte_array_set_size(rx, 0);
        }
        vmc_mux_client_pop(fx->mux, id);
        while (rx->len >= VMC_AGENT_HEADER_SIZE &&
               rx->len >= VMC_AGENT_HEADER_SIZE + vmc_get_u32le(rx->data + 16)) {
            gsize n = VMC_AGENT_HEADER_SIZE + vmc_get_u32le(rx->data + 16);
            GByteArray *one = g_byte_array_new();

            g_byte_array_append(one, rx->data, (guint)n);
            g_byte_array_remove_range(rx, 0, (guint)n);
            g_ptr_array_add(r, one);
        }
    }
    return r;
}

static GByteArray *
cm(GPtrArray *a, guint i)
{
    g_assert_cmpuint(i, <, a->len);
    return g_ptr_array_index(a, i);
}

static void
assert_client_nothing(Fx *fx, guint32 id)
{
    g_autoptr(GPtrArray) got = client_take(fx, id);

    g_assert_cmpuint(got->len, ==, 0);
}

static void
assert_guest_nothing(Fx *fx)
{
    g_autoptr(GPtrArray) got = guest_take(fx);

    g_assert_cmpuint(got->len, ==, 0);
}

/* ---- messages ---- */

static GByteArray *
msg_words(guint32 type, const guint32 *w, guint n)
{
    guint8 p[64];

    g_assert_cmpuint(n, <=, 16);
    for (guint i = 0; i < n; i++)
        vmc_put_u32le(p + 4 * i, w[i]);
    return mt_msg(type, p, 4 * n);
}

/* clipboard messages with the selection prefix (and the grab serial) */
static GByteArray *
grab_msg(guint sel, guint32 serial, guint32 type)
{
    guint32 w[3] = { sel, serial, type };

    return msg_words(VD_AGENT_CLIPBOARD_GRAB, w, 3);
}

static GByteArray *
request_msg(guint sel, guint32 type)
{
    guint32 w[2] = { sel, type };

    return msg_words(VD_AGENT_CLIPBOARD_REQUEST, w, 2);
}

static GByteArray *
release_msg(guint sel)
{
    guint32 w[1] = { sel };

    return msg_words(VD_AGENT_CLIPBOARD_RELEASE, w, 1);
}

static GByteArray *
clip_msg(guint sel, guint32 type, const char *text)
{
    gsize n = strlen(text);
    g_autofree guint8 *p = g_malloc(8 + n);

    vmc_put_u32le(p, sel);
    vmc_put_u32le(p + 4, type);
    memcpy(p + 8, text, n);
    return mt_msg(VD_AGENT_CLIPBOARD, p, 8 + n);
}

static GByteArray *
xfer_start_msg(guint32 id, const char *name)
{
    g_autofree gchar *text = g_strdup_printf("[vdagent-file-xfer]\nname=%s\nsize=10\n", name);
    gsize n = strlen(text) + 1;
    g_autofree guint8 *p = g_malloc(4 + n);

    vmc_put_u32le(p, id);
    memcpy(p + 4, text, n);
    return mt_msg(VD_AGENT_FILE_XFER_START, p, 4 + n);
}

static GByteArray *
xfer_status_msg(guint32 id, guint32 status)
{
    guint32 w[2] = { id, status };

    return msg_words(VD_AGENT_FILE_XFER_STATUS, w, 2);
}

/* FILE_XFER_DATA {u32 id; u64 size; data} with `n` data bytes of pattern `seed` */
static GByteArray *
xfer_data_msg(guint32 id, gsize n, guint32 seed)
{
    GByteArray *m = mt_msg_pattern(VD_AGENT_FILE_XFER_DATA, 12 + n, seed);

    vmc_put_u32le(m->data + 20, id);
    vmc_put_u64le(m->data + 24, n);
    return m;
}

static GByteArray *
monitors_msg(guint32 width, guint32 height)
{
    guint32 w[7] = { 1, 0, height, width, 32, 0, 0 };

    return msg_words(VD_AGENT_MONITORS_CONFIG, w, 7);
}

static GByteArray *
reply_msg(guint32 type, guint32 error)
{
    guint32 w[2] = { type, error };

    return msg_words(VD_AGENT_REPLY, w, 2);
}

static GByteArray *
max_clipboard_msg(gint32 v)
{
    guint32 w[1] = { (guint32)v };

    return msg_words(VD_AGENT_MAX_CLIPBOARD, w, 1);
}

static GByteArray *
volume_msg(gboolean playback, guint16 vol)
{
    guint8 p[7] = { playback ? 1 : 0, 0, 2, (guint8)vol, (guint8)(vol >> 8), (guint8)vol,
                    (guint8)(vol >> 8) };

    return mt_msg(VD_AGENT_AUDIO_VOLUME_SYNC, p, sizeof(p));
}

/* ---- actors ---- */

static guint32
add_started(Fx *fx)
{
    guint32 id = vmc_mux_client_add(fx->mux, CAP_TOK);

    mt_start(fx->mux, id, ~0u);
    return id;
}

static void
send(Fx *fx, guint32 id, const GByteArray *m)
{
    mt_send_msg(fx->mux, id, m);
}

static void
agent_send(Fx *fx, const GByteArray *m)
{
    g_assert_true(mt_feed_chunk(fx->mux, 1, m->data, m->len));
}

/* A spice-gtk client joining: AGENT_START, caps(request=1). */
static guint32
join(Fx *fx, guint32 caps0)
{
    guint32 id = add_started(fx);
    g_autoptr(GByteArray) caps = mt_caps(1, caps0);

    send(fx, id, caps);
    return id;
}

/* The first client and the agent's answer: a session with the real peers' caps. */
static guint32
first_client(Fx *fx)
{
    guint32 a = join(fx, GTK_CAPS);
    g_autoptr(GByteArray) reply = mt_caps(0, AGENT_CAPS);
    g_autoptr(GPtrArray) g = guest_take(fx);
    g_autoptr(GPtrArray) got = NULL;

    g_assert_cmpuint(g->len, ==, 1); /* its caps went through */
    agent_send(fx, reply);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), reply);
    return a;
}

/* Another client joining the session: answered from the cache. */
static guint32
next_client(Fx *fx, guint32 caps0)
{
    guint32 b = join(fx, caps0);
    g_autoptr(GPtrArray) got = client_take(fx, b);

    g_assert_cmpuint(got->len, ==, 1);
    g_assert_cmpuint(m_type(cm(got, 0)), ==, VD_AGENT_ANNOUNCE_CAPABILITIES);
    g_assert_cmpuint(m_u32(cm(got, 0), 0), ==, 0); /* request 0 */
    return b;
}

/* ========================================================================= */
/* 1. atomicity */

static void
test_atomic_whole_messages(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) ma = mt_msg_pattern(100, 5000, 1);
    g_autoptr(GByteArray) mb = mt_msg_pattern(101, 3000, 2);
    g_autoptr(GByteArray) mb2 = mt_msg_pattern(102, 10, 3);
    g_autoptr(GPtrArray) g = NULL;
    guint32 a = add_started(fx);
    guint32 b = add_started(fx);

    /* a's first AGENT_DATA, then b's whole messages, then the rest of a's */
    mt_data_ok(fx->mux, a, ma->data, 2048);
    mt_data_ok(fx->mux, b, mb->data, 2048);
    mt_data_ok(fx->mux, a, ma->data + 2048, 2048);
    /* nothing of a's message reaches the agent before it is whole */
    g_assert_cmpuint(vmc_mux_guest_output_size(fx->mux), ==, 0);
    mt_data_ok(fx->mux, b, mb->data + 2048, mb->len - 2048);
    mt_data_ok(fx->mux, b, mb2->data, mb2->len);
    mt_data_ok(fx->mux, a, ma->data + 4096, ma->len - 4096);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 3);
    assert_msg(gm(g, 0)->m, mb);
    assert_msg(gm(g, 1)->m, mb2);
    assert_msg(gm(g, 2)->m, ma);
    g_assert_cmpuint(guest_partial(fx), ==, 0);
}

static void
test_atomic_big_message_holds(Fx *fx, gconstpointer data)
{
    /* 40 AGENT_DATA: over the 33 staged whole, so it starts at 33 */
    g_autoptr(GByteArray) ma = mt_msg_pattern(100, 40 * 2048 - 20, 1);
    g_autoptr(GByteArray) mb = mt_msg_pattern(101, 100, 2);
    g_autoptr(GPtrArray) g = NULL;
    guint32 a = add_started(fx);
    guint32 b = add_started(fx);

    for (guint i = 0; i < 32; i++)
        mt_data_ok(fx->mux, a, ma->data + i * 2048, 2048);
    g_assert_cmpuint(vmc_mux_guest_output_size(fx->mux), ==, 0);
    mt_data_ok(fx->mux, a, ma->data + 32 * 2048, 2048);
    g_assert_cmpuint(vmc_mux_guest_output_size(fx->mux), ==, 33 * (2048 + 8));
    /* b's whole message waits for the end of a's */
    send(fx, b, mb);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 0);
    g_assert_cmpuint(guest_partial(fx), ==, 33 * 2048);
    for (guint i = 33; i < 40; i++)
        mt_data_ok(fx->mux, a, ma->data + i * 2048, 2048);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 2);
    assert_msg(gm(g, 0)->m, ma);
    assert_msg(gm(g, 1)->m, mb);
}

/* ========================================================================= */
/* 2. capabilities */

static void
test_caps_join_from_cache(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) client_caps = mt_caps(1, GTK_CAPS);
    g_autoptr(GByteArray) answer = mt_caps(0, AGENT_CAPS);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b;

    a = join(fx, GTK_CAPS);
    /* the first client's caps go to the agent unchanged */
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    g_assert_cmpuint(gm(g, 0)->port, ==, 1);
    assert_msg(gm(g, 0)->m, client_caps);
    agent_send(fx, answer);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), answer);
    /* a second one joins while a works: the agent (which would reset every
     * transfer on a request) hears nothing; the answer comes from the cache */
    b = join(fx, GTK_CAPS);
    assert_guest_nothing(fx);
    g_ptr_array_unref(got);
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), answer);
    assert_client_nothing(fx, a);
}

static void
test_caps_intersection(Fx *fx, gconstpointer data)
{
    guint32 less = GTK_CAPS & ~BIT(VD_AGENT_CAP_FILE_XFER_DETAILED_ERRORS);
    g_autoptr(GByteArray) told_less = mt_caps(0, less);
    g_autoptr(GByteArray) told_all = mt_caps(0, GTK_CAPS);
    g_autoptr(GPtrArray) g = NULL;
    guint32 b, c;

    first_client(fx);
    /* a client with more caps changes nothing */
    c = next_client(fx, GTK_CAPS | BIT(20));
    assert_guest_nothing(fx);
    /* one with fewer: the agent is told what all of them support, without a
     * reset (request 0) */
    b = next_client(fx, less);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, told_less);
    /* it leaves: back to the full set */
    vmc_mux_client_remove(fx->mux, b);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, told_all);
    vmc_mux_client_remove(fx->mux, c);
    assert_guest_nothing(fx);
}

static void
test_caps_layout_mismatch(Fx *fx, gconstpointer data)
{
    guint32 no_serial = GTK_CAPS & ~BIT(VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL);
    g_autoptr(GByteArray) bgrab = NULL;
    g_autoptr(GByteArray) agrab = grab_msg(0, 0, 1);
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b;
    guint32 clip = BIT(VD_AGENT_CAP_CLIPBOARD_BY_DEMAND) | BIT(VD_AGENT_CAP_CLIPBOARD_SELECTION) |
                   BIT(VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL);

    a = first_client(fx);
    b = join(fx, no_serial);
    /* the clipboard layout (selection, serial) is fixed by the session: a client
     * that cannot use it sees no clipboard caps and takes no part in it */
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    g_assert_cmpuint(m_u32(cm(got, 0), 4), ==, AGENT_CAPS & ~clip);
    assert_guest_nothing(fx); /* what the agent is told stays the same */
    {
        guint32 w[2] = { 0, 1 }; /* its grab without a serial */

        bgrab = msg_words(VD_AGENT_CLIPBOARD_GRAB, w, 2);
    }
    send(fx, b, bgrab);
    assert_guest_nothing(fx);
    agent_send(fx, agrab);
    g_ptr_array_unref(got);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    assert_client_nothing(fx, b);
}

static void
test_caps_agent_request(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) agent_req = mt_caps(1, AGENT_CAPS);
    g_autoptr(GByteArray) seen = mt_caps(0, AGENT_CAPS);
    g_autoptr(GByteArray) told = mt_caps(0, GTK_CAPS);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    /* an agent that asks (it (re)opened the port) is answered by the mux, with
     * what it should know; no client sees a request (each would answer) */
    agent_send(fx, agent_req);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, told);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), seen);
    g_ptr_array_unref(got);
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), seen);
}

static void
test_caps_before_agent_answer(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) answer = mt_caps(0, AGENT_CAPS);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b;

    a = join(fx, GTK_CAPS);
    b = join(fx, GTK_CAPS);
    /* only a's request reaches the agent; b gets the agent's answer to it */
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_client_nothing(fx, b);
    agent_send(fx, answer);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    g_ptr_array_unref(got);
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), answer);
}

static void
test_caps_policy_in_views(Fx *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) got = NULL;
    guint32 b;

    first_client(fx);
    vmc_mux_set_file_xfer(fx->mux, FALSE);
    b = join(fx, GTK_CAPS);
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    g_assert_cmpuint(m_u32(cm(got, 0), 4), ==,
                     AGENT_CAPS | BIT(VD_AGENT_CAP_FILE_XFER_DISABLED));
}

/* ========================================================================= */
/* 3. file transfers */

static void
test_xfer_ids_remapped(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) sa = xfer_start_msg(1, "a.bin");
    g_autoptr(GByteArray) sb = xfer_start_msg(1, "b.bin");
    g_autoptr(GByteArray) da = xfer_data_msg(1, 100, 1);
    g_autoptr(GByteArray) db = xfer_data_msg(1, 100, 2);
    g_autoptr(GByteArray) cancel_b = xfer_status_msg(1, VD_AGENT_FILE_XFER_STATUS_CANCELLED);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b, ida, idb;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    /* every spice-gtk process numbers its transfers from 1 */
    send(fx, a, sa);
    send(fx, b, sb);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 2);
    ida = m_u32(gm(g, 0)->m, 0);
    idb = m_u32(gm(g, 1)->m, 0);
    g_assert_cmpuint(ida, !=, idb);
    g_assert_cmpmem(gm(g, 0)->m->data + 24, sa->len - 24, sa->data + 24, sa->len - 24);
    /* the agent's CAN_SEND_DATA goes to the owner only, with its own id */
    {
        g_autoptr(GByteArray) st = xfer_status_msg(idb, VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA);
        g_autoptr(GByteArray) want = xfer_status_msg(1, VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA);

        agent_send(fx, st);
        assert_client_nothing(fx, a);
        got = client_take(fx, b);
        g_assert_cmpuint(got->len, ==, 1);
        assert_msg(cm(got, 0), want);
    }
    /* DATA goes in with the agent-side id */
    send(fx, a, da);
    send(fx, b, db);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 2);
    g_assert_cmpuint(m_u32(gm(g, 0)->m, 0), ==, ida);
    g_assert_cmpuint(m_u32(gm(g, 1)->m, 0), ==, idb);
    g_assert_cmpmem(gm(g, 0)->m->data + 24, da->len - 24, da->data + 24, da->len - 24);
    /* SUCCESS for a's: a only; a second status for it is dropped (finished) */
    {
        g_autoptr(GByteArray) st = xfer_status_msg(ida, VD_AGENT_FILE_XFER_STATUS_SUCCESS);
        g_autoptr(GByteArray) want = xfer_status_msg(1, VD_AGENT_FILE_XFER_STATUS_SUCCESS);

        agent_send(fx, st);
        g_ptr_array_unref(got);
        got = client_take(fx, a);
        g_assert_cmpuint(got->len, ==, 1);
        assert_msg(cm(got, 0), want);
        assert_client_nothing(fx, b);
        agent_send(fx, st);
        assert_client_nothing(fx, a);
        assert_client_nothing(fx, b);
    }
    /* b cancels: the agent hears it under its id; the transfer is over */
    send(fx, b, cancel_b);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    g_assert_cmpuint(m_u32(gm(g, 0)->m, 0), ==, idb);
    g_assert_cmpuint(m_u32(gm(g, 0)->m, 4), ==, VD_AGENT_FILE_XFER_STATUS_CANCELLED);
    send(fx, b, db); /* late data of a finished transfer */
    assert_guest_nothing(fx);
}

static void
test_xfer_duplicate_and_errors(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) s1 = xfer_start_msg(7, "x.bin");
    g_autoptr(GByteArray) d1 = xfer_data_msg(7, 10, 1);
    g_autoptr(GByteArray) want_err = xfer_status_msg(7, VD_AGENT_FILE_XFER_STATUS_ERROR);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b, id;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    send(fx, a, s1);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    id = m_u32(gm(g, 0)->m, 0);
    /* the same id again while it is open: refused by the mux, never seen by the agent */
    send(fx, a, s1);
    assert_guest_nothing(fx);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), want_err);
    /* the agent refuses it (error with details): the owner only; the id is free */
    {
        g_autoptr(GByteArray) st = mt_msg(VD_AGENT_FILE_XFER_STATUS, NULL, 16);

        vmc_put_u32le(st->data + 20, id);
        vmc_put_u32le(st->data + 24, VD_AGENT_FILE_XFER_STATUS_NOT_ENOUGH_SPACE);
        agent_send(fx, st);
        g_ptr_array_unref(got);
        got = client_take(fx, a);
        g_assert_cmpuint(got->len, ==, 1);
        g_assert_cmpuint(m_u32(cm(got, 0), 0), ==, 7);
        g_assert_cmpuint(m_u32(cm(got, 0), 4), ==, VD_AGENT_FILE_XFER_STATUS_NOT_ENOUGH_SPACE);
        g_assert_cmpuint(cm(got, 0)->len, ==, 36); /* the details pass through */
        assert_client_nothing(fx, b);
    }
    send(fx, a, d1);
    assert_guest_nothing(fx);
    /* a status for an id nobody has is nobody's */
    {
        g_autoptr(GByteArray) st = xfer_status_msg(999, VD_AGENT_FILE_XFER_STATUS_SUCCESS);

        agent_send(fx, st);
        assert_client_nothing(fx, a);
        assert_client_nothing(fx, b);
    }
}

/* ========================================================================= */
/* 4. clipboard */

static void
test_clip_routing(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) agrab = grab_msg(0, 0, VD_AGENT_CLIPBOARD_UTF8_TEXT);
    g_autoptr(GByteArray) req = request_msg(0, VD_AGENT_CLIPBOARD_UTF8_TEXT);
    g_autoptr(GByteArray) data_a = clip_msg(0, VD_AGENT_CLIPBOARD_UTF8_TEXT, "from a");
    g_autoptr(GByteArray) rel = release_msg(0);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    /* a grabs: it owns the selection; the agent's request goes to a only */
    send(fx, a, agrab);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, agrab);
    agent_send(fx, req);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), req);
    assert_client_nothing(fx, b);
    send(fx, a, data_a);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, data_a);
    /* a release from b, who does not own it: not forwarded */
    send(fx, b, rel);
    assert_guest_nothing(fx);
    send(fx, a, rel);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, rel);
}

static void
test_clip_agent_grab_and_requests(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) agent_grab = grab_msg(0, 0, VD_AGENT_CLIPBOARD_UTF8_TEXT);
    g_autoptr(GByteArray) req_text = request_msg(0, VD_AGENT_CLIPBOARD_UTF8_TEXT);
    g_autoptr(GByteArray) req_png = request_msg(0, VD_AGENT_CLIPBOARD_IMAGE_PNG);
    g_autoptr(GByteArray) text = clip_msg(0, VD_AGENT_CLIPBOARD_UTF8_TEXT, "guest text");
    g_autoptr(GByteArray) png = clip_msg(0, VD_AGENT_CLIPBOARD_IMAGE_PNG, "PNG");
    g_autoptr(GByteArray) text2 = clip_msg(0, VD_AGENT_CLIPBOARD_UTF8_TEXT, "again");
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b, c;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    c = next_client(fx, GTK_CAPS);
    /* the agent's grab goes to every client */
    agent_send(fx, agent_grab);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), agent_grab);
    g_ptr_array_unref(got);
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    g_ptr_array_unref(got);
    got = client_take(fx, c);
    g_assert_cmpuint(got->len, ==, 1);
    /* b asks for text, c for png, a for text: each answer goes to its asker
     * (the oldest request of that type) */
    send(fx, b, req_text);
    send(fx, c, req_png);
    send(fx, a, req_text);
    g_ptr_array_unref(guest_take(fx));
    agent_send(fx, png);
    agent_send(fx, text);
    agent_send(fx, text2);
    g_ptr_array_unref(got);
    got = client_take(fx, c);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), png);
    g_ptr_array_unref(got);
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), text);
    g_ptr_array_unref(got);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), text2);
    /* an answer nobody asked for goes nowhere */
    agent_send(fx, text);
    assert_client_nothing(fx, a);
    assert_client_nothing(fx, b);
    assert_client_nothing(fx, c);
}

/* Grab serials: spice-gtk takes an agent GRAB only if its serial is the client's
 * own counter; spice-vdagentd takes a client GRAB with its counter (or one less:
 * "client grab wins"). The mux keeps both sides consistent for every client. */
static void
test_clip_serials(Fx *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    /* a grabs with its counter 0: the agent's counter is 0 too */
    {
        g_autoptr(GByteArray) m = grab_msg(0, 0, 1);

        send(fx, a, m);
        g = guest_take(fx);
        assert_msg(gm(g, 0)->m, m);
    }
    /* b grabs with its own counter 0: the agent gets its counter, 1 */
    {
        g_autoptr(GByteArray) m = grab_msg(0, 0, 1);
        g_autoptr(GByteArray) want = grab_msg(0, 1, 1);

        send(fx, b, m);
        g_ptr_array_unref(g);
        g = guest_take(fx);
        g_assert_cmpuint(g->len, ==, 1);
        assert_msg(gm(g, 0)->m, want);
    }
    /* the agent grabs with serial 2: a (counter 1) and b (counter 1) each get 1 */
    {
        g_autoptr(GByteArray) m = grab_msg(0, 2, 1);
        g_autoptr(GByteArray) want = grab_msg(0, 1, 1);

        agent_send(fx, m);
        got = client_take(fx, a);
        g_assert_cmpuint(got->len, ==, 1);
        assert_msg(cm(got, 0), want);
        g_ptr_array_unref(got);
        got = client_take(fx, b);
        g_assert_cmpuint(got->len, ==, 1);
        assert_msg(cm(got, 0), want);
    }
    /* a grab of b that crossed it (serial 1 = its counter - 1): b wins, the agent
     * gets its counter (3) and takes it; a, offered the guest's data, is told it
     * is gone */
    {
        g_autoptr(GByteArray) m = grab_msg(0, 1, 1);
        g_autoptr(GByteArray) want = grab_msg(0, 3, 1);
        g_autoptr(GByteArray) rel = release_msg(0);

        send(fx, b, m);
        g_ptr_array_unref(g);
        g = guest_take(fx);
        g_assert_cmpuint(g->len, ==, 1);
        assert_msg(gm(g, 0)->m, want);
        g_ptr_array_unref(got);
        got = client_take(fx, a);
        g_assert_cmpuint(got->len, ==, 1);
        assert_msg(cm(got, 0), rel);
        assert_client_nothing(fx, b);
    }
    /* the agent's grab with serial 3 crossed b's (the agent lets b win): dropped */
    {
        g_autoptr(GByteArray) m = grab_msg(0, 3, 1);

        agent_send(fx, m);
        assert_client_nothing(fx, a);
        assert_client_nothing(fx, b);
    }
    /* its next grab (4): a gets 2, b gets 2 */
    {
        g_autoptr(GByteArray) m = grab_msg(0, 4, 1);
        g_autoptr(GByteArray) want = grab_msg(0, 2, 1);

        agent_send(fx, m);
        g_ptr_array_unref(got);
        got = client_take(fx, a);
        assert_msg(cm(got, 0), want);
        g_ptr_array_unref(got);
        got = client_take(fx, b);
        assert_msg(cm(got, 0), want);
    }
    /* two more agent grabs (5, 6: a gets 3, 4) cross a grab of a with its old
     * counter 2: the guest won, as with a private agent: a takes grab 4 */
    {
        g_autoptr(GByteArray) g5 = grab_msg(0, 5, 1);
        g_autoptr(GByteArray) g6 = grab_msg(0, 6, 1);
        g_autoptr(GByteArray) late = grab_msg(0, 2, 1);
        g_autoptr(GByteArray) want = grab_msg(0, 4, 1);

        agent_send(fx, g5);
        agent_send(fx, g6);
        send(fx, a, late);
        assert_guest_nothing(fx);
        g_ptr_array_unref(got);
        got = client_take(fx, a);
        g_assert_cmpuint(got->len, ==, 2);
        assert_msg(cm(got, 1), want);
        /* and a's next grab (counter 5) goes through as the agent's 7 */
        {
            g_autoptr(GByteArray) m = grab_msg(0, 5, 1);
            g_autoptr(GByteArray) w7 = grab_msg(0, 7, 1);

            send(fx, a, m);
            g_ptr_array_unref(g);
            g = guest_take(fx);
            g_assert_cmpuint(g->len, ==, 1);
            assert_msg(gm(g, 0)->m, w7);
        }
    }
    /* selections count apart */
    {
        g_autoptr(GByteArray) m = grab_msg(1, 0, 1);

        send(fx, b, m);
        g_ptr_array_unref(g);
        g = guest_take(fx);
        assert_msg(gm(g, 0)->m, m);
    }
}

static void
test_clip_serials_new_client(Fx *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b;

    a = first_client(fx);
    /* the agent grabs twice before b joins */
    for (guint32 s = 0; s < 2; s++) {
        g_autoptr(GByteArray) m = grab_msg(0, s, 1);

        agent_send(fx, m);
    }
    g_ptr_array_unref(client_take(fx, a));
    b = next_client(fx, GTK_CAPS);
    /* b counts from 0 (a new spice-gtk), a is at 2 */
    {
        g_autoptr(GByteArray) m = grab_msg(0, 2, 1);
        g_autoptr(GByteArray) wa = grab_msg(0, 2, 1);
        g_autoptr(GByteArray) wb = grab_msg(0, 0, 1);

        agent_send(fx, m);
        got = client_take(fx, a);
        assert_msg(cm(got, 0), wa);
        g_ptr_array_unref(got);
        got = client_take(fx, b);
        assert_msg(cm(got, 0), wb);
    }
}

static void
test_clip_request_without_owner(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) req = request_msg(0, VD_AGENT_CLIPBOARD_UTF8_TEXT);
    g_autoptr(GByteArray) none = clip_msg(0, VD_AGENT_CLIPBOARD_NONE, "");
    g_autoptr(GByteArray) grab = grab_msg(0, 0, 1);
    g_autoptr(GByteArray) rel = release_msg(0);
    g_autoptr(GPtrArray) g = NULL;
    guint32 a, b;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    /* the owner left: a request finds nobody, the agent gets "none" at once */
    send(fx, a, grab);
    g_ptr_array_unref(guest_take(fx));
    vmc_mux_client_remove(fx->mux, a);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, rel); /* released on its behalf */
    agent_send(fx, req);
    assert_client_nothing(fx, b);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    g_assert_cmpuint(gm(g, 0)->port, ==, 1);
    assert_msg(gm(g, 0)->m, none);
}

/* ========================================================================= */
/* guest-wide settings */

static void
test_settings_primary(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) mon_a = monitors_msg(1024, 768);
    g_autoptr(GByteArray) mon_b = monitors_msg(1920, 1080);
    g_autoptr(GByteArray) ok = reply_msg(VD_AGENT_MONITORS_CONFIG, VD_AGENT_SUCCESS);
    g_autoptr(GByteArray) vol_b = volume_msg(TRUE, 1000);
    g_autoptr(GByteArray) vol_a = volume_msg(TRUE, 2000);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b, c;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    c = next_client(fx, GTK_CAPS);
    /* b is not the primary (the oldest client): its layout is kept, not applied;
     * it gets the REPLY a private agent would send */
    send(fx, b, mon_b);
    send(fx, b, vol_b);
    assert_guest_nothing(fx);
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), ok);
    /* a's goes to the agent; the agent's REPLY goes to a only */
    send(fx, a, mon_a);
    send(fx, a, vol_a);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 2);
    assert_msg(gm(g, 0)->m, mon_a);
    assert_msg(gm(g, 1)->m, vol_a);
    agent_send(fx, ok);
    g_ptr_array_unref(got);
    got = client_take(fx, a);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), ok);
    assert_client_nothing(fx, b);
    assert_client_nothing(fx, c);
    /* a leaves: b is the primary now, its settings are applied; the agent's
     * REPLY to that goes nowhere */
    vmc_mux_client_remove(fx->mux, a);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 2);
    assert_msg(gm(g, 0)->m, mon_b);
    assert_msg(gm(g, 1)->m, vol_b);
    agent_send(fx, ok);
    assert_client_nothing(fx, b);
    assert_client_nothing(fx, c);
    /* a REPLY the mux did not route (another type) goes to everybody */
    {
        g_autoptr(GByteArray) other = reply_msg(99, VD_AGENT_SUCCESS);

        agent_send(fx, other);
        g_ptr_array_unref(got);
        got = client_take(fx, b);
        g_assert_cmpuint(got->len, ==, 1);
        g_ptr_array_unref(got);
        got = client_take(fx, c);
        g_assert_cmpuint(got->len, ==, 1);
    }
}

static void
test_settings_max_clipboard(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m100 = max_clipboard_msg(100 * 1000 * 1000);
    g_autoptr(GByteArray) m1k = max_clipboard_msg(1000);
    g_autoptr(GByteArray) unlimited = max_clipboard_msg(-1);
    g_autoptr(GPtrArray) g = NULL;
    guint32 a, b, c;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    c = next_client(fx, GTK_CAPS);
    /* the agent applies one limit to all it sends: the smallest any client set */
    send(fx, a, m100);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, m100);
    send(fx, b, m1k);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, m1k);
    send(fx, c, unlimited);
    send(fx, a, m100); /* spice-gtk sends it again after every caps message */
    assert_guest_nothing(fx);
    vmc_mux_client_remove(fx->mux, b);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, m100);
    vmc_mux_client_remove(fx->mux, a);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, unlimited);
}

/* ========================================================================= */
/* 5. leaving and stalling */

static const guint8 zeros[2048];

static void
test_leave_mid_xfer_data(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) sa = xfer_start_msg(1, "a.bin");
    g_autoptr(GByteArray) sb = xfer_start_msg(1, "b.bin");
    /* 40 AGENT_DATA: a custom client's big DATA, which starts at 33 */
    g_autoptr(GByteArray) da = xfer_data_msg(1, 40 * 2048 - 32, 1);
    g_autoptr(GByteArray) db = xfer_data_msg(1, 1000, 2);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b, ida, idb;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    send(fx, a, sa);
    send(fx, b, sb);
    g = guest_take(fx);
    ida = m_u32(gm(g, 0)->m, 0);
    idb = m_u32(gm(g, 1)->m, 0);
    for (guint i = 0; i < 34; i++)
        mt_data_ok(fx->mux, a, da->data + i * 2048, 2048);
    send(fx, b, db); /* waits for the end of a's message */
    vmc_mux_client_remove(fx->mux, a);
    /* on port 2 first (acted on at once): a's transfer is cancelled, so the
     * agent ignores the DATA the zeros complete; then b's data; no
     * CLIENT_DISCONNECTED (b's transfer lives on) */
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 3);
    g_assert_cmpuint(gm(g, 0)->port, ==, 2);
    g_assert_cmpuint(m_type(gm(g, 0)->m), ==, VD_AGENT_FILE_XFER_STATUS);
    g_assert_cmpuint(m_u32(gm(g, 0)->m, 0), ==, ida);
    g_assert_cmpuint(m_u32(gm(g, 0)->m, 4), ==, VD_AGENT_FILE_XFER_STATUS_CANCELLED);
    g_assert_cmpuint(gm(g, 1)->port, ==, 1);
    g_assert_cmpmem(gm(g, 1)->m->data, 34 * 2048, da->data, 34 * 2048);
    g_assert_cmpuint(gm(g, 1)->m->len, ==, da->len);
    for (gsize i = 34 * 2048; i < da->len; i += 2048)
        g_assert_cmpmem(gm(g, 1)->m->data + i, MIN(2048, da->len - i), zeros,
                        MIN(2048, da->len - i));
    g_assert_cmpuint(m_u32(gm(g, 2)->m, 0), ==, idb);
    {
        g_autoptr(GByteArray) st = xfer_status_msg(idb, VD_AGENT_FILE_XFER_STATUS_SUCCESS);

        agent_send(fx, st);
        got = client_take(fx, b);
        g_assert_cmpuint(m_u32(cm(got, got->len - 1), 4), ==, VD_AGENT_FILE_XFER_STATUS_SUCCESS);
    }
}

static void
test_leave_mid_clipboard(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) grab = grab_msg(0, 0, 1);
    g_autoptr(GByteArray) big = mt_msg_pattern(VD_AGENT_CLIPBOARD, 40 * 2048, 1);
    g_autoptr(GByteArray) rel = release_msg(0);
    g_autoptr(GPtrArray) g = NULL;
    guint32 a;

    vmc_put_u32le(big->data + 20, 0); /* selection 0 */
    vmc_put_u32le(big->data + 24, 1); /* UTF8_TEXT */
    a = first_client(fx);
    next_client(fx, GTK_CAPS);
    send(fx, a, grab);
    g_ptr_array_unref(guest_take(fx));
    for (guint i = 0; i < 34; i++)
        mt_data_ok(fx->mux, a, big->data + i * 2048, 2048);
    vmc_mux_client_remove(fx->mux, a);
    /* the selection is released on port 2 before the zeros complete the data,
     * so no paste in the guest takes them; nothing more after */
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 2);
    g_assert_cmpuint(gm(g, 0)->port, ==, 2);
    assert_msg(gm(g, 0)->m, rel);
    g_assert_cmpuint(gm(g, 1)->port, ==, 1);
    g_assert_cmpuint(gm(g, 1)->m->len, ==, big->len);
}

static void
test_leave_staged_partial(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) sa = xfer_start_msg(1, "a.bin");
    g_autoptr(GByteArray) da = xfer_data_msg(1, 65536, 1); /* spice-gtk's 64 KiB */
    g_autoptr(GPtrArray) g = NULL;
    guint32 a, b, ida;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    send(fx, a, sa);
    g = guest_take(fx);
    ida = m_u32(gm(g, 0)->m, 0);
    /* killed after 20 of its 33 AGENT_DATA: none reached the agent */
    for (guint i = 0; i < 20; i++)
        mt_data_ok(fx->mux, a, da->data + i * 2048, 2048);
    assert_guest_nothing(fx);
    vmc_mux_client_remove(fx->mux, a);
    g_ptr_array_unref(g);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    g_assert_cmpuint(gm(g, 0)->port, ==, 1);
    g_assert_cmpuint(m_u32(gm(g, 0)->m, 0), ==, ida);
    g_assert_cmpuint(m_u32(gm(g, 0)->m, 4), ==, VD_AGENT_FILE_XFER_STATUS_CANCELLED);
    g_assert_cmpuint(guest_partial(fx), ==, 0);
    (void)b;
}

static void
test_leave_last_only(Fx *fx, gconstpointer data)
{
    g_autoptr(GPtrArray) g = NULL;
    guint32 a, b, c;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    c = add_started(fx); /* never sent caps */
    vmc_mux_client_remove(fx->mux, a);
    vmc_mux_client_remove(fx->mux, b);
    assert_guest_nothing(fx);
    vmc_mux_client_remove(fx->mux, c);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    g_assert_cmpuint(gm(g, 0)->port, ==, 2);
    g_assert_cmpuint(m_type(gm(g, 0)->m), ==, VD_AGENT_CLIENT_DISCONNECTED);
}

static void
test_leave_session_restarts(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) caps = mt_caps(1, GTK_CAPS);
    g_autoptr(GPtrArray) g = NULL;
    guint32 a, c;

    a = first_client(fx);
    c = add_started(fx); /* connected, never joined */
    vmc_mux_client_remove(fx->mux, a);
    assert_guest_nothing(fx);
    /* nobody is in the agent's session: the next client's request goes through */
    send(fx, c, caps);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, caps);
}

static void
test_leave_stall_cutoff(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) ma = mt_msg_pattern(100, 40 * 2048 - 20, 1);
    g_autoptr(GByteArray) mb = mt_msg_pattern(101, 100, 2);
    g_autoptr(GPtrArray) g = NULL;
    GError *error = NULL;
    guint32 a, b;
    gint64 t0 = 1000;

    vmc_mux_tick(fx->mux, t0);
    a = add_started(fx);
    b = add_started(fx);
    for (guint i = 0; i < 33; i++)
        mt_data_ok(fx->mux, a, ma->data + i * 2048, 2048);
    /* a holds the port and stops: b's message waits, for at most the timeout */
    send(fx, b, mb);
    g_assert_cmpint(vmc_mux_next_deadline(fx->mux), ==, t0 + 30 * G_USEC_PER_SEC);
    vmc_mux_tick(fx->mux, t0 + 30 * G_USEC_PER_SEC - 1);
    g_assert_false(vmc_mux_client_failed(fx->mux, a, NULL));
    vmc_mux_tick(fx->mux, t0 + 30 * G_USEC_PER_SEC);
    g_assert_true(vmc_mux_client_failed(fx->mux, a, &error));
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_STALLED);
    g_clear_error(&error);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 2);
    g_assert_cmpuint(gm(g, 0)->m->len, ==, ma->len); /* completed */
    assert_msg(gm(g, 1)->m, mb);
    g_assert_false(vmc_mux_client_failed(fx->mux, b, NULL));
}

static void
test_leave_filler_too_large(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) sa = xfer_start_msg(1, "a.bin");
    g_autoptr(GByteArray) sb = xfer_start_msg(1, "b.bin");
    g_autoptr(GByteArray) da = xfer_data_msg(1, 33 * 2048, 1);
    g_autoptr(GByteArray) want_err = xfer_status_msg(1, VD_AGENT_FILE_XFER_STATUS_ERROR);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    send(fx, a, sa);
    send(fx, b, sb);
    g_ptr_array_unref(guest_take(fx));
    /* a DATA that claims 200 MiB: past the filler bound, the agent is reset */
    vmc_put_u32le(da->data + 16, 200u * 1024 * 1024);
    for (guint i = 0; i < 33; i++)
        mt_data_ok(fx->mux, a, da->data + i * 2048, 2048);
    vmc_mux_client_remove(fx->mux, a);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    g_assert_cmpuint(m_type(gm(g, 0)->m), ==, VD_AGENT_CLIENT_DISCONNECTED);
    g_assert_cmpuint(guest_partial(fx), ==, 0);
    /* the agent forgot b's transfer too: b is told */
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), want_err);
}

static void
test_leave_last_during_filler(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) ma = mt_msg_pattern(100, 33 * 2048, 1);
    g_autoptr(GPtrArray) g = NULL;
    guint32 a, b;

    a = add_started(fx);
    b = add_started(fx);
    vmc_put_u32le(ma->data + 16, 4u * 1024 * 1024); /* claims 4 MiB */
    for (guint i = 0; i < 33; i++)
        mt_data_ok(fx->mux, a, ma->data + i * 2048, 2048);
    vmc_mux_client_remove(fx->mux, a);
    /* the filler is bounded by the guest output limit; b leaves meanwhile:
     * CLIENT_DISCONNECTED ends it (the agent drops its half message) */
    g_assert_cmpuint(vmc_mux_guest_output_size(fx->mux), <, 300 * 1024);
    vmc_mux_client_remove(fx->mux, b);
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    g_assert_cmpuint(m_type(gm(g, 0)->m), ==, VD_AGENT_CLIENT_DISCONNECTED);
    g_assert_cmpuint(guest_partial(fx), ==, 0);
    assert_guest_nothing(fx);
}

static void
test_leave_agent_reconnect(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) caps = mt_caps(1, GTK_CAPS);
    g_autoptr(GByteArray) agent_open = mt_caps(1, AGENT_CAPS);
    g_autoptr(GByteArray) answer = mt_caps(0, AGENT_CAPS);
    g_autoptr(GByteArray) grab0 = grab_msg(0, 0, 1);
    g_autoptr(GPtrArray) g = NULL;
    g_autoptr(GPtrArray) got = NULL;
    guint32 a, b;

    a = first_client(fx);
    b = next_client(fx, GTK_CAPS);
    {
        g_autoptr(GByteArray) m = grab_msg(0, 0, 1);

        agent_send(fx, m); /* counters move to 1 */
        g_ptr_array_unref(client_take(fx, a));
        g_ptr_array_unref(client_take(fx, b));
    }
    /* the agent restarts: everything about it is forgotten; spice-gtk resets its
     * counters on AGENT_DISCONNECTED and starts again */
    vmc_mux_guest_disconnected(fx->mux);
    vmc_mux_guest_connected(fx->mux);
    g_ptr_array_unref(client_take(fx, a));
    g_ptr_array_unref(client_take(fx, b));
    agent_send(fx, agent_open); /* it announces on open; nobody started yet */
    mt_start(fx->mux, a, ~0u);
    mt_start(fx->mux, b, ~0u);
    send(fx, a, caps);
    send(fx, b, caps);
    /* a's request goes through, b is answered from the cache (the agent's open) */
    g = guest_take(fx);
    g_assert_cmpuint(g->len, ==, 1);
    assert_msg(gm(g, 0)->m, caps);
    got = client_take(fx, b);
    g_assert_cmpuint(got->len, ==, 1);
    assert_msg(cm(got, 0), answer);
    agent_send(fx, answer);
    g_ptr_array_unref(client_take(fx, a));
    g_ptr_array_unref(client_take(fx, b));
    /* serials start again at 0 on both sides */
    agent_send(fx, grab0);
    g_ptr_array_unref(got);
    got = client_take(fx, a);
    assert_msg(cm(got, 0), grab0);
    g_ptr_array_unref(got);
    got = client_take(fx, b);
    assert_msg(cm(got, 0), grab0);
}

/* ========================================================================= */
/* 6. fairness and isolation */

static void
test_fair_round_robin(void)
{
    VmcMuxConfig cfg;
    Fx fx;
    guint32 id[4];
    g_autoptr(GPtrArray) g = NULL;

    vmc_mux_config_init(&cfg);
    cfg.max_clients = 4;
    cfg.guest_out_limit = 1; /* the scheduler arbitrates every message */
    fx_setup_cfg(&fx, &cfg);
    for (guint i = 0; i < 4; i++)
        id[i] = add_started(&fx);
    /* client 0 queues 8 messages of 3 AGENT_DATA first, then the others 4 each */
    for (guint k = 0; k < 8; k++) {
        g_autoptr(GByteArray) m = mt_msg_pattern(100, 5000, k);

        send(&fx, id[0], m);
    }
    for (guint k = 0; k < 4; k++)
        for (guint i = 1; i < 4; i++) {
            g_autoptr(GByteArray) m = mt_msg_pattern(100 + i, 5000, k);

            send(&fx, id[i], m);
        }
    g = guest_take(&fx);
    g_assert_cmpuint(g->len, ==, 20);
    /* after what fit at once, one message per client in turn */
    {
        guint first = 0;

        while (first < g->len && m_type(gm(g, first)->m) == 100)
            first++;
        g_assert_cmpuint(first, <=, 2);
        for (guint i = first; i < first + 12; i++)
            g_assert_cmpuint(m_type(gm(g, i)->m), ==, 100 + (i - first + 1) % 4);
    }
    fx_teardown(&fx, NULL);
}

static void
test_fair_no_token_grant(void)
{
    VmcMuxConfig cfg;
    Fx fx;
    g_autoptr(GByteArray) m = mt_msg_pattern(99, 2028, 1);
    guint32 a, b, c;
    GError *error = NULL;
    guint fed = 0;

    vmc_mux_config_init(&cfg);
    cfg.max_clients = 4;
    cfg.client_out_limit = 64 * 1024;
    fx_setup_cfg(&fx, &cfg);
    a = add_started(&fx);
    b = vmc_mux_client_add(fx.mux, CAP_TOK);
    mt_start(fx.mux, b, 0); /* grants no agent->client tokens */
    c = add_started(&fx);
    /* the agent broadcasts: a and c read; b's queue fills to its bound */
    while (vmc_mux_guest_wants_input(fx.mux) && fed < 10000) {
        g_assert_true(mt_feed_chunk(fx.mux, 1, m->data, m->len));
        g_ptr_array_unref(client_take(&fx, a));
        g_ptr_array_unref(client_take(&fx, c));
        fed++;
    }
    g_assert_cmpuint(mt_stats(fx.mux, b).queued_bytes, <=, 2 * cfg.client_out_limit);
    /* it holds the others back for at most the stall timeout, then it is cut */
    g_assert_cmpint(vmc_mux_next_deadline(fx.mux), ==, 30 * G_USEC_PER_SEC);
    vmc_mux_tick(fx.mux, 30 * G_USEC_PER_SEC);
    g_assert_true(vmc_mux_client_failed(fx.mux, b, &error));
    g_clear_error(&error);
    g_assert_true(vmc_mux_guest_wants_input(fx.mux));
    /* and the client->agent direction never waited for it */
    {
        g_autoptr(GByteArray) x = mt_msg_pattern(100, 10, 1);
        g_autoptr(GPtrArray) g = NULL;

        send(&fx, a, x);
        g = guest_take(&fx);
        g_assert_cmpuint(g->len, ==, 1);
    }
    fx_teardown(&fx, NULL);
}

static void
test_fair_bounded_staging(Fx *fx, gconstpointer data)
{
    g_autoptr(GByteArray) m = mt_msg_pattern(100, 2028, 1);
    guint32 a = add_started(fx);
    guint32 b = add_started(fx);
    GError *error = NULL;

    /* the guest does not read: a client can stage its window, not one AGENT_DATA more */
    for (guint i = 0; i < 512; i++)
        mt_data_ok(fx->mux, a, m->data, m->len);
    g_assert_cmpuint(mt_stats(fx->mux, a).tokens_in_use, ==, 512);
    error = mt_data_err(fx->mux, a, m->data, m->len);
    g_assert_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_FLOW_CONTROL);
    g_clear_error(&error);
    /* the other client is not affected */
    mt_data_ok(fx->mux, b, m->data, m->len);
    g_assert_false(vmc_mux_client_failed(fx->mux, b, NULL));
}

/* ========================================================================= */
/* randomized: N spice-gtk-like clients, a spice-vdagentd-like agent */

#define RMAX 8

typedef struct {
    guint32 client_xid;
    guint64 size;
    guint64 sent;      /* data bytes queued by the client */
    guint32 seed;
    gsize chunk;       /* data per DATA message: spice-gtk's 64 KiB, or bigger */
    gboolean can_send; /* CAN_SEND_DATA arrived */
    gboolean done;
} RXfer;

typedef struct {
    guint32 id; /* 0: slot free */
    gboolean joined;
    guint32 next_xid;
    GHashTable *xfers; /* client xid -> RXfer* */
    GByteArray *cur;   /* message being sent */
    gsize cur_off;
    GQueue outq;       /* GByteArray* whole messages waiting to be sent */
    GByteArray *rx;
    guint32 serial;    /* spice-gtk's clipboard counter (selection 0) */
    guint grabs_taken;
    guint completed;
} RClient;

typedef struct {
    guint32 mux_client; /* owner, from the START text */
    guint32 client_xid;
    guint64 size;
    guint64 got;
    guint32 seed;
} AXfer;

typedef struct {
    Fx fx;
    RClient cl[RMAX];
    guint n;
    /* the agent */
    GHashTable *axfers;  /* agent id -> AXfer* (spice-vdagentd's active_xfers) */
    guint32 agent_serial;
    gboolean agent_has_client_caps;
    guint disconnects;   /* CLIENT_DISCONNECTED it got */
    guint ignored;       /* DATA for a transfer it no longer has (cancelled) */
    guint discarded_grabs;
    guint64 data_bytes;
} RWorld;

static guint32
rnd(guint32 n)
{
    return n ? (guint32)g_test_rand_int_range(0, (gint32)n) : 0;
}

static guint8
pattern_byte(guint32 seed, guint64 off)
{
    return (guint8)((seed * 2654435761u) ^ (guint32)(off * 7 + (off >> 11)));
}

static void
rx_free(gpointer p)
{
    g_free(p);
}

static void
rc_clear(RClient *c)
{
    GByteArray *m;

    g_clear_pointer(&c->xfers, g_hash_table_unref);
    g_clear_pointer(&c->cur, g_byte_array_unref);
    g_clear_pointer(&c->rx, g_byte_array_unref);
    while ((m = g_queue_pop_head(&c->outq)))
        g_byte_array_unref(m);
    c->id = 0;
}

static void
rc_queue(RClient *c, GByteArray *m)
{
    g_queue_push_tail(&c->outq, m);
}

static void
r_join(RWorld *w)
{
    for (guint i = 0; i < w->n; i++) {
        RClient *c = &w->cl[i];

        if (c->id)
            continue;
        memset(c, 0, sizeof(*c));
        c->id = add_started(&w->fx);
        c->next_xid = 1; /* every spice-gtk process counts from 1 */
        c->xfers = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, rx_free);
        c->rx = g_byte_array_new();
        g_queue_init(&c->outq);
        rc_queue(c, mt_caps(1, GTK_CAPS));
        return;
    }
}

static void
r_leave(RWorld *w, RClient *c)
{
    vmc_mux_client_remove(w->fx.mux, c->id);
    rc_clear(c);
}

static guint
r_live(RWorld *w)
{
    guint n = 0;

    for (guint i = 0; i < w->n; i++)
        n += w->cl[i].id != 0;
    return n;
}

/* The client sends its next AGENT_DATA (spice-gtk cuts at 2048). */
static gboolean
rc_send_unit(RWorld *w, RClient *c)
{
    gsize n;

    /* spice-gtk writes only while it has tokens (the mux's count of them) */
    if (mt_stats(w->fx.mux, c->id).tokens_in_use >= w->fx.cfg.agent_window)
        return FALSE;
    if (!c->cur) {
        c->cur = g_queue_pop_head(&c->outq);
        c->cur_off = 0;
        if (!c->cur)
            return FALSE;
    }
    n = MIN((gsize)c->cur->len - c->cur_off, (gsize)2048);
    mt_data_ok(w->fx.mux, c->id, c->cur->data + c->cur_off, n);
    c->cur_off += n;
    if (c->cur_off == c->cur->len)
        g_clear_pointer(&c->cur, g_byte_array_unref);
    return TRUE;
}

static void
rc_start_xfer(RClient *c)
{
    RXfer *x = g_new0(RXfer, 1);
    g_autofree gchar *text = NULL;
    gsize n;
    GByteArray *m;

    x->client_xid = c->next_xid++;
    x->size = rnd(4) == 0 ? rnd(100) : 1 + rnd(300 * 1024);
    x->seed = c->id * 1000 + x->client_xid;
    x->chunk = rnd(3) == 0 ? 100 * 1024 : 64 * 1024;
    text = g_strdup_printf("[vdagent-file-xfer]\nname=c%u-%u\nsize=%" G_GUINT64_FORMAT "\n",
                           c->id, x->client_xid, x->size);
    n = strlen(text) + 1;
    m = mt_msg(VD_AGENT_FILE_XFER_START, NULL, 4 + n);
    vmc_put_u32le(m->data + 20, x->client_xid);
    memcpy(m->data + 24, text, n);
    g_hash_table_insert(c->xfers, GUINT_TO_POINTER(x->client_xid), x);
    rc_queue(c, m);
}

/* spice-gtk: after CAN_SEND_DATA, 64 KiB DATA messages (a 0-byte file: one empty) */
static void
rc_queue_data(RClient *c, RXfer *x)
{
    do {
        gsize n = (gsize)MIN(x->size - x->sent, (guint64)x->chunk);
        GByteArray *m = mt_msg(VD_AGENT_FILE_XFER_DATA, NULL, 12 + n);

        vmc_put_u32le(m->data + 20, x->client_xid);
        vmc_put_u64le(m->data + 24, n);
        for (gsize i = 0; i < n; i++)
            m->data[32 + i] = pattern_byte(x->seed, x->sent + i);
        x->sent += n;
        rc_queue(c, m);
    } while (x->sent < x->size);
}

/* The client reads what the mux queued for it (spice-gtk's side). */
static void
rc_receive(RWorld *w, RClient *c)
{
    g_autoptr(GPtrArray) msgs = client_take(&w->fx, c->id);

    for (guint i = 0; i < msgs->len; i++) {
        GByteArray *m = cm(msgs, i);
        guint32 type = m_type(m);

        switch (type) {
        case VD_AGENT_ANNOUNCE_CAPABILITIES:
            g_assert_cmpuint(m_u32(m, 0), ==, 0); /* never asked to answer */
            c->joined = TRUE;
            rc_queue(c, max_clipboard_msg(104857600));
            break;
        case VD_AGENT_FILE_XFER_STATUS: {
            /* only its own transfers, with its own ids */
            RXfer *x = g_hash_table_lookup(c->xfers, GUINT_TO_POINTER(m_u32(m, 0)));
            guint32 st = m_u32(m, 4);

            if (!x || x->done)
                g_error("client %u got a status for transfer %u it does not have", c->id,
                        m_u32(m, 0));
            if (st == VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA) {
                g_assert_false(x->can_send);
                x->can_send = TRUE;
                rc_queue_data(c, x);
            } else {
                /* no other client's coming or going may fail it */
                g_assert_cmpuint(st, ==, VD_AGENT_FILE_XFER_STATUS_SUCCESS);
                g_assert_cmpuint(x->sent, ==, x->size);
                x->done = TRUE;
                c->completed++;
            }
            break;
        }
        case VD_AGENT_CLIPBOARD_GRAB: {
            guint32 serial = m_u32(m, 4);

            /* spice-gtk: exactly its counter, or it is discarded */
            if (serial == c->serial) {
                c->serial++;
                c->grabs_taken++;
            }
            break;
        }
        case VD_AGENT_CLIPBOARD_REQUEST:
            rc_queue(c, clip_msg(0, m_u32(m, 4), "client data"));
            break;
        default:
            break;
        }
    }
}

/* ---- the agent (spice-vdagentd's rules) ---- */

static void
agent_reply(RWorld *w, GByteArray *m)
{
    agent_send(&w->fx, m);
    g_byte_array_unref(m);
}

static void
agent_on_message(RWorld *w, GMsg *g)
{
    GByteArray *m = g->m;
    guint32 type = m_type(m);

    switch (type) {
    case VD_AGENT_ANNOUNCE_CAPABILITIES:
        w->agent_has_client_caps = TRUE;
        if (m_u32(m, 0)) {
            /* "new client": resets transfers and serials, answers. Only a client
             * alone in the session gets here, so no transfer of a present
             * client is lost (the clients check that every one succeeds). */
            g_hash_table_remove_all(w->axfers);
            w->agent_serial = 0;
            agent_reply(w, mt_caps(0, AGENT_CAPS));
        }
        break;
    case VD_AGENT_CLIENT_DISCONNECTED:
        w->disconnects++;
        g_hash_table_remove_all(w->axfers);
        break;
    case VD_AGENT_FILE_XFER_START: {
        guint32 id = m_u32(m, 0);
        AXfer *x;
        guint32 cid = 0, xid = 0;
        guint64 size = 0;
        const char *text = (const char *)m->data + 24;

        /* the agent refuses a duplicate active id: the mux must never cause one */
        g_assert_false(g_hash_table_contains(w->axfers, GUINT_TO_POINTER(id)));
        g_assert_cmpint(sscanf(strstr(text, "name=c"), "name=c%u-%u", &cid, &xid), ==, 2);
        size = g_ascii_strtoull(strstr(text, "size=") + 5, NULL, 10);
        x = g_new0(AXfer, 1);
        x->mux_client = cid;
        x->client_xid = xid;
        x->size = size;
        x->seed = cid * 1000 + xid;
        g_hash_table_insert(w->axfers, GUINT_TO_POINTER(id), x);
        agent_reply(w, xfer_status_msg(id, VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA));
        break;
    }
    case VD_AGENT_FILE_XFER_DATA: {
        guint32 id = m_u32(m, 0);
        AXfer *x = g_hash_table_lookup(w->axfers, GUINT_TO_POINTER(id));
        guint64 n = vmc_get_u64le(m->data + 24);

        if (!x) {
            w->ignored++; /* "Could not find file-xfer (cancelled?)": ignored */
            break;
        }
        g_assert_cmpuint(n, ==, m->len - 32);
        g_assert_cmpuint(x->got + n, <=, x->size);
        for (guint64 i = 0; i < n; i++)
            if (m->data[32 + i] != pattern_byte(x->seed, x->got + i))
                g_error("transfer %u (client %u #%u): byte %" G_GUINT64_FORMAT " wrong", id,
                        x->mux_client, x->client_xid, x->got + i);
        x->got += n;
        w->data_bytes += n;
        if (x->got == x->size) {
            g_hash_table_remove(w->axfers, GUINT_TO_POINTER(id));
            agent_reply(w, xfer_status_msg(id, VD_AGENT_FILE_XFER_STATUS_SUCCESS));
        }
        break;
    }
    case VD_AGENT_FILE_XFER_STATUS:
        g_hash_table_remove(w->axfers, GUINT_TO_POINTER(m_u32(m, 0)));
        break;
    case VD_AGENT_CLIPBOARD_GRAB: {
        guint32 serial = m_u32(m, 4);

        /* spice-vdagentd: its counter, or one less ("client grab wins"); any
         * other lost to grabs of the guest made since */
        if (serial == w->agent_serial)
            w->agent_serial++;
        else if (serial != w->agent_serial - 1)
            w->discarded_grabs++;
        break;
    }
    default:
        break;
    }
}

static void
agent_read(RWorld *w)
{
    g_autoptr(GPtrArray) g = guest_take(&w->fx);

    for (guint i = 0; i < g->len; i++)
        agent_on_message(w, gm(g, i));
}

static void
agent_grab(RWorld *w)
{
    agent_reply(w, grab_msg(0, w->agent_serial++, VD_AGENT_CLIPBOARD_UTF8_TEXT));
}

static void
r_drain(RWorld *w)
{
    for (guint round = 0;; round++) {
        gboolean progress = FALSE;

        g_assert_cmpuint(round, <, 1000000);
        for (guint i = 0; i < w->n; i++) {
            RClient *c = &w->cl[i];

            if (!c->id)
                continue;
            rc_receive(w, c);
            while (rc_send_unit(w, c))
                progress = TRUE;
        }
        if (vmc_mux_guest_output_size(w->fx.mux) > 0) {
            agent_read(w);
            progress = TRUE;
        }
        for (guint i = 0; i < w->n; i++)
            if (w->cl[i].id && vmc_mux_client_peek(w->fx.mux, w->cl[i].id, &(VmcMuxMsg){ 0 }))
                progress = TRUE;
        if (!progress)
            break;
    }
}

/* Everything settled: every present client's transfers completed; an agent grab
 * now reaches every joined client with exactly its counter. */
static void
r_checkpoint(RWorld *w)
{
    guint before[RMAX];

    r_drain(w);
    for (guint i = 0; i < w->n; i++) {
        RClient *c = &w->cl[i];
        GHashTableIter it;
        gpointer v;

        if (!c->id)
            continue;
        g_hash_table_iter_init(&it, c->xfers);
        while (g_hash_table_iter_next(&it, NULL, &v))
            g_assert_true(((RXfer *)v)->done);
        g_assert_true(c->joined);
        g_assert_cmpuint(mt_stats(w->fx.mux, c->id).tokens_in_use, ==, 0);
        before[i] = c->grabs_taken;
    }
    agent_grab(w);
    r_drain(w);
    for (guint i = 0; i < w->n; i++)
        if (w->cl[i].id)
            g_assert_cmpuint(w->cl[i].grabs_taken, ==, before[i] + 1);
    /* nobody's leaving reset the agent while others were there */
    g_assert_cmpuint(w->disconnects, ==, 0);
}

static void
r_step(RWorld *w)
{
    RClient *c = &w->cl[rnd(w->n)];
    guint r = rnd(100);

    if (r < 35) {
        if (c->id)
            for (guint k = 1 + rnd(40); k > 0 && rc_send_unit(w, c); k--)
                ;
    } else if (r < 55) {
        if (vmc_mux_guest_output_size(w->fx.mux) > 0)
            agent_read(w);
    } else if (r < 70) {
        if (c->id)
            rc_receive(w, c);
    } else if (r < 80) {
        if (c->id && c->joined && g_hash_table_size(c->xfers) < 6)
            rc_start_xfer(c);
    } else if (r < 85) {
        if (c->id && c->joined) /* spice-gtk grabs with its counter */
            rc_queue(c, grab_msg(0, c->serial++, VD_AGENT_CLIPBOARD_UTF8_TEXT));
    } else if (r < 88) {
        if (w->agent_has_client_caps)
            agent_grab(w);
    } else if (r < 90) {
        if (c->id && r_live(w) > 1) {
            /* killed, often in the middle of a message */
            r_leave(w, c);
        } else if (!c->id) {
            r_join(w);
        }
    } else if (r < 95) {
        r_join(w);
    } else if (r < 96) {
        r_checkpoint(w);
    }
}

static void
test_random(gconstpointer data)
{
    guint n = GPOINTER_TO_UINT(data);
    guint steps = 4000;
    const char *env = g_getenv("VMC_MUX_SHARE_RANDOM_STEPS");
    VmcMuxConfig cfg;
    RWorld *w = g_new0(RWorld, 1);

    if (env)
        steps = (guint)g_ascii_strtoull(env, NULL, 10);
    if (g_test_slow())
        steps *= 10;
    vmc_mux_config_init(&cfg);
    cfg.max_clients = n;
    fx_setup_cfg(&w->fx, &cfg);
    w->n = n;
    w->axfers = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    for (guint i = 0; i < n; i++)
        r_join(w);
    for (guint s = 0; s < steps; s++)
        r_step(w);
    r_checkpoint(w);
    {
        guint completed = 0;

        for (guint i = 0; i < n; i++)
            completed += w->cl[i].completed;
        g_test_message("%u clients: %u steps, %" G_GUINT64_FORMAT
                       " file bytes checked, %u transfers completed by present clients, "
                       "%u DATA of cancelled transfers ignored, %u client grabs lost to "
                       "the guest",
                       n, steps, w->data_bytes, completed, w->ignored, w->discarded_grabs);
    }
    /* the last one leaves: now the agent is told */
    for (guint i = 0; i < n; i++)
        if (w->cl[i].id)
            r_leave(w, &w->cl[i]);
    agent_read(w);
    g_assert_cmpuint(w->disconnects, ==, 1);
    g_hash_table_unref(w->axfers);
    fx_teardown(&w->fx, NULL);
    g_free(w);
}

/* ========================================================================= */

#define ADD(path, fn) g_test_add(path, Fx, NULL, fx_setup, fn, fx_teardown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("Shared agent: several clients on one guest agent, each with its own "
                   "conversation (docs/sharing.md)");

    ADD("/mux-share/atomic/whole-messages", test_atomic_whole_messages);
    ADD("/mux-share/atomic/big-message-holds", test_atomic_big_message_holds);

    ADD("/mux-share/caps/join-from-cache", test_caps_join_from_cache);
    ADD("/mux-share/caps/intersection", test_caps_intersection);
    ADD("/mux-share/caps/layout-mismatch", test_caps_layout_mismatch);
    ADD("/mux-share/caps/agent-request", test_caps_agent_request);
    ADD("/mux-share/caps/before-agent-answer", test_caps_before_agent_answer);
    ADD("/mux-share/caps/policy-in-views", test_caps_policy_in_views);

    ADD("/mux-share/xfer/ids-remapped", test_xfer_ids_remapped);
    ADD("/mux-share/xfer/duplicate-and-errors", test_xfer_duplicate_and_errors);

    ADD("/mux-share/clipboard/routing", test_clip_routing);
    ADD("/mux-share/clipboard/agent-grab-and-requests", test_clip_agent_grab_and_requests);
    ADD("/mux-share/clipboard/serials", test_clip_serials);
    ADD("/mux-share/clipboard/serials-new-client", test_clip_serials_new_client);
    ADD("/mux-share/clipboard/request-without-owner", test_clip_request_without_owner);

    ADD("/mux-share/settings/primary", test_settings_primary);
    ADD("/mux-share/settings/max-clipboard", test_settings_max_clipboard);

    ADD("/mux-share/leave/mid-xfer-data", test_leave_mid_xfer_data);
    ADD("/mux-share/leave/mid-clipboard", test_leave_mid_clipboard);
    ADD("/mux-share/leave/staged-partial", test_leave_staged_partial);
    ADD("/mux-share/leave/last-only", test_leave_last_only);
    ADD("/mux-share/leave/session-restarts", test_leave_session_restarts);
    ADD("/mux-share/leave/stall-cutoff", test_leave_stall_cutoff);
    ADD("/mux-share/leave/filler-too-large", test_leave_filler_too_large);
    ADD("/mux-share/leave/last-during-filler", test_leave_last_during_filler);
    ADD("/mux-share/leave/agent-reconnect", test_leave_agent_reconnect);

    g_test_add_func("/mux-share/fair/round-robin", test_fair_round_robin);
    g_test_add_func("/mux-share/fair/no-token-grant", test_fair_no_token_grant);
    ADD("/mux-share/fair/bounded-staging", test_fair_bounded_staging);

    for (guint n = 2; n <= RMAX; n *= 2) {
        g_autofree gchar *path = g_strdup_printf("/mux-share/random/%u", n);

        g_test_add_data_func(path, GUINT_TO_POINTER(n), test_random);
    }
    return g_test_run();
}
