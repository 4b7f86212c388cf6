/* test-session.c — the main-channel session (server/vmc-session.h), sans-I/O:
 * scripted byte transcripts for the link, each link error, the ticket, INIT and the
 * main-channel messages (agent-protocol.md §9.1 items 1-17 that apply; security.md §2.4
 * L1-L4, M1-M6), with a real VmcMux behind it. Bytes are built and parsed here by
 * hand, not with the codecs under test elsewhere. */
#include "server/vmc-session.h"
#include "protocol/vmc-main.h"
#include "server-test-util.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <spice/enums.h>
#include <spice/protocol.h>

#define T0 ((gint64)1000 * G_USEC_PER_SEC) /* an arbitrary monotonic start time */
#define CAPS_SPICE_GTK_COMMON 0x0Du /* AUTH_SELECTION, AUTH_SASL, MINI_HEADER */
#define CAPS_SPICE_GTK_MAIN 0x0Fu
#define CAPS_HARNESS_COMMON 0x0Bu /* AUTH_SELECTION, AUTH_SPICE, MINI_HEADER */

static VmcTicketPool *pool; /* shared: keys made in the background across tests */

typedef struct {
    VmcMux *mux;
    VmcSessionConfig cfg;
    VmcSession *s;
    gint64 now;
    GByteArray *out; /* output not yet consumed by the test */
    guint8 pub[162];
    gboolean mini;
    guint64 serial; /* last full-header serial seen */
    guint64 client_serial;
    guint admitted;
    gboolean refuse;
} F;

static gboolean
admit_cb(gpointer user_data, VmcSession *session, char **reason)
{
    F *f = user_data;

    if (f->refuse) {
        *reason = g_strdup("server full (1 client, --max-clients 1)");
        return FALSE;
    }
    f->admitted++;
    return TRUE;
}

static void
setup(F *f, gconstpointer data)
{
    VmcMuxConfig mc;

    vmc_mux_config_init(&mc);
    mc.agent_window = 10;
    f->mux = vmc_mux_new(&mc);
    vmc_session_config_init(&f->cfg);
    f->cfg.mux = f->mux;
    f->cfg.keys = pool;
    f->cfg.password = "secret";
    f->cfg.admit = admit_cb;
    f->cfg.admit_data = f;
    f->now = T0;
    f->out = g_byte_array_new();
    f->mini = TRUE;
}

static void
teardown(F *f, gconstpointer data)
{
    g_clear_pointer(&f->s, vmc_session_free);
    g_clear_pointer(&f->mux, vmc_mux_free);
    g_clear_pointer(&f->out, g_byte_array_unref);
}

static void
new_session(F *f, gboolean keepalive)
{
    vmc_session_free(f->s);
    f->s = vmc_session_new(&f->cfg, keepalive, f->now);
    g_byte_array_set_size(f->out, 0);
    f->serial = 0;
    f->client_serial = 0;
}

/* Moves all pending output into f->out. */
static void
drain(F *f)
{
    GOutputVector v[4];
    guint n;

    while ((n = vmc_session_output_vec(f->s, v, G_N_ELEMENTS(v))) > 0) {
        gsize total = 0;
        for (guint i = 0; i < n; i++) {
            g_byte_array_append(f->out, v[i].buffer, (guint)v[i].size);
            total += v[i].size;
        }
        vmc_session_output_advance(f->s, total);
    }
}

static void
feed(F *f, const guint8 *buf, gsize len)
{
    vmc_session_feed(f->s, buf, len);
    drain(f);
}

static void
feed_bytewise(F *f, const guint8 *buf, gsize len)
{
    for (gsize i = 0; i < len; i++)
        vmc_session_feed(f->s, buf + i, 1);
    drain(f);
}

static void
take(F *f, gsize n, guint8 *dst)
{
    g_assert_cmpuint(f->out->len, >=, n);
    if (dst)
        memcpy(dst, f->out->data, n);
    g_byte_array_remove_range(f->out, 0, (guint)n);
}

static guint32
rd32(const guint8 *p)
{
    return (guint32)p[0] | ((guint32)p[1] << 8) | ((guint32)p[2] << 16) | ((guint32)p[3] << 24);
}

static void
wr32(GByteArray *a, guint32 v)
{
    guint8 b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
    g_byte_array_append(a, b, 4);
}

static void
wr16(GByteArray *a, guint16 v)
{
    guint8 b[2] = {v & 0xff, v >> 8};
    g_byte_array_append(a, b, 2);
}

/* SpiceLinkHeader + SpiceLinkMess with one word of each caps array. */
static GByteArray *
link_msg_full(guint32 major, guint32 minor, guint32 conn_id, guint8 type, guint32 ncommon,
              guint32 common, guint32 nmain, guint32 main_caps, guint32 caps_offset,
              gint64 size_override)
{
    GByteArray *a = g_byte_array_new();
    guint32 size = 18 + 4 * (ncommon ? 1 : 0) + 4 * (nmain ? 1 : 0);

    g_byte_array_append(a, (const guint8 *)"REDQ", 4);
    wr32(a, major);
    wr32(a, minor);
    wr32(a, size_override >= 0 ? (guint32)size_override : size);
    wr32(a, conn_id);
    g_byte_array_append(a, &type, 1);
    g_byte_array_append(a, (const guint8[]){0}, 1);
    wr32(a, ncommon);
    wr32(a, nmain);
    wr32(a, caps_offset);
    if (ncommon)
        wr32(a, common);
    if (nmain)
        wr32(a, main_caps);
    return a;
}

static GByteArray *
link_msg(guint32 common, guint32 main_caps)
{
    return link_msg_full(2, 2, 0, SPICE_CHANNEL_MAIN, 1, common, 1, main_caps, 18, -1);
}

/* Expects the 16 + 186-byte successful reply; keeps the public key. */
static void
expect_link_reply(F *f)
{
    static const guint8 hdr[16] = {'R', 'E', 'D', 'Q', 2, 0, 0, 0, 2, 0, 0, 0, 186, 0, 0, 0};
    guint8 r[16 + 186];
    const unsigned char *p;
    EVP_PKEY *pkey;
    BIGNUM *e = NULL;

    take(f, sizeof(r), r);
    g_assert_cmpmem(r, 16, hdr, 16);
    g_assert_cmpuint(rd32(r + 16), ==, 0);                /* error */
    g_assert_cmpuint(rd32(r + 16 + 166), ==, 1);          /* num_common_caps */
    g_assert_cmpuint(rd32(r + 16 + 170), ==, 1);          /* num_channel_caps */
    g_assert_cmpuint(rd32(r + 16 + 174), ==, 178);        /* caps_offset */
    g_assert_cmpuint(rd32(r + 16 + 178), ==, 0x0B);       /* AUTH_SELECTION|SPICE|MINI */
    g_assert_cmpuint(rd32(r + 16 + 182), ==, 0x06);       /* NAME_AND_UUID|CONNECTED_TOKENS */
    memcpy(f->pub, r + 20, 162);
    p = f->pub;
    pkey = d2i_PUBKEY(NULL, &p, 162);
    g_assert_nonnull(pkey);
    g_assert_true(p == f->pub + 162);
    g_assert_cmpint(EVP_PKEY_get_bits(pkey), ==, 1024);
    g_assert_true(EVP_PKEY_get_bn_param(pkey, "e", &e));
    g_assert_true(BN_is_word(e, 65537));
    BN_free(e);
    EVP_PKEY_free(pkey);
}

/* A 194-byte link error with `err`, then the session is done. */
static void
expect_link_error(F *f, guint32 err)
{
    static const guint8 hdr[16] = {'R', 'E', 'D', 'Q', 2, 0, 0, 0, 2, 0, 0, 0, 178, 0, 0, 0};
    guint8 r[16 + 178];
    guint8 zero[174] = {0};

    take(f, sizeof(r), r);
    g_assert_cmpmem(r, 16, hdr, 16);
    g_assert_cmpuint(rd32(r + 16), ==, err);
    g_assert_cmpmem(r + 20, 174, zero, 174); /* zero key, no caps, caps_offset 0 */
    g_assert_cmpuint(f->out->len, ==, 0);
    g_assert_true(vmc_session_is_done(f->s));
}

static void
encrypt_md(F *f, const guint8 *plain, gsize len, const EVP_MD *md, guint8 out[128])
{
    const unsigned char *p = f->pub;
    EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, 162);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
    size_t n = 128;

    g_assert_true(EVP_PKEY_encrypt_init(ctx) > 0);
    g_assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0);
    g_assert_true(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) > 0);
    g_assert_true(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) > 0);
    g_assert_true(EVP_PKEY_encrypt(ctx, out, &n, plain, len) > 0);
    g_assert_cmpuint(n, ==, 128);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
}

static void
send_ticket(F *f, const char *pw, gsize len)
{
    guint8 t[128];

    encrypt_md(f, (const guint8 *)pw, len, EVP_sha1(), t);
    feed(f, t, sizeof(t));
}

static void
send_mech(F *f, guint32 mech)
{
    guint8 b[4] = {mech & 0xff, (mech >> 8) & 0xff, (mech >> 16) & 0xff, mech >> 24};
    feed(f, b, 4);
}

static void
expect_result(F *f, guint32 result)
{
    guint8 r[4];

    take(f, 4, r);
    g_assert_cmpuint(rd32(r), ==, result);
}

/* One server message: returns its body (transfer full) and checks the header mode. */
static GBytes *
take_msg(F *f, guint16 *type)
{
    guint8 h[18];
    guint32 size;
    guint8 *body;

    if (f->mini) {
        take(f, 6, h);
        *type = (guint16)(h[0] | (h[1] << 8));
        size = rd32(h + 2);
    } else {
        guint64 serial;
        take(f, 18, h);
        serial = (guint64)rd32(h) | ((guint64)rd32(h + 4) << 32);
        g_assert_cmpuint(serial, ==, f->serial + 1); /* serials 1, 2, 3, ... */
        f->serial = serial;
        *type = (guint16)(h[8] | (h[9] << 8));
        size = rd32(h + 10);
        g_assert_cmpuint(rd32(h + 14), ==, 0); /* sub_list */
    }
    body = g_malloc(size ? size : 1);
    take(f, size, body);
    return g_bytes_new_take(body, size);
}

static GBytes *
expect_msg(F *f, guint16 type)
{
    guint16 t;
    GBytes *b = take_msg(f, &t);
    g_assert_cmpuint(t, ==, type);
    return b;
}

/* A client message with the header mode of the session. */
static void
send_msg(F *f, guint16 type, const guint8 *body, guint32 size, gsize body_len)
{
    GByteArray *a = g_byte_array_new();

    if (f->mini) {
        wr16(a, type);
        wr32(a, size);
    } else {
        f->client_serial++;
        wr32(a, (guint32)f->client_serial);
        wr32(a, 0);
        wr16(a, type);
        wr32(a, size);
        wr32(a, 0);
    }
    if (body_len)
        g_byte_array_append(a, body, (guint)body_len);
    feed(f, a->data, a->len);
    g_byte_array_unref(a);
}

static void
send_u32_msg(F *f, guint16 type, guint32 v)
{
    guint8 b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};
    send_msg(f, type, b, 4, 4);
}

/* Link + ticket as spice-gtk does (AUTH_SELECTION, mechanism 1), then INIT. */
static VmcMainInit
connect_client(F *f, guint32 common, guint32 main_caps)
{
    g_autoptr(GByteArray) l = link_msg(common, main_caps);
    g_autoptr(GBytes) init = NULL;
    const guint8 *p;
    VmcMainInit in;

    f->mini = (common & (1u << SPICE_COMMON_CAP_MINI_HEADER)) != 0;
    new_session(f, FALSE);
    feed(f, l->data, l->len);
    expect_link_reply(f);
    if (common & (1u << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION))
        send_mech(f, SPICE_COMMON_CAP_AUTH_SPICE);
    send_ticket(f, "secret", 7);
    expect_result(f, 0);
    init = expect_msg(f, SPICE_MSG_MAIN_INIT);
    g_assert_cmpuint(g_bytes_get_size(init), ==, 32);
    p = g_bytes_get_data(init, NULL);
    in.session_id = rd32(p);
    in.display_channels_hint = rd32(p + 4);
    in.supported_mouse_modes = rd32(p + 8);
    in.current_mouse_mode = rd32(p + 12);
    in.agent_connected = rd32(p + 16);
    in.agent_tokens = rd32(p + 20);
    in.multi_media_time = rd32(p + 24);
    in.ram_hint = rd32(p + 28);
    g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_ACTIVE);
    g_assert_cmpuint(vmc_session_get_client_id(f->s), !=, 0);
    return in;
}

static void
expect_silence(F *f)
{
    drain(f);
    g_assert_cmpuint(f->out->len, ==, 0);
    g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_ACTIVE);
}

static void
expect_closed(F *f)
{
    drain(f);
    g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_CLOSED);
    g_assert_true(vmc_session_is_done(f->s));
    g_assert_nonnull(vmc_session_get_error(f->s));
    g_assert_cmpuint(f->out->len, ==, 0);
}

/* ==================================================================================
 * link
 * ================================================================================== */

static void
test_link_reply(F *f, gconstpointer data)
{
    g_autoptr(GByteArray) l = link_msg(CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);

    new_session(f, FALSE);
    /* every prefix: no answer yet */
    for (guint i = 0; i + 1 < l->len; i++) {
        vmc_session_feed(f->s, l->data + i, 1);
        drain(f);
        g_assert_cmpuint(f->out->len, ==, 0);
        g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_LINK);
    }
    feed(f, l->data + l->len - 1, 1);
    expect_link_reply(f);
    g_assert_cmpuint(f->out->len, ==, 0);
    g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_AUTH);
    g_assert_cmpuint(vmc_session_get_common_caps(f->s), ==, CAPS_SPICE_GTK_COMMON);
    g_assert_cmpuint(vmc_session_get_channel_caps(f->s), ==, CAPS_SPICE_GTK_MAIN);
}

static void
test_link_fresh_key(F *f, gconstpointer data)
{
    g_autoptr(GByteArray) l = link_msg(CAPS_HARNESS_COMMON, 0xF);
    guint8 first[162];

    new_session(f, FALSE);
    feed(f, l->data, l->len);
    expect_link_reply(f);
    memcpy(first, f->pub, 162);
    new_session(f, FALSE);
    feed(f, l->data, l->len);
    expect_link_reply(f);
    g_assert_true(memcmp(first, f->pub, 162) != 0); /* one key per link */
}

static void
test_link_bad_magic(F *f, gconstpointer data)
{
    new_session(f, FALSE);
    /* answered after 4 bytes: no wait for the rest of the header */
    feed(f, (const guint8 *)"GET ", 4);
    expect_link_error(f, SPICE_LINK_ERR_INVALID_MAGIC);
    g_assert_false(vmc_session_feed(f->s, (const guint8 *)"/ HTTP/1.1\r\n", 12));
    drain(f);
    g_assert_cmpuint(f->out->len, ==, 0);
}

static void
test_link_version(F *f, gconstpointer data)
{
    static const guint32 bad_major[] = {1, 3, 0xFFFFFFFF};
    g_autoptr(GByteArray) minor99 = NULL;
    g_autoptr(GByteArray) major0 = NULL;

    for (guint i = 0; i < G_N_ELEMENTS(bad_major); i++) {
        g_autoptr(GByteArray) l = link_msg_full(bad_major[i], 2, 0, SPICE_CHANNEL_MAIN, 1, 0xB,
                                                1, 0xF, 18, -1);
        new_session(f, FALSE);
        feed(f, l->data, 16); /* the header alone gets the answer */
        expect_link_error(f, SPICE_LINK_ERR_VERSION_MISMATCH);
    }
    /* major 0: closed without a reply */
    major0 = link_msg_full(0, 2, 0, SPICE_CHANNEL_MAIN, 1, 0xB, 1, 0xF, 18, -1);
    new_session(f, FALSE);
    feed(f, major0->data, major0->len);
    expect_closed(f);
    /* minor is not checked */
    minor99 = link_msg_full(2, 99, 0, SPICE_CHANNEL_MAIN, 1, 0xB, 1, 0xF, 18, -1);
    new_session(f, FALSE);
    feed(f, minor99->data, minor99->len);
    expect_link_reply(f);
}

static void
test_link_size(F *f, gconstpointer data)
{
    /* L1: refused at the header, before any allocation or further read */
    static const gint64 sizes[] = {0, 17, 4097, 0xAAAAAAAA, 0xFFFFFFFF};

    for (guint i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autoptr(GByteArray) l =
            link_msg_full(2, 2, 0, SPICE_CHANNEL_MAIN, 1, 0xB, 1, 0xF, 18, sizes[i]);
        new_session(f, FALSE);
        feed(f, l->data, 16);
        expect_link_error(f, SPICE_LINK_ERR_INVALID_DATA);
    }
}

static void
test_link_caps(F *f, gconstpointer data)
{
    struct {
        guint32 ncommon, nmain, offset;
        gint64 size;
    } cases[] = {
        {1, 1, 10, -1},                  /* caps_offset < 18 with caps */
        {1, 1, 20, -1},                  /* caps run past the message */
        {1025, 0, 18, -1},               /* L2: count over 1024 */
        {0, 1025, 18, -1},
        {0x80000000u, 0x80000000u, 18, -1}, /* L2: sum wraps a u32 */
        {1, 1, 0xFFFFFFF0u, -1},         /* offset near the top */
        {1, 1, 18, 4000},                /* declared bigger than sent: caps fit... */
    };

    for (guint i = 0; i + 1 < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GByteArray) l =
            link_msg_full(2, 2, 0, SPICE_CHANNEL_MAIN, cases[i].ncommon ? 1 : 0, 0xB,
                          cases[i].nmain ? 1 : 0, 0xF, cases[i].offset, cases[i].size);
        /* patch the real counts in (the builder writes one word per array) */
        guint8 *p = l->data + 16 + 6;
        p[0] = cases[i].ncommon & 0xff;
        p[1] = (cases[i].ncommon >> 8) & 0xff;
        p[2] = (cases[i].ncommon >> 16) & 0xff;
        p[3] = cases[i].ncommon >> 24;
        p[4] = cases[i].nmain & 0xff;
        p[5] = (cases[i].nmain >> 8) & 0xff;
        p[6] = (cases[i].nmain >> 16) & 0xff;
        p[7] = cases[i].nmain >> 24;
        new_session(f, FALSE);
        feed(f, l->data, l->len);
        expect_link_error(f, SPICE_LINK_ERR_INVALID_DATA);
    }
    /* ...but with a size larger than the bytes sent the session just waits */
    {
        guint i = G_N_ELEMENTS(cases) - 1;
        g_autoptr(GByteArray) l = link_msg_full(2, 2, 0, SPICE_CHANNEL_MAIN, 1, 0xB, 1, 0xF,
                                                cases[i].offset, cases[i].size);
        new_session(f, FALSE);
        feed(f, l->data, l->len);
        g_assert_cmpuint(f->out->len, ==, 0);
        g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_LINK);
    }
    /* zero caps: caps_offset is not looked at */
    {
        g_autoptr(GByteArray) l =
            link_msg_full(2, 2, 0, SPICE_CHANNEL_MAIN, 0, 0, 0, 0, 0xFFFF, -1);
        new_session(f, FALSE);
        feed(f, l->data, l->len);
        expect_link_reply(f);
    }
}

static void
test_link_other_channel(F *f, gconstpointer data)
{
    static const guint8 types[] = {SPICE_CHANNEL_DISPLAY, SPICE_CHANNEL_INPUTS,
                                   SPICE_CHANNEL_PLAYBACK, SPICE_CHANNEL_USBREDIR, 200};

    for (guint i = 0; i < G_N_ELEMENTS(types); i++) {
        g_autoptr(GByteArray) l =
            link_msg_full(2, 2, 12345, types[i], 1, 0xB, 1, 0, 18, -1);
        new_session(f, FALSE);
        feed(f, l->data, l->len);
        /* a clear error, never a silent hang (the reference just closes) */
        expect_link_error(f, SPICE_LINK_ERR_CHANNEL_NOT_AVAILABLE);
    }
}

static void
test_link_connection_id(F *f, gconstpointer data)
{
    g_autoptr(GByteArray) l =
        link_msg_full(2, 2, 0xDEADBEEF, SPICE_CHANNEL_MAIN, 1, 0xB, 1, 0xF, 18, -1);

    /* no migration: a main link with a connection id is a new session with INIT */
    new_session(f, FALSE);
    feed(f, l->data, l->len);
    expect_link_reply(f);
    send_mech(f, 1);
    send_ticket(f, "secret", 6);
    expect_result(f, 0);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_INIT));
}

/* ==================================================================================
 * auth
 * ================================================================================== */

static void
link_and_mech(F *f)
{
    g_autoptr(GByteArray) l = link_msg(CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);

    f->mini = TRUE;
    new_session(f, FALSE);
    feed(f, l->data, l->len);
    expect_link_reply(f);
    send_mech(f, SPICE_COMMON_CAP_AUTH_SPICE);
}

static void
expect_denied(F *f)
{
    expect_result(f, SPICE_LINK_ERR_PERMISSION_DENIED);
    g_assert_cmpuint(f->out->len, ==, 0);
    g_assert_true(vmc_session_is_done(f->s));
    g_assert_cmpuint(vmc_session_get_client_id(f->s), ==, 0); /* never registered */
}

static void
test_ticket_ok(F *f, gconstpointer data)
{
    /* with and without the trailing NUL */
    link_and_mech(f);
    send_ticket(f, "secret", 6);
    expect_result(f, 0);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_INIT));
    g_assert_cmpuint(f->admitted, ==, 1);

    link_and_mech(f);
    send_ticket(f, "secret\0", 7);
    expect_result(f, 0);
    /* bytes after the NUL do not count either (strcmp) */
    link_and_mech(f);
    send_ticket(f, "secret\0junk", 11);
    expect_result(f, 0);
}

static void
test_ticket_wrong(F *f, gconstpointer data)
{
    link_and_mech(f);
    send_ticket(f, "secreT", 7);
    expect_denied(f);
}

static void
test_ticket_variants_denied(F *f, gconstpointer data)
{
    const char *cases[] = {"", "secre", "secret!", "Secret"};
    char longpw[80];

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        teardown(f, NULL);
        setup(f, NULL);
        link_and_mech(f);
        send_ticket(f, cases[i], strlen(cases[i]) + 1);
        expect_result(f, 7);
    }
    /* L4: a plaintext over 60 bytes never matches, even when it starts with the password */
    memset(longpw, 'a', sizeof(longpw));
    longpw[70] = '\0';
    teardown(f, NULL);
    setup(f, NULL);
    f->cfg.password = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; /* 60 */
    link_and_mech(f);
    send_ticket(f, longpw, 71);
    expect_result(f, 7);
    link_and_mech(f);
    send_ticket(f, longpw + 10, 61); /* exactly the 60 bytes: ok */
    expect_result(f, 0);
}

static void
test_ticket_undecryptable(F *f, gconstpointer data)
{
    guint8 t[128];

    /* garbage */
    link_and_mech(f);
    memset(t, 0x5a, sizeof(t));
    feed(f, t, sizeof(t));
    expect_denied(f);
    /* OAEP with SHA-256: the reference and we only take SHA-1 */
    teardown(f, NULL);
    setup(f, NULL);
    link_and_mech(f);
    encrypt_md(f, (const guint8 *)"secret", 7, EVP_sha256(), t);
    feed(f, t, sizeof(t));
    expect_denied(f);
    /* even with ticketing off an undecryptable ticket is refused */
    teardown(f, NULL);
    setup(f, NULL);
    f->cfg.ticketing = FALSE;
    link_and_mech(f);
    memset(t, 0x11, sizeof(t));
    feed(f, t, sizeof(t));
    expect_denied(f);
}

static void
test_ticket_expired(F *f, gconstpointer data)
{
    f->cfg.password_expiry_us = T0 + 10 * G_USEC_PER_SEC;
    link_and_mech(f);
    vmc_session_tick(f->s, T0 + 10 * G_USEC_PER_SEC); /* at the instant: still valid */
    send_ticket(f, "secret", 7);
    expect_result(f, 0);

    link_and_mech(f);
    vmc_session_tick(f->s, T0 + 10 * G_USEC_PER_SEC + 1);
    send_ticket(f, "secret", 7);
    expect_denied(f);
}

static void
test_ticket_no_password(F *f, gconstpointer data)
{
    /* ticketing on without a password: every ticket is refused */
    f->cfg.password = NULL;
    link_and_mech(f);
    send_ticket(f, "", 1);
    expect_denied(f);
    f->cfg.password = "";
    link_and_mech(f);
    send_ticket(f, "", 1);
    expect_result(f, 7);
}

static void
test_ticket_disabled(F *f, gconstpointer data)
{
    f->cfg.ticketing = FALSE;
    f->cfg.password = NULL;
    link_and_mech(f);
    send_ticket(f, "anything", 9);
    expect_result(f, 0);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_INIT));
}

static void
test_ticket_skip_auth(F *f, gconstpointer data)
{
    link_and_mech(f);
    vmc_session_set_skip_auth(f->s, TRUE);
    send_ticket(f, "not the password", 17);
    expect_result(f, 0);
}

static void
test_auth_no_selection(F *f, gconstpointer data)
{
    /* no AUTH_SELECTION cap: the ticket follows the reply directly (item 5) */
    g_autoptr(GByteArray) l = link_msg(1u << SPICE_COMMON_CAP_MINI_HEADER, 0);

    new_session(f, FALSE);
    feed(f, l->data, l->len);
    expect_link_reply(f);
    send_ticket(f, "secret", 7);
    expect_result(f, 0);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_INIT));
}

static void
test_auth_mechanism(F *f, gconstpointer data)
{
    static const guint32 mechs[] = {0, 2 /* SASL: not offered */, 5, 0xFFFFFFFF};

    for (guint i = 0; i < G_N_ELEMENTS(mechs); i++) {
        g_autoptr(GByteArray) l = link_msg(CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
        new_session(f, FALSE);
        feed(f, l->data, l->len);
        expect_link_reply(f);
        send_mech(f, mechs[i]);
        /* a second header + reply, INVALID_DATA (item 6) */
        expect_link_error(f, SPICE_LINK_ERR_INVALID_DATA);
    }
}

static void
test_auth_refused(F *f, gconstpointer data)
{
    g_autoptr(GBytes) b = NULL;
    const guint8 *p;
    gsize len;

    f->refuse = TRUE;
    link_and_mech(f);
    send_ticket(f, "secret", 7);
    expect_result(f, 0);
    b = expect_msg(f, SPICE_MSG_NOTIFY);
    p = g_bytes_get_data(b, &len);
    g_assert_cmpuint(len, >=, 24);
    g_assert_cmpuint(rd32(p + 8), ==, SPICE_NOTIFY_SEVERITY_ERROR);
    g_assert_cmpuint(rd32(p + 12), ==, SPICE_NOTIFY_VISIBILITY_HIGH);
    g_assert_cmpuint(rd32(p + 20), ==, len - 25);
    g_assert_cmpstr((const char *)p + 24, ==, "server full (1 client, --max-clients 1)");
    g_assert_true(vmc_session_is_done(f->s));
    g_assert_cmpuint(vmc_session_get_client_id(f->s), ==, 0);
}

/* ==================================================================================
 * main channel
 * ================================================================================== */

static void
test_main_init(F *f, gconstpointer data)
{
    VmcMainInit in;
    g_autoptr(GBytes) name = NULL;
    g_autoptr(GBytes) uuid = NULL;
    static const guint8 u[16] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
                                 1,    2,    3,    4,    5,    6,    7,    8};
    static const guint8 name_body[] = {8, 0, 0, 0, 'g', 'u', 'e', 's', 't', '-', '1', 0};

    in = connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    g_assert_cmpuint(in.session_id, !=, 0);
    g_assert_cmpuint(in.session_id, ==, vmc_session_get_session_id(f->s));
    g_assert_cmpuint(in.display_channels_hint, ==, 0);
    g_assert_cmpuint(in.supported_mouse_modes, ==, SPICE_MOUSE_MODE_SERVER);
    g_assert_cmpuint(in.current_mouse_mode, ==, SPICE_MOUSE_MODE_SERVER);
    g_assert_cmpuint(in.agent_connected, ==, 0);
    g_assert_cmpuint(in.agent_tokens, ==, vmc_mux_get_agent_window(f->mux));
    g_assert_cmpuint(in.agent_tokens, ==, 10);
    g_assert_cmpuint(in.multi_media_time, ==, (guint32)(T0 / 1000 - 400));
    g_assert_cmpuint(in.ram_hint, ==, 0);
    g_assert_cmpuint(f->out->len, ==, 0); /* no NAME/UUID/SET_ACK/PING */

    /* agent connected, name and uuid set, client with NAME_AND_UUID */
    vmc_mux_guest_connected(f->mux);
    f->cfg.name = "guest-1";
    f->cfg.have_uuid = TRUE;
    memcpy(f->cfg.uuid, u, 16);
    in = connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    g_assert_cmpuint(in.agent_connected, ==, 1);
    name = expect_msg(f, SPICE_MSG_MAIN_NAME);
    g_assert_cmpmem(g_bytes_get_data(name, NULL), g_bytes_get_size(name), name_body,
                    sizeof(name_body));
    uuid = expect_msg(f, SPICE_MSG_MAIN_UUID);
    g_assert_cmpmem(g_bytes_get_data(uuid, NULL), g_bytes_get_size(uuid), u, 16);
    g_assert_cmpuint(f->out->len, ==, 0);

    /* without the cap: neither */
    connect_client(f, CAPS_SPICE_GTK_COMMON, 1u << SPICE_MAIN_CAP_AGENT_CONNECTED_TOKENS);
    g_assert_cmpuint(f->out->len, ==, 0);
}

static void
test_main_full_header(F *f, gconstpointer data)
{
    g_autoptr(GBytes) list = NULL;
    g_autoptr(GBytes) cancel = NULL;

    f->cfg.name = "n";
    /* no MINI_HEADER: 18-byte headers both ways, our serials 1, 2, ... */
    connect_client(f, (1u << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION), 0x0F);
    g_assert_false(f->mini);
    g_assert_cmpuint(f->serial, ==, 1); /* INIT was serial 1 */
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_NAME)); /* 2 */
    send_msg(f, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0, 0);
    list = expect_msg(f, SPICE_MSG_MAIN_CHANNELS_LIST); /* 3 */
    g_assert_cmpuint(g_bytes_get_size(list), ==, 4);
    send_msg(f, SPICE_MSGC_MAIN_MIGRATE_CONNECTED, NULL, 0, 0);
    cancel = expect_msg(f, SPICE_MSG_MAIN_MIGRATE_CANCEL); /* 4 */
    g_assert_cmpuint(f->serial, ==, 4);
}

static void
test_main_attach_channels(F *f, gconstpointer data)
{
    g_autoptr(GBytes) list = NULL;
    g_autofree guint8 *big = g_malloc0(26624);

    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    send_msg(f, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0, 0);
    list = expect_msg(f, SPICE_MSG_MAIN_CHANNELS_LIST);
    /* we serve only main: an empty list */
    g_assert_cmpmem(g_bytes_get_data(list, NULL), g_bytes_get_size(list), "\0\0\0\0", 4);
    /* a 26624-byte body is fine */
    send_msg(f, SPICE_MSGC_MAIN_ATTACH_CHANNELS, big, 26624, 26624);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_CHANNELS_LIST));
    expect_silence(f);
}

static void
test_main_no_reply(F *f, gconstpointer data)
{
    guint8 b[16] = {0};

    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    /* items 14, 15: no reply, no disconnect */
    send_msg(f, SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST, (const guint8 *)"\x02\x00", 2, 2);
    send_msg(f, SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST, (const guint8 *)"\x01\x00", 2, 2);
    send_msg(f, SPICE_MSGC_ACK_SYNC, b, 4, 4);
    send_msg(f, SPICE_MSGC_ACK, NULL, 0, 0);
    send_msg(f, SPICE_MSGC_DISCONNECTING, b, 12, 12);
    send_msg(f, SPICE_MSGC_PONG, b, 12, 12); /* unknown id */
    send_msg(f, SPICE_MSGC_MAIN_MIGRATE_END, NULL, 0, 0);
    send_msg(f, SPICE_MSGC_MAIN_MIGRATE_CONNECT_ERROR, NULL, 0, 0);
    /* trailing bytes past a fixed layout are ignored */
    send_msg(f, SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST, b, 16, 16);
    expect_silence(f);
}

static void
test_main_migrate(F *f, gconstpointer data)
{
    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    send_msg(f, SPICE_MSGC_MAIN_MIGRATE_CONNECTED, NULL, 0, 0);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_MIGRATE_CANCEL));
    send_msg(f, SPICE_MSGC_MAIN_MIGRATE_CONNECTED_SEAMLESS, NULL, 0, 0);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_MIGRATE_CANCEL));
    send_u32_msg(f, SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS, 2);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_MIGRATE_DST_SEAMLESS_NACK));
    /* version 1 aborts the reference; here it is a NACK too */
    send_u32_msg(f, SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS, 1);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_MIGRATE_DST_SEAMLESS_NACK));
    expect_silence(f);
}

typedef struct {
    guint16 type;
    guint32 size; /* declared */
    gsize sent;   /* body bytes actually sent */
} BadMsg;

static void
test_main_disconnect(F *f, gconstpointer data)
{
    /* item 16 and M1/M2: closed at the header where the size or type is wrong, before
     * any body byte (nothing is sent after the header for the oversized ones) */
    static const BadMsg cases[] = {
        {SPICE_MSGC_MAIN_CLIENT_INFO, 8, 8},
        {SPICE_MSGC_MAIN_QUALITY_INDICATOR, 1, 1},
        {113, 0, 0},
        {0, 0, 0},
        {0xFFFF, 4, 0},
        {SPICE_MSGC_MAIN_AGENT_START, 2, 2},
        {SPICE_MSGC_MAIN_AGENT_TOKEN, 3, 0},
        {SPICE_MSGC_MAIN_AGENT_DATA, 0, 0},
        {SPICE_MSGC_MAIN_AGENT_DATA, 2049, 0},
        {SPICE_MSGC_MAIN_AGENT_DATA, 0x7FFFFFF8, 0},
        {SPICE_MSGC_MAIN_AGENT_DATA, 0x80000000, 0},
        {SPICE_MSGC_MAIN_AGENT_DATA, 0xFFFFFFF8, 0},
        {SPICE_MSGC_MAIN_AGENT_DATA, 0xFFFFFFFF, 0},
        {SPICE_MSGC_MAIN_ATTACH_CHANNELS, 26625, 0},
        {SPICE_MSGC_PONG, 0xFFFFFFFF, 0},
        {SPICE_MSGC_MIGRATE_FLUSH_MARK, 0, 0},
        {SPICE_MSGC_MIGRATE_DATA, 4, 4},
    };
    guint8 body[16] = {0};

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
        send_msg(f, cases[i].type, body, cases[i].size, cases[i].sent);
        expect_closed(f);
    }
}

static void
test_main_agent(F *f, gconstpointer data)
{
    /* AGENT_START + AGENT_DATA reach the guest as one chunk {port 1, len} + body */
    guint8 msg[20 + 8];
    GOutputVector v[8];
    g_autoptr(GByteArray) g = g_byte_array_new();
    guint n;

    vmc_mux_guest_connected(f->mux);
    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    send_u32_msg(f, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF);
    memset(msg, 0, sizeof(msg));
    msg[0] = 1;                        /* protocol */
    msg[4] = VD_AGENT_MAX_CLIPBOARD;   /* type */
    msg[16] = 4;                       /* size */
    msg[20] = 0x10;
    send_msg(f, SPICE_MSGC_MAIN_AGENT_DATA, msg, 24, 24);
    expect_silence(f);
    n = vmc_mux_guest_output_vec(f->mux, v, G_N_ELEMENTS(v));
    for (guint i = 0; i < n; i++)
        g_byte_array_append(g, v[i].buffer, (guint)v[i].size);
    g_assert_cmpuint(g->len, ==, 8 + 24);
    g_assert_cmpuint(rd32(g->data), ==, 1);
    g_assert_cmpuint(rd32(g->data + 4), ==, 24);
    g_assert_cmpmem(g->data + 8, 24, msg, 24);

    /* M3: a fresh message shorter than its header is a protocol error */
    send_msg(f, SPICE_MSGC_MAIN_AGENT_DATA, msg, 19, 19);
    expect_closed(f);
}

static void
test_main_agent_flow(F *f, gconstpointer data)
{
    guint8 msg[24];

    vmc_mux_guest_connected(f->mux);
    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    send_u32_msg(f, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF);
    /* M6: AGENT_TOKEN 0xFFFFFFFF, repeated: nothing wraps, nothing closes */
    for (int i = 0; i < 3; i++)
        send_u32_msg(f, SPICE_MSGC_MAIN_AGENT_TOKEN, 0xFFFFFFFF);
    send_u32_msg(f, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF); /* twice */
    expect_silence(f);
    /* M5: more AGENT_DATA than the 10-token grant while the guest does not read */
    memset(msg, 0, sizeof(msg));
    msg[0] = 1;
    msg[4] = VD_AGENT_MAX_CLIPBOARD;
    msg[16] = 4;
    for (int i = 0; i < 10; i++)
        send_msg(f, SPICE_MSGC_MAIN_AGENT_DATA, msg, 24, 24);
    expect_silence(f);
    send_msg(f, SPICE_MSGC_MAIN_AGENT_DATA, msg, 24, 24);
    expect_closed(f);
}

static void
test_main_agent_before_start(F *f, gconstpointer data)
{
    /* M4: AGENT_DATA before AGENT_START: discarded, no allocation from its header */
    guint8 msg[24] = {1, 0, 0, 0, 0x34, 0x12, 0, 0, 0, 0, 0, 0, /* unknown type 0x1234 */
                      0, 0, 0, 0, 0xF8, 0xFF, 0xFF, 0xFF};

    vmc_mux_guest_connected(f->mux);
    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    send_msg(f, SPICE_MSGC_MAIN_AGENT_DATA, msg, 24, 24);
    g_assert_cmpuint(vmc_mux_guest_output_size(f->mux), ==, 0);
    g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_ACTIVE);
}

static void
test_main_mux_output(F *f, gconstpointer data)
{
    /* a guest chunk arrives as AGENT_DATA framed after our own messages */
    static const guint8 chunk[] = {1, 0, 0, 0, 28, 0, 0, 0, /* port 1, 28 bytes */
                                   1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0,
                                   1, 0, 0, 0, 0xe7, 0x8d, 0x03, 0};
    g_autoptr(GBytes) d = NULL;
    GError *error = NULL;

    vmc_mux_guest_connected(f->mux);
    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    send_u32_msg(f, SPICE_MSGC_MAIN_AGENT_START, 0xFFFFFFFF);
    send_msg(f, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0, 0);
    g_assert_true(vmc_mux_feed_guest(f->mux, chunk, sizeof(chunk), &error));
    g_assert_no_error(error);
    g_assert_true(vmc_session_wants_write(f->s));
    drain(f);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_CHANNELS_LIST));
    d = expect_msg(f, SPICE_MSG_MAIN_AGENT_DATA);
    g_assert_cmpmem(g_bytes_get_data(d, NULL), g_bytes_get_size(d), chunk + 8, 28);
    g_assert_false(vmc_session_wants_write(f->s));
}

static void
test_main_unread_replies(F *f, gconstpointer data)
{
    g_autoptr(GByteArray) many = g_byte_array_new();

    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    /* requests whose replies are never read: bounded, then cut off */
    for (int i = 0; i < 200000; i++) {
        wr16(many, SPICE_MSGC_MAIN_ATTACH_CHANNELS);
        wr32(many, 0);
    }
    g_assert_false(vmc_session_feed(f->s, many->data, many->len));
    g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_CLOSED);
}

static void
test_split_everywhere(F *f, gconstpointer data)
{
    /* link, mechanism, ticket and messages byte by byte: same outcome */
    g_autoptr(GByteArray) l = link_msg(CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    g_autoptr(GByteArray) msgs = g_byte_array_new();
    guint8 t[128];

    new_session(f, FALSE);
    feed_bytewise(f, l->data, l->len);
    expect_link_reply(f);
    feed_bytewise(f, (const guint8 *)"\x01\0\0\0", 4);
    encrypt_md(f, (const guint8 *)"secret", 7, EVP_sha1(), t);
    feed_bytewise(f, t, 127);
    g_assert_cmpuint(f->out->len, ==, 0);
    feed_bytewise(f, t + 127, 1);
    expect_result(f, 0);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_INIT));
    wr16(msgs, SPICE_MSGC_MAIN_ATTACH_CHANNELS);
    wr32(msgs, 3);
    g_byte_array_append(msgs, (const guint8 *)"xyz", 3);
    wr16(msgs, SPICE_MSGC_MAIN_MIGRATE_CONNECTED);
    wr32(msgs, 0);
    feed_bytewise(f, msgs->data, msgs->len);
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_CHANNELS_LIST));
    g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_MIGRATE_CANCEL));
    expect_silence(f);
}

/* ==================================================================================
 * time
 * ================================================================================== */

static void
test_keepalive(F *f, gconstpointer data)
{
    const gint64 iv = f->cfg.ping_interval_us, to = 10 * G_USEC_PER_SEC;
    g_autoptr(GBytes) ping = NULL;
    const guint8 *p;
    guint8 pong[12];

    f->cfg.ping_timeout_us = to;

    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    vmc_session_free(f->s);
    /* the same on a keepalive (TCP) session */
    f->s = NULL;
    {
        g_autoptr(GByteArray) l = link_msg(CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
        f->s = vmc_session_new(&f->cfg, TRUE, f->now);
        feed(f, l->data, l->len);
        expect_link_reply(f);
        send_mech(f, 1);
        send_ticket(f, "secret", 7);
        expect_result(f, 0);
        g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_INIT));
    }
    g_assert_cmpint(vmc_session_next_deadline(f->s), ==, T0 + iv);
    vmc_session_tick(f->s, T0 + iv - 1);
    expect_silence(f);
    vmc_session_tick(f->s, T0 + iv);
    drain(f);
    ping = expect_msg(f, SPICE_MSG_PING);
    p = g_bytes_get_data(ping, NULL);
    g_assert_cmpuint(g_bytes_get_size(ping), ==, 12);
    g_assert_cmpuint(rd32(p), ==, 1);
    g_assert_cmpuint(rd32(p + 4), ==, (guint32)(T0 + iv));
    g_assert_cmpint(vmc_session_next_deadline(f->s), ==, T0 + iv + to);
    /* a PONG (any traffic) keeps it alive */
    memcpy(pong, p, 12);
    send_msg(f, SPICE_MSGC_PONG, pong, 12, 12);
    vmc_session_tick(f->s, T0 + iv + to);
    expect_silence(f);
    /* silent from now: PING 2, then closed after the timeout */
    vmc_session_tick(f->s, T0 + iv + iv);
    drain(f);
    g_bytes_unref(expect_msg(f, SPICE_MSG_PING));
    vmc_session_tick(f->s, T0 + iv + iv + to - 1);
    g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_ACTIVE);
    vmc_session_tick(f->s, T0 + iv + iv + to);
    expect_closed(f);
}

static void
test_no_keepalive_on_unix(F *f, gconstpointer data)
{
    connect_client(f, CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    g_assert_cmpint(vmc_session_next_deadline(f->s), ==, -1);
    vmc_session_tick(f->s, T0 + (gint64)3600 * G_USEC_PER_SEC);
    expect_silence(f); /* never a PING, never closed */
}

static void
test_handshake_timeout(F *f, gconstpointer data)
{
    g_autoptr(GByteArray) l = link_msg(CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);

    new_session(f, TRUE);
    feed(f, l->data, l->len);
    expect_link_reply(f);
    g_assert_cmpint(vmc_session_next_deadline(f->s), ==, T0 + f->cfg.handshake_timeout_us);
    vmc_session_tick(f->s, T0 + f->cfg.handshake_timeout_us - 1);
    g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_AUTH);
    vmc_session_tick(f->s, T0 + f->cfg.handshake_timeout_us);
    expect_closed(f);
}

static void
test_closing_timeout(F *f, gconstpointer data)
{
    GOutputVector v;

    new_session(f, FALSE);
    vmc_session_feed(f->s, (const guint8 *)"XXXX", 4);
    /* the client never reads the error reply */
    g_assert_cmpuint(vmc_session_output_vec(f->s, &v, 1), ==, 1);
    g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_CLOSING);
    g_assert_false(vmc_session_is_done(f->s));
    vmc_session_tick(f->s, vmc_session_next_deadline(f->s));
    g_assert_true(vmc_session_is_done(f->s));
}

/* ==================================================================================
 * ticket keys: a dry pool makes the link wait, never generate on this thread
 * ================================================================================== */

typedef struct {
    guint calls;
} ReadyCount;

static void
on_ready(gpointer user_data)
{
    ((ReadyCount *)user_data)->calls++;
}

/* Empties an attached pool until it answers "wait". */
static void
drain_pool(VmcTicketPool *p)
{
    for (;;) {
        VmcTicketKey *k = NULL;
        g_assert_true(vmc_ticket_pool_take_nowait(p, &k, NULL));
        if (k == NULL)
            return;
        vmc_ticket_key_free(k);
    }
}

/* Iterates `ctx` until the session has its key (bounded). */
static void
wait_for_key(F *f, GMainContext *ctx, ReadyCount *rc)
{
    gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;

    while (!vmc_session_retry_key(f->s)) {
        guint before = rc->calls;
        while (rc->calls == before) {
            g_assert_cmpint(g_get_monotonic_time(), <, deadline);
            g_main_context_iteration(ctx, TRUE);
        }
    }
    drain(f);
}

static void
test_link_key_wait(F *f, gconstpointer data)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(GByteArray) l = link_msg(CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    ReadyCount rc = {0};
    VmcTicketPool *p = vmc_ticket_pool_new(1, TRUE);
    gboolean waited = FALSE;

    vmc_ticket_pool_attach(p, ctx, on_ready, &rc);
    f->cfg.keys = p;
    /* a worker may land a key between drain_pool() and the link: try a few times */
    for (int attempt = 0; attempt < 5 && !waited; attempt++) {
        drain_pool(p);
        new_session(f, FALSE);
        feed(f, l->data, l->len);
        waited = vmc_session_waits_for_key(f->s);
        if (waited) {
            /* no reply, nothing to write, the handshake deadline still runs */
            g_assert_cmpuint(f->out->len, ==, 0);
            g_assert_false(vmc_session_wants_write(f->s));
            g_assert_cmpint(vmc_session_get_state(f->s), ==, VMC_SESSION_AUTH);
            g_assert_cmpint(vmc_session_next_deadline(f->s), ==, T0 + 30 * G_USEC_PER_SEC);
            wait_for_key(f, ctx, &rc);
            g_assert_cmpuint(rc.calls, >, 0);
        }
        g_assert_false(vmc_session_waits_for_key(f->s));
        expect_link_reply(f);
        send_mech(f, 1);
        send_ticket(f, "secret", 7);
        expect_result(f, 0);
        g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_INIT));
    }
    g_assert_true(waited);
    g_assert_cmpuint(vmc_ticket_pool_get_misses(p), >, 0);
    /* a miss doubles the target, up to the cap */
    g_assert_cmpuint(vmc_ticket_pool_get_target(p), >=, 2);
    g_assert_cmpuint(vmc_ticket_pool_get_target(p), <=, VMC_TICKET_POOL_GROW_MAX);
    vmc_session_free(g_steal_pointer(&f->s));
    vmc_ticket_pool_free(p);
    f->cfg.keys = pool;
}

/* A ticket that arrives while the reply waits for a key cannot be ours: INVALID_DATA. */
static void
test_link_ticket_before_reply(F *f, gconstpointer data)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(GByteArray) l = link_msg(CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    ReadyCount rc = {0};
    VmcTicketPool *p = vmc_ticket_pool_new(1, TRUE);
    guint8 ticket[4 + 128] = {1, 0, 0, 0};
    gboolean waited = FALSE;

    vmc_ticket_pool_attach(p, ctx, on_ready, &rc);
    f->cfg.keys = p;
    for (int attempt = 0; attempt < 5 && !waited; attempt++) {
        drain_pool(p);
        new_session(f, FALSE);
        feed(f, l->data, l->len);
        waited = vmc_session_waits_for_key(f->s);
    }
    g_assert_true(waited);
    feed(f, ticket, sizeof(ticket));
    expect_link_error(f, SPICE_LINK_ERR_INVALID_DATA);
    g_assert_false(vmc_session_waits_for_key(f->s));
    g_assert_true(vmc_session_retry_key(f->s)); /* nothing to retry */
    g_assert_cmpuint(f->out->len, ==, 0);
    vmc_session_free(g_steal_pointer(&f->s));
    vmc_ticket_pool_free(p); /* with a worker maybe still at work */
    f->cfg.keys = pool;
}

/* Not attached: take_nowait() is take() (tests, tools); keys are never handed out twice. */
static void
test_pool_nowait_unattached(void)
{
    g_autoptr(VmcTicketPool) p = vmc_ticket_pool_new(2, FALSE);
    VmcTicketKey *k[3];

    for (guint i = 0; i < G_N_ELEMENTS(k); i++) {
        k[i] = NULL;
        g_assert_true(vmc_ticket_pool_take_nowait(p, &k[i], NULL));
        g_assert_nonnull(k[i]);
    }
    g_assert_true(memcmp(vmc_ticket_key_get_public(k[0]), vmc_ticket_key_get_public(k[1]),
                         VMC_TICKET_PUBKEY_BYTES) != 0);
    g_assert_true(memcmp(vmc_ticket_key_get_public(k[1]), vmc_ticket_key_get_public(k[2]),
                         VMC_TICKET_PUBKEY_BYTES) != 0);
    g_assert_cmpuint(vmc_ticket_pool_get_misses(p), ==, 3);
    g_assert_cmpuint(vmc_ticket_pool_get_target(p), ==, 2); /* no workers, no growth */
    for (guint i = 0; i < G_N_ELEMENTS(k); i++)
        vmc_ticket_key_free(k[i]);
}

/* ==================================================================================
 * timing
 * ================================================================================== */

static void
test_link_time(F *f, gconstpointer data)
{
    /* link + ticket + INIT with a pool key ready (the server's normal case) */
    g_autoptr(GByteArray) l = link_msg(CAPS_SPICE_GTK_COMMON, CAPS_SPICE_GTK_MAIN);
    g_autoptr(VmcTicketPool) p = vmc_ticket_pool_new(16, FALSE);
    const int rounds = 16;
    gint64 total = 0;

    g_assert_true(vmc_ticket_pool_fill(p, NULL));
    while (vmc_ticket_pool_warm_one(p)) /* as the runtime does in idle time */
        ;
    g_assert_true(vmc_ticket_pool_is_warm(p));
    f->cfg.keys = p;
    for (int i = 0; i < rounds; i++) {
        guint8 t[128];
        gint64 t0, enc0, enc1;

        t0 = g_get_monotonic_time();
        new_session(f, FALSE);
        feed(f, l->data, l->len);
        expect_link_reply(f);
        send_mech(f, 1);
        enc0 = g_get_monotonic_time();
        encrypt_md(f, (const guint8 *)"secret", 7, EVP_sha1(), t); /* client-side work */
        enc1 = g_get_monotonic_time();
        feed(f, t, sizeof(t));
        expect_result(f, 0);
        g_bytes_unref(expect_msg(f, SPICE_MSG_MAIN_INIT));
        total += g_get_monotonic_time() - t0 - (enc1 - enc0);
    }
    g_test_message("server side of link + ticket + INIT: %.3f ms per link (%d links)",
                   total / 1000.0 / rounds, rounds);
    g_assert_cmpuint(vmc_ticket_pool_get_misses(p), ==, 0);
    vmc_session_free(g_steal_pointer(&f->s));
    f->cfg.keys = pool;
}

static void
test_ticket_check_unit(void)
{
    g_assert_true(vmc_ticket_check_password((const guint8 *)"pw", 2, "pw"));
    g_assert_true(vmc_ticket_check_password((const guint8 *)"pw\0x", 4, "pw"));
    g_assert_false(vmc_ticket_check_password((const guint8 *)"pw", 2, "pwx"));
    g_assert_false(vmc_ticket_check_password((const guint8 *)"pwx", 3, "pw"));
    g_assert_false(vmc_ticket_check_password((const guint8 *)"", 0, ""));
    g_assert_false(vmc_ticket_check_password((const guint8 *)"", 0, NULL));
    g_assert_false(vmc_ticket_check_password(NULL, 0, "pw"));
}

int
main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_test_summary("Main-channel session: link, ticket, INIT, main-channel messages, time");
    pool = vmc_ticket_pool_new(4, TRUE);

    g_test_add_func("/session/ticket/check", test_ticket_check_unit);
    g_test_add_func("/session/ticket/pool-nowait-unattached", test_pool_nowait_unattached);
#define ADD(path, fn) g_test_add(path, F, NULL, setup, fn, teardown)
    ADD("/session/link/reply", test_link_reply);
    ADD("/session/link/fresh-key", test_link_fresh_key);
    ADD("/session/link/bad-magic", test_link_bad_magic);
    ADD("/session/link/version", test_link_version);
    ADD("/session/link/size", test_link_size);
    ADD("/session/link/caps", test_link_caps);
    ADD("/session/link/other-channel", test_link_other_channel);
    ADD("/session/link/connection-id", test_link_connection_id);
    ADD("/session/link/key-wait", test_link_key_wait);
    ADD("/session/link/ticket-before-reply", test_link_ticket_before_reply);
    ADD("/session/ticket/ok", test_ticket_ok);
    ADD("/session/ticket/wrong", test_ticket_wrong);
    ADD("/session/ticket/variants", test_ticket_variants_denied);
    ADD("/session/ticket/undecryptable", test_ticket_undecryptable);
    ADD("/session/ticket/expired", test_ticket_expired);
    ADD("/session/ticket/no-password", test_ticket_no_password);
    ADD("/session/ticket/disabled", test_ticket_disabled);
    ADD("/session/ticket/skip-auth", test_ticket_skip_auth);
    ADD("/session/auth/no-selection", test_auth_no_selection);
    ADD("/session/auth/mechanism", test_auth_mechanism);
    ADD("/session/auth/refused", test_auth_refused);
    ADD("/session/main/init", test_main_init);
    ADD("/session/main/full-header", test_main_full_header);
    ADD("/session/main/attach-channels", test_main_attach_channels);
    ADD("/session/main/no-reply", test_main_no_reply);
    ADD("/session/main/migrate", test_main_migrate);
    ADD("/session/main/disconnect", test_main_disconnect);
    ADD("/session/main/agent", test_main_agent);
    ADD("/session/main/agent-flow", test_main_agent_flow);
    ADD("/session/main/agent-before-start", test_main_agent_before_start);
    ADD("/session/main/mux-output", test_main_mux_output);
    ADD("/session/main/unread-replies", test_main_unread_replies);
    ADD("/session/split-everywhere", test_split_everywhere);
    ADD("/session/time/keepalive", test_keepalive);
    ADD("/session/time/no-keepalive-on-unix", test_no_keepalive_on_unix);
    ADD("/session/time/handshake-timeout", test_handshake_timeout);
    ADD("/session/time/closing-timeout", test_closing_timeout);
    ADD("/session/bench/link-time", test_link_time);
#undef ADD
    ret = g_test_run();
    vmc_ticket_pool_free(pool);
    return ret;
}
