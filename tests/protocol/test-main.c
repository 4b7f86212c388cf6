/* test-main.c — main-channel message bodies and client size rules
 * (suite 'main-messages').
 *
 * The body decoders are not incremental: they take the complete body whose size
 * the data header gave. So every strict prefix of a valid body is
 * ERR_TRUNCATED (never NEED_MORE), except that a PING prefix of 12 bytes or more
 * is a PING with less padding. Trailing bytes after a fixed layout are
 * ignored, as the reference's demarshaller does. Decoders read from buffers
 * that end at a guard page; encoders write into guarded buffers of exactly the
 * capacity they are given, and must return 0 for every capacity too small.
 */
#include <string.h>

#include "protocol/vmc-header.h"
#include "protocol/vmc-main.h"
#include "vmc-test-util.h"

#define SENTINEL 0xA5

/* ------------------------------------------------------------------------ */
/* A uniform view of every body codec                                        */

/* Decoded fields in a codec-neutral form: numbers in v[], variable bytes
 * (name, message, uuid, channel pairs) in bytes[0..nbytes). */
typedef struct {
    guint64 v[8];
    guint8 bytes[256];
    gsize nbytes;
} Fields;

typedef struct {
    const char *name;
    gsize fixed; /* every body shorter than this is ERR_TRUNCATED */
    VmcDecodeResult (*decode)(const guint8 *buf, gsize len, Fields *out);
    gsize (*encode)(const Fields *in, guint8 *out, gsize cap);
    void (*random)(Fields *f);
} BodyCodec;

/* Each wrapper fills the real output with SENTINEL first and, on failure,
 * checks it was left alone (outputs are written only on success). */
#define CHECK_UNTOUCHED(r, obj)                                                                   \
    do {                                                                                          \
        if ((r) != VMC_DECODE_OK)                                                                 \
            g_assert_true(vmc_test_all_bytes_are(&(obj), sizeof(obj), SENTINEL));        \
    } while (0)

static void
put_bytes(Fields *f, const void *p, gsize n)
{
    g_assert_cmpuint(n, <=, sizeof f->bytes);
    if (n)
        memcpy(f->bytes, p, n);
    f->nbytes = n;
}

static guint32
rand32(void)
{
    return (guint32)g_test_rand_int();
}

static guint64
rand64(void)
{
    return (guint64)rand32() << 32 | rand32();
}

static void
rand_text(Fields *f, gsize max)
{
    gsize n = (gsize)g_test_rand_int_range(0, (gint32)max + 1);

    for (gsize i = 0; i < n; i++)
        f->bytes[i] = (guint8)g_test_rand_int_range(1, 256); /* no NUL inside */
    f->nbytes = n;
}

/* INIT */
static VmcDecodeResult
init_dec(const guint8 *buf, gsize len, Fields *f)
{
    VmcMainInit m;
    VmcDecodeResult r;

    memset(&m, SENTINEL, sizeof m);
    r = vmc_main_init_decode(buf, len, &m);
    CHECK_UNTOUCHED(r, m);
    if (r == VMC_DECODE_OK) {
        f->v[0] = m.session_id;
        f->v[1] = m.display_channels_hint;
        f->v[2] = m.supported_mouse_modes;
        f->v[3] = m.current_mouse_mode;
        f->v[4] = m.agent_connected;
        f->v[5] = m.agent_tokens;
        f->v[6] = m.multi_media_time;
        f->v[7] = m.ram_hint;
    }
    return r;
}

static gsize
init_enc(const Fields *f, guint8 *out, gsize cap)
{
    VmcMainInit m = {
        (guint32)f->v[0], (guint32)f->v[1], (guint32)f->v[2], (guint32)f->v[3],
        (guint32)f->v[4], (guint32)f->v[5], (guint32)f->v[6], (guint32)f->v[7],
    };

    return vmc_main_init_encode(&m, out, cap);
}

static void
init_rand(Fields *f)
{
    for (int i = 0; i < 8; i++)
        f->v[i] = rand32();
}

/* CHANNELS_LIST: v[0] = n, bytes = type/id pairs (at most 128 kept) */
static VmcDecodeResult
chlist_dec(const guint8 *buf, gsize len, Fields *f)
{
    VmcChannelId ids[128];
    guint32 n;
    VmcDecodeResult r;

    memset(ids, SENTINEL, sizeof ids);
    n = 0xA5A5A5A5;
    r = vmc_main_channels_list_decode(buf, len, ids, G_N_ELEMENTS(ids), &n);
    CHECK_UNTOUCHED(r, ids);
    CHECK_UNTOUCHED(r, n);
    if (r == VMC_DECODE_OK) {
        f->v[0] = n;
        f->nbytes = 2 * MIN(n, G_N_ELEMENTS(ids));
        for (guint32 i = 0; i < MIN(n, G_N_ELEMENTS(ids)); i++) {
            f->bytes[2 * i] = ids[i].type;
            f->bytes[2 * i + 1] = ids[i].id;
        }
        /* entries past n are left alone */
        if (n < G_N_ELEMENTS(ids))
            g_assert_true(vmc_test_all_bytes_are(&ids[n], sizeof ids - n * sizeof ids[0],
                                                 SENTINEL));
    }
    return r;
}

static gsize
chlist_enc(const Fields *f, guint8 *out, gsize cap)
{
    VmcChannelId ids[128];

    g_assert_cmpuint(f->v[0], <=, G_N_ELEMENTS(ids));
    for (guint32 i = 0; i < f->v[0]; i++) {
        ids[i].type = f->bytes[2 * i];
        ids[i].id = f->bytes[2 * i + 1];
    }
    return vmc_main_channels_list_encode(ids, (guint32)f->v[0], out, cap);
}

static void
chlist_rand(Fields *f)
{
    f->v[0] = (guint64)g_test_rand_int_range(0, 128);
    f->nbytes = 2 * f->v[0];
    for (gsize i = 0; i < f->nbytes; i++)
        f->bytes[i] = (guint8)g_test_rand_int();
}

/* NAME: v[0] = name_len (with NUL), bytes = name without NUL */
static VmcDecodeResult
name_dec(const guint8 *buf, gsize len, Fields *f)
{
    const char *name;
    guint32 name_len;
    VmcDecodeResult r;

    memset(&name, SENTINEL, sizeof name);
    memset(&name_len, SENTINEL, sizeof name_len);
    r = vmc_main_name_decode(buf, len, &name, &name_len);
    CHECK_UNTOUCHED(r, name);
    CHECK_UNTOUCHED(r, name_len);
    if (r == VMC_DECODE_OK) {
        g_assert_true((const guint8 *)name == buf + 4); /* borrowed */
        g_assert_cmpint(name[name_len - 1], ==, 0);
        f->v[0] = name_len;
        put_bytes(f, name, name_len - 1);
    }
    return r;
}

static gsize
name_enc(const Fields *f, guint8 *out, gsize cap)
{
    g_autofree char *s = g_strndup((const char *)f->bytes, f->nbytes);

    return vmc_main_name_encode(s, out, cap);
}

static void
name_rand(Fields *f)
{
    rand_text(f, 200);
    f->v[0] = f->nbytes + 1;
}

/* UUID: bytes = 16 bytes */
static VmcDecodeResult
uuid_dec(const guint8 *buf, gsize len, Fields *f)
{
    guint8 uuid[16];
    VmcDecodeResult r;

    memset(uuid, SENTINEL, sizeof uuid);
    r = vmc_main_uuid_decode(buf, len, uuid);
    CHECK_UNTOUCHED(r, uuid);
    if (r == VMC_DECODE_OK)
        put_bytes(f, uuid, 16);
    return r;
}

static gsize
uuid_enc(const Fields *f, guint8 *out, gsize cap)
{
    g_assert_cmpuint(f->nbytes, ==, 16);
    return vmc_main_uuid_encode(f->bytes, out, cap);
}

static void
uuid_rand(Fields *f)
{
    for (int i = 0; i < 16; i++)
        f->bytes[i] = (guint8)g_test_rand_int();
    f->nbytes = 16;
}

/* PING / PONG: v = id, timestamp, padding */
static VmcDecodeResult
ping_dec(const guint8 *buf, gsize len, Fields *f)
{
    VmcPing p;
    VmcDecodeResult r;

    memset(&p, SENTINEL, sizeof p);
    r = vmc_ping_decode(buf, len, &p);
    CHECK_UNTOUCHED(r, p);
    if (r == VMC_DECODE_OK) {
        f->v[0] = p.id;
        f->v[1] = p.timestamp;
        f->v[2] = p.padding;
    }
    return r;
}

static gsize
ping_enc(const Fields *f, guint8 *out, gsize cap)
{
    VmcPing p = { (guint32)f->v[0], f->v[1], (guint32)f->v[2] };

    return vmc_ping_encode(&p, out, cap);
}

static void
ping_rand(Fields *f)
{
    f->v[0] = rand32();
    f->v[1] = rand64();
    f->v[2] = (guint64)g_test_rand_int_range(0, 64);
}

static VmcDecodeResult
pong_dec(const guint8 *buf, gsize len, Fields *f)
{
    VmcPing p;
    VmcDecodeResult r;

    memset(&p, SENTINEL, sizeof p);
    r = vmc_pong_decode(buf, len, &p);
    CHECK_UNTOUCHED(r, p);
    if (r == VMC_DECODE_OK) {
        f->v[0] = p.id;
        f->v[1] = p.timestamp;
        f->v[2] = p.padding;
    }
    return r;
}

static gsize
pong_enc(const Fields *f, guint8 *out, gsize cap)
{
    /* padding is ignored by the encoder: pass garbage to prove it */
    VmcPing p = { (guint32)f->v[0], f->v[1], 1000 };

    return vmc_pong_encode(&p, out, cap);
}

static void
pong_rand(Fields *f)
{
    f->v[0] = rand32();
    f->v[1] = rand64();
}

/* MOUSE_MODE: v = supported, current */
static VmcDecodeResult
mouse_mode_dec(const guint8 *buf, gsize len, Fields *f)
{
    VmcMouseMode m;
    VmcDecodeResult r;

    memset(&m, SENTINEL, sizeof m);
    r = vmc_main_mouse_mode_decode(buf, len, &m);
    CHECK_UNTOUCHED(r, m);
    if (r == VMC_DECODE_OK) {
        f->v[0] = m.supported_modes;
        f->v[1] = m.current_mode;
    }
    return r;
}

static gsize
mouse_mode_enc(const Fields *f, guint8 *out, gsize cap)
{
    VmcMouseMode m = { (guint16)f->v[0], (guint16)f->v[1] };

    return vmc_main_mouse_mode_encode(&m, out, cap);
}

static void
mouse_mode_rand(Fields *f)
{
    f->v[0] = (guint64)g_test_rand_int_range(0, 0x10000);
    f->v[1] = (guint64)g_test_rand_int_range(0, 0x10000);
}

/* NOTIFY: v = time_stamp, severity, visibility, what, message_len; bytes = message */
static VmcDecodeResult
notify_dec(const guint8 *buf, gsize len, Fields *f)
{
    VmcNotify n;
    VmcDecodeResult r;

    memset(&n, SENTINEL, sizeof n);
    r = vmc_notify_decode(buf, len, &n);
    CHECK_UNTOUCHED(r, n);
    if (r == VMC_DECODE_OK) {
        g_assert_true((const guint8 *)n.message == buf + 24);
        g_assert_cmpint(n.message[n.message_len], ==, 0);
        f->v[0] = n.time_stamp;
        f->v[1] = n.severity;
        f->v[2] = n.visibility;
        f->v[3] = n.what;
        f->v[4] = n.message_len;
        put_bytes(f, n.message, n.message_len);
    }
    return r;
}

static gsize
notify_enc(const Fields *f, guint8 *out, gsize cap)
{
    VmcNotify n = {
        f->v[0], (guint32)f->v[1], (guint32)f->v[2], (guint32)f->v[3], (guint32)f->nbytes,
        f->nbytes ? (const char *)f->bytes : NULL,
    };

    return vmc_notify_encode(&n, out, cap);
}

static void
notify_rand(Fields *f)
{
    f->v[0] = rand64();
    f->v[1] = rand32();
    f->v[2] = rand32();
    f->v[3] = rand32();
    rand_text(f, 200);
    f->v[4] = f->nbytes;
}

/* SET_ACK: v = generation, window */
static VmcDecodeResult
set_ack_dec(const guint8 *buf, gsize len, Fields *f)
{
    VmcSetAck s;
    VmcDecodeResult r;

    memset(&s, SENTINEL, sizeof s);
    r = vmc_set_ack_decode(buf, len, &s);
    CHECK_UNTOUCHED(r, s);
    if (r == VMC_DECODE_OK) {
        f->v[0] = s.generation;
        f->v[1] = s.window;
    }
    return r;
}

static gsize
set_ack_enc(const Fields *f, guint8 *out, gsize cap)
{
    VmcSetAck s = { (guint32)f->v[0], (guint32)f->v[1] };

    return vmc_set_ack_encode(&s, out, cap);
}

static void
two_u32_rand(Fields *f)
{
    f->v[0] = rand32();
    f->v[1] = rand32();
}

/* one u32: AGENT_CONNECTED_TOKENS, AGENT_DISCONNECTED, AGENT_TOKEN, AGENT_START, ACK_SYNC */
static VmcDecodeResult
u32_dec(const guint8 *buf, gsize len, Fields *f)
{
    guint32 v;
    VmcDecodeResult r;

    memset(&v, SENTINEL, sizeof v);
    r = vmc_u32_body_decode(buf, len, &v);
    CHECK_UNTOUCHED(r, v);
    if (r == VMC_DECODE_OK)
        f->v[0] = v;
    return r;
}

static gsize
u32_enc(const Fields *f, guint8 *out, gsize cap)
{
    return vmc_u32_body_encode((guint32)f->v[0], out, cap);
}

static void
u32_rand(Fields *f)
{
    f->v[0] = rand32();
}

/* DISCONNECTING: v = time_stamp, reason */
static VmcDecodeResult
disconnecting_dec(const guint8 *buf, gsize len, Fields *f)
{
    VmcDisconnecting d;
    VmcDecodeResult r;

    memset(&d, SENTINEL, sizeof d);
    r = vmc_disconnecting_decode(buf, len, &d);
    CHECK_UNTOUCHED(r, d);
    if (r == VMC_DECODE_OK) {
        f->v[0] = d.time_stamp;
        f->v[1] = d.reason;
    }
    return r;
}

static gsize
disconnecting_enc(const Fields *f, guint8 *out, gsize cap)
{
    VmcDisconnecting d = { f->v[0], (guint32)f->v[1] };

    return vmc_disconnecting_encode(&d, out, cap);
}

static void
disconnecting_rand(Fields *f)
{
    f->v[0] = rand64();
    f->v[1] = rand32();
}

/* MOUSE_MODE_REQUEST: v = mode */
static VmcDecodeResult
mode_req_dec(const guint8 *buf, gsize len, Fields *f)
{
    guint16 mode;
    VmcDecodeResult r;

    memset(&mode, SENTINEL, sizeof mode);
    r = vmc_main_mouse_mode_request_decode(buf, len, &mode);
    CHECK_UNTOUCHED(r, mode);
    if (r == VMC_DECODE_OK)
        f->v[0] = mode;
    return r;
}

static gsize
mode_req_enc(const Fields *f, guint8 *out, gsize cap)
{
    return vmc_main_mouse_mode_request_encode((guint16)f->v[0], out, cap);
}

static void
mode_req_rand(Fields *f)
{
    f->v[0] = (guint64)g_test_rand_int_range(0, 0x10000);
}

/* CLIENT_INFO: v = cache_size */
static VmcDecodeResult
client_info_dec(const guint8 *buf, gsize len, Fields *f)
{
    guint64 v;
    VmcDecodeResult r;

    memset(&v, SENTINEL, sizeof v);
    r = vmc_main_client_info_decode(buf, len, &v);
    CHECK_UNTOUCHED(r, v);
    if (r == VMC_DECODE_OK)
        f->v[0] = v;
    return r;
}

static gsize
client_info_enc(const Fields *f, guint8 *out, gsize cap)
{
    return vmc_main_client_info_encode(f->v[0], out, cap);
}

static void
client_info_rand(Fields *f)
{
    f->v[0] = rand64();
}

static const BodyCodec codec_init = { "init", 32, init_dec, init_enc, init_rand };
static const BodyCodec codec_chlist = { "channels-list", 4, chlist_dec, chlist_enc, chlist_rand };
static const BodyCodec codec_name = { "name", 4, name_dec, name_enc, name_rand };
static const BodyCodec codec_uuid = { "uuid", 16, uuid_dec, uuid_enc, uuid_rand };
static const BodyCodec codec_ping = { "ping", 12, ping_dec, ping_enc, ping_rand };
static const BodyCodec codec_mouse_mode = {
    "mouse-mode", 4, mouse_mode_dec, mouse_mode_enc, mouse_mode_rand,
};
static const BodyCodec codec_notify = { "notify", 24, notify_dec, notify_enc, notify_rand };
static const BodyCodec codec_set_ack = { "set-ack", 8, set_ack_dec, set_ack_enc, two_u32_rand };
static const BodyCodec codec_u32 = { "u32-body", 4, u32_dec, u32_enc, u32_rand };
static const BodyCodec codec_pong = { "pong", 12, pong_dec, pong_enc, pong_rand };
static const BodyCodec codec_disconnecting = {
    "disconnecting", 12, disconnecting_dec, disconnecting_enc, disconnecting_rand,
};
static const BodyCodec codec_mode_req = {
    "mouse-mode-request", 2, mode_req_dec, mode_req_enc, mode_req_rand,
};
static const BodyCodec codec_client_info = {
    "client-info", 8, client_info_dec, client_info_enc, client_info_rand,
};

static const BodyCodec *const all_codecs[] = {
    &codec_init, &codec_chlist, &codec_name, &codec_uuid, &codec_ping, &codec_mouse_mode,
    &codec_notify, &codec_set_ack, &codec_u32, &codec_pong, &codec_disconnecting,
    &codec_mode_req, &codec_client_info,
};

static VmcDecodeResult
guarded_body_decode(const BodyCodec *c, const guint8 *data, gsize len, Fields *out)
{
    guint8 *g = vmc_test_guarded_dup(data, len);
    VmcDecodeResult r;

    memset(out, 0, sizeof *out);
    r = c->decode(g, len, out);
    vmc_test_guarded_free(g, len);
    return r;
}

static void
assert_fields_eq(const Fields *a, const Fields *b)
{
    for (int i = 0; i < 8; i++)
        g_assert_cmphex(a->v[i], ==, b->v[i]);
    g_assert_cmpmem(a->bytes, a->nbytes, b->bytes, b->nbytes);
}

/* Encodes `f` into guarded buffers of every capacity up to `need` + 1: only
 * capacities >= need succeed, and all give the same bytes. Returns them. */
static GBytes *
encode_all_caps(const BodyCodec *c, const Fields *f, gsize need)
{
    GBytes *result = NULL;
    g_autofree guint8 *zero = g_malloc0(need + 2);

    for (gsize cap = 0; cap <= need + 1; cap++) {
        guint8 *out = vmc_test_guarded_dup(zero, cap);
        gsize n = c->encode(f, out, cap);

        g_assert_cmpuint(n, ==, cap >= need ? need : 0);
        if (n && !result)
            result = g_bytes_new(out, n);
        else if (n)
            g_assert_cmpmem(out, n, g_bytes_get_data(result, NULL), g_bytes_get_size(result));
        vmc_test_guarded_free(out, cap);
    }
    return result;
}

/* ------------------------------------------------------------------------ */
/* Annotated body vectors                                                    */

typedef struct {
    const char *path;
    const BodyCodec *codec;
    const char *hex;
    VmcDecodeResult expect;
    gsize content;   /* bytes that matter; trailing ones after them are ignored (0 = all) */
    guint64 v[8];
    const char *text; /* expected variable bytes as text (name, message) */
    const char *bytes_hex; /* or as hex (uuid, channel pairs) */
} BodyVector;

#define NOTIFY_MSG "keyboard channel is insecure"

static const BodyVector body_vectors[] = {
    /* ---- server -> client ---- */
    /* INIT as the reference sends it without QXL, agent attached [V]:
     * session_id | display hint | mouse modes | current | agent | tokens | mm_time | ram */
    { "s2c/init-reference", &codec_init,
      "67458b6b | 00000000 | 01000000 | 01000000 | 01000000 | 0a000000 | 10270000 | 00000000",
      VMC_DECODE_OK, 0, { 0x6B8B4567, 0, 1, 1, 1, 10, 10000, 0 } },
    { "s2c/init-no-agent", &codec_init,
      "01000000 | 00000000 | 01000000 | 01000000 | 00000000 | 0a000000 | ffffffff | 00000004",
      VMC_DECODE_OK, 0, { 1, 0, 1, 1, 0, 10, 0xFFFFFFFF, 0x04000000 } },
    { "s2c/init-trailing", &codec_init,
      "01000000 02000000 03000000 04000000 05000000 06000000 07000000 08000000 | ee",
      VMC_DECODE_OK, 32, { 1, 2, 3, 4, 5, 6, 7, 8 } },
    { "s2c/init-31", &codec_init,
      "01000000 02000000 03000000 04000000 05000000 06000000 07000000 080000",
      VMC_DECODE_ERR_TRUNCATED },
    /* CHANNELS_LIST on a bare server: { INPUTS, 0 } [V] */
    { "s2c/channels-list-reference", &codec_chlist, "01000000 | 03 00", VMC_DECODE_OK, 0, { 1 },
      NULL, "0300" },
    { "s2c/channels-list-empty", &codec_chlist, "00000000", VMC_DECODE_OK, 0, { 0 }, NULL, "" },
    { "s2c/channels-list-four", &codec_chlist, "04000000 | 02 00 | 04 00 | 03 00 | 09 01",
      VMC_DECODE_OK, 0, { 4 }, NULL, "0200 0400 0300 0901" },
    { "s2c/channels-list-trailing", &codec_chlist, "01000000 | 05 00 | ff", VMC_DECODE_OK, 6,
      { 1 }, NULL, "0500" },
    { "s2c/channels-list-short-by-one", &codec_chlist, "02000000 | 02 00 | 03",
      VMC_DECODE_ERR_TRUNCATED },
    { "s2c/channels-list-n-huge", &codec_chlist, "ffffffff | 02 00", VMC_DECODE_ERR_TRUNCATED },
    { "s2c/channels-list-n-0x80000000", &codec_chlist, "00000080 | 02 00 02 00",
      VMC_DECODE_ERR_TRUNCATED },
    { "s2c/channels-list-3-bytes", &codec_chlist, "010000", VMC_DECODE_ERR_TRUNCATED },
    /* NAME: name_len counts the NUL */
    { "s2c/name", &codec_name, "07000000 | 66 65 64 6f 72 61 00", VMC_DECODE_OK, 0, { 7 },
      "fedora" },
    { "s2c/name-empty", &codec_name, "01000000 | 00", VMC_DECODE_OK, 0, { 1 }, "" },
    { "s2c/name-trailing", &codec_name, "03000000 | 76 6d 00 | aa bb", VMC_DECODE_OK, 7, { 3 },
      "vm" },
    { "s2c/name-len-0", &codec_name, "00000000", VMC_DECODE_ERR_INVALID },
    { "s2c/name-no-nul", &codec_name, "02000000 | 76 6d", VMC_DECODE_ERR_INVALID },
    { "s2c/name-len-past-end", &codec_name, "08000000 | 76 6d 00", VMC_DECODE_ERR_TRUNCATED },
    { "s2c/name-len-max", &codec_name, "ffffffff | 76 6d 00", VMC_DECODE_ERR_TRUNCATED },
    { "s2c/name-2-bytes", &codec_name, "0100", VMC_DECODE_ERR_TRUNCATED },
    /* UUID */
    { "s2c/uuid", &codec_uuid, "c4d1f3a2 5b6e 4f70 8a9b 0c1d2e3f4a5b", VMC_DECODE_OK, 0, { 0 },
      NULL, "c4d1f3a25b6e4f708a9b0c1d2e3f4a5b" },
    { "s2c/uuid-15", &codec_uuid, "c4d1f3a2 5b6e 4f70 8a9b 0c1d2e3f4a", VMC_DECODE_ERR_TRUNCATED },
    /* PING: id | timestamp (µs) | zero padding */
    { "s2c/ping-net-test-1", &codec_ping, "01000000 | 40e2010000000000", VMC_DECODE_OK, 12,
      { 1, 123456, 0 } },
    { "s2c/ping-padding-4", &codec_ping, "03000000 | ffffffffffffffff | 00000000", VMC_DECODE_OK,
      12, { 3, G_MAXUINT64, 4 } },
    { "s2c/ping-11", &codec_ping, "01000000 | 40e20100000000", VMC_DECODE_ERR_TRUNCATED },
    /* MOUSE_MODE: supported | current */
    { "s2c/mouse-mode", &codec_mouse_mode, "0300 | 0200", VMC_DECODE_OK, 0, { 3, 2 } },
    { "s2c/mouse-mode-3", &codec_mouse_mode, "0300 02", VMC_DECODE_ERR_TRUNCATED },
    /* NOTIFY as the inputs channel makes the reference send it without TLS */
    { "s2c/notify-insecure-keyboard", &codec_notify,
      "00e40b5402000000 | 01000000 | 02000000 | 00000000 | 1c000000 |"
      "6b 65 79 62 6f 61 72 64 20 63 68 61 6e 6e 65 6c 20 69 73 20 69 6e 73 65 63 75 72 65 | 00",
      VMC_DECODE_OK, 0, { 10000000000ull, 1, 2, 0, 28 }, NOTIFY_MSG },
    { "s2c/notify-empty", &codec_notify,
      "0000000000000000 | 00000000 | 00000000 | 00000000 | 00000000 | 00", VMC_DECODE_OK, 0,
      { 0 }, "" },
    { "s2c/notify-trailing", &codec_notify,
      "0100000000000000 | 02000000 | 03000000 | 04000000 | 01000000 | 41 00 | 42 43",
      VMC_DECODE_OK, 26, { 1, 2, 3, 4, 1 }, "A" },
    { "s2c/notify-no-nul", &codec_notify,
      "0100000000000000 | 02000000 | 03000000 | 04000000 | 01000000 | 41 42",
      VMC_DECODE_ERR_INVALID },
    { "s2c/notify-nul-missing", &codec_notify,
      "0100000000000000 | 02000000 | 03000000 | 04000000 | 02000000 | 41 42",
      VMC_DECODE_ERR_TRUNCATED },
    { "s2c/notify-len-max", &codec_notify,
      "0100000000000000 | 02000000 | 03000000 | 04000000 | ffffffff | 41 00",
      VMC_DECODE_ERR_TRUNCATED },
    { "s2c/notify-23", &codec_notify,
      "0100000000000000 | 02000000 | 03000000 | 04000000 | 000000", VMC_DECODE_ERR_TRUNCATED },
    /* SET_ACK: generation | window (display-type channels; 20) */
    { "s2c/set-ack", &codec_set_ack, "01000000 | 14000000", VMC_DECODE_OK, 0, { 1, 20 } },
    { "s2c/set-ack-7", &codec_set_ack, "01000000 | 140000", VMC_DECODE_ERR_TRUNCATED },
    /* one-u32 bodies */
    { "s2c/agent-connected-tokens-10", &codec_u32, "0a000000", VMC_DECODE_OK, 0, { 10 } },
    { "s2c/agent-disconnected-0", &codec_u32, "00000000", VMC_DECODE_OK, 0, { 0 } },
    { "s2c/agent-token-unlimited", &codec_u32, "ffffffff", VMC_DECODE_OK, 0,
      { VMC_AGENT_TOKENS_UNLIMITED } },
    { "s2c/agent-token-5-trailing", &codec_u32, "05000000 | 0000", VMC_DECODE_OK, 4, { 5 } },

    /* ---- client -> server ---- */
    { "c2s/agent-start-10", &codec_u32, "0a000000", VMC_DECODE_OK, 0, { 10 } },
    /* AGENT_START with 6 bytes is accepted [V], with 2 it is not */
    { "c2s/agent-start-6-bytes", &codec_u32, "0a000000 | 0000", VMC_DECODE_OK, 4, { 10 } },
    { "c2s/agent-start-2-bytes", &codec_u32, "0a00", VMC_DECODE_ERR_TRUNCATED },
    { "c2s/agent-token-0xffffffff", &codec_u32, "ffffffff", VMC_DECODE_OK, 0, { 0xFFFFFFFF } },
    { "c2s/ack-sync-1", &codec_u32, "01000000", VMC_DECODE_OK, 0, { 1 } },
    { "c2s/pong", &codec_pong, "01000000 | 40e2010000000000", VMC_DECODE_OK, 0,
      { 1, 123456, 0 } },
    { "c2s/pong-trailing", &codec_pong, "02000000 | 0100000000000080 | 00000000", VMC_DECODE_OK,
      12, { 2, 0x8000000000000001ull, 0 } },
    { "c2s/pong-11", &codec_pong, "01000000 | 40e20100000000", VMC_DECODE_ERR_TRUNCATED },
    { "c2s/disconnecting", &codec_disconnecting, "0807060504030201 | 0b000000", VMC_DECODE_OK, 0,
      { 0x0102030405060708ull, 11 } },
    { "c2s/disconnecting-11", &codec_disconnecting, "0807060504030201 | 0b0000",
      VMC_DECODE_ERR_TRUNCATED },
    { "c2s/mouse-mode-request-client", &codec_mode_req, "0200", VMC_DECODE_OK, 0,
      { SPICE_MOUSE_MODE_CLIENT } },
    { "c2s/mouse-mode-request-server", &codec_mode_req, "0100", VMC_DECODE_OK, 0,
      { SPICE_MOUSE_MODE_SERVER } },
    { "c2s/mouse-mode-request-1-byte", &codec_mode_req, "02", VMC_DECODE_ERR_TRUNCATED },
    { "c2s/client-info", &codec_client_info, "0000100000000000", VMC_DECODE_OK, 0,
      { 0x100000 } },
    { "c2s/client-info-7", &codec_client_info, "00001000000000", VMC_DECODE_ERR_TRUNCATED },
};

static void
expected_fields(const BodyVector *v, Fields *f)
{
    memset(f, 0, sizeof *f);
    memcpy(f->v, v->v, sizeof f->v);
    if (v->text) {
        put_bytes(f, v->text, strlen(v->text));
    } else if (v->bytes_hex) {
        g_autoptr(GByteArray) a = vmc_test_hex(v->bytes_hex);

        put_bytes(f, a->data, a->len);
    }
}

static void
test_body_vector(gconstpointer data)
{
    const BodyVector *v = data;
    const BodyCodec *c = v->codec;
    g_autoptr(GBytes) b = vmc_test_hex_bytes(v->hex);
    const guint8 *bytes = g_bytes_get_data(b, NULL);
    gsize len = g_bytes_get_size(b);
    gsize content = v->content ? v->content : len;
    Fields want, got;

    g_assert_cmpuint(content, <=, len);
    g_assert_cmpint(guarded_body_decode(c, bytes, len, &got), ==, v->expect);
    if (v->expect != VMC_DECODE_OK) {
        /* an invalid body stays invalid when cut (never becomes OK) */
        for (gsize p = 0; p < len; p++)
            g_assert_cmpint(guarded_body_decode(c, bytes, p, &got), !=, VMC_DECODE_OK);
        return;
    }
    expected_fields(v, &want);
    if (c == &codec_ping)
        want.v[2] = len - 12;
    assert_fields_eq(&got, &want);

    /* every strict prefix: ERR_TRUNCATED until the content is complete; PING
     * prefixes of 12+ bytes are PINGs with less padding */
    for (gsize p = 0; p < len; p++) {
        VmcDecodeResult r = guarded_body_decode(c, bytes, p, &got);

        if (p < content) {
            g_assert_cmpint(r, ==, VMC_DECODE_ERR_TRUNCATED);
        } else {
            g_assert_cmpint(r, ==, VMC_DECODE_OK);
            if (c == &codec_ping)
                want.v[2] = p - 12;
            assert_fields_eq(&got, &want);
        }
        if (p < c->fixed)
            g_assert_cmpint(r, ==, VMC_DECODE_ERR_TRUNCATED);
    }

    /* more trailing bytes are still ignored */
    {
        g_autofree guint8 *longer = g_malloc(len + 5);

        memcpy(longer, bytes, len);
        memset(longer + len, c == &codec_ping ? 0 : 0xEE, 5);
        g_assert_cmpint(guarded_body_decode(c, longer, len + 5, &got), ==, VMC_DECODE_OK);
        if (c == &codec_ping)
            want.v[2] = len + 5 - 12;
        assert_fields_eq(&got, &want);
    }

    /* the encoder gives the content bytes back (exact capacity and larger;
     * nothing for smaller), and they decode to the same fields */
    {
        g_autoptr(GBytes) enc = NULL;
        gsize need = c == &codec_ping ? len : content;

        if (c == &codec_ping)
            want.v[2] = len - 12;
        enc = encode_all_caps(c, &want, need);
        g_assert_nonnull(enc);
        g_assert_cmpmem(g_bytes_get_data(enc, NULL), g_bytes_get_size(enc), bytes, need);
        g_assert_cmpint(guarded_body_decode(c, g_bytes_get_data(enc, NULL),
                                            g_bytes_get_size(enc), &got),
                        ==, VMC_DECODE_OK);
        assert_fields_eq(&got, &want);
    }
}

static void
test_random_roundtrip(gconstpointer data)
{
    const BodyCodec *c = data;

    for (guint iter = 0; iter < 100; iter++) {
        Fields f, got;
        guint8 buf[512];
        gsize n;

        memset(&f, 0, sizeof f);
        c->random(&f);
        n = c->encode(&f, buf, sizeof buf);
        g_assert_cmpuint(n, >=, c->fixed);
        g_assert_cmpint(guarded_body_decode(c, buf, n, &got), ==, VMC_DECODE_OK);
        assert_fields_eq(&got, &f);
        /* one byte short is never OK, except PING (one byte less padding) */
        if (c == &codec_ping && f.v[2] > 0) {
            g_assert_cmpint(guarded_body_decode(c, buf, n - 1, &got), ==, VMC_DECODE_OK);
            g_assert_cmpuint(got.v[2], ==, f.v[2] - 1);
        } else {
            g_assert_cmpint(guarded_body_decode(c, buf, n - 1, &got), ==,
                            VMC_DECODE_ERR_TRUNCATED);
        }
        /* too small a buffer gives 0 */
        g_assert_cmpuint(c->encode(&f, buf, n - 1), ==, 0);
    }
}

/* ------------------------------------------------------------------------ */
/* Specific behaviours                                                       */

/* The reference's network test: PING bodies of 12, 12 and 256012 bytes. */
static void
test_ping_net_test_sizes(void)
{
    static const guint32 paddings[] = { 0, 0, 256000 };
    g_autofree guint8 *buf = g_malloc(12 + 256000);

    for (guint i = 0; i < G_N_ELEMENTS(paddings); i++) {
        VmcPing p = { i + 1, 1000000 + i, paddings[i] }, out;
        gsize n = vmc_ping_encode(&p, buf, 12 + 256000);

        g_assert_cmpuint(n, ==, 12 + paddings[i]);
        g_assert_cmpuint(vmc_get_u32le(buf), ==, i + 1);
        g_assert_true(vmc_test_all_bytes_are(buf + 12, paddings[i], 0));
        g_assert_cmpint(vmc_ping_decode(buf, n, &out), ==, VMC_DECODE_OK);
        g_assert_cmpuint(out.id, ==, i + 1);
        g_assert_cmpuint(out.timestamp, ==, 1000000 + i);
        g_assert_cmpuint(out.padding, ==, paddings[i]);
        /* the client answers with a 12-byte PONG echoing id and timestamp */
        {
            guint8 pong[12];
            VmcPing back;

            g_assert_cmpuint(vmc_pong_encode(&out, pong, sizeof pong), ==, 12);
            g_assert_cmpmem(pong, 12, buf, 12);
            g_assert_cmpint(vmc_pong_decode(pong, 12, &back), ==, VMC_DECODE_OK);
            g_assert_cmpuint(back.id, ==, out.id);
            g_assert_cmpuint(back.timestamp, ==, out.timestamp);
            g_assert_cmpuint(back.padding, ==, 0);
        }
    }
    /* 256012 does not fit 256011 */
    {
        VmcPing p = { 3, 0, 256000 };

        g_assert_cmpuint(vmc_ping_encode(&p, buf, 12 + 256000 - 1), ==, 0);
    }
}

static void
test_channels_list_max(void)
{
    g_autoptr(GBytes) b = vmc_test_hex_bytes("05000000 | 01 00 | 02 00 | 03 00 | 04 00 | 05 00");
    VmcChannelId ids[3];
    guint32 n = 0;

    memset(ids, SENTINEL, sizeof ids);
    /* max smaller than n: only max entries written, n is the announced count */
    g_assert_cmpint(vmc_main_channels_list_decode(g_bytes_get_data(b, NULL), g_bytes_get_size(b),
                                                  ids, 2, &n),
                    ==, VMC_DECODE_OK);
    g_assert_cmpuint(n, ==, 5);
    g_assert_cmpuint(ids[0].type, ==, 1);
    g_assert_cmpuint(ids[1].type, ==, 2);
    g_assert_true(vmc_test_all_bytes_are(&ids[2], sizeof ids[2], SENTINEL));
    /* max 0 with no storage just counts */
    n = 0;
    g_assert_cmpint(vmc_main_channels_list_decode(g_bytes_get_data(b, NULL), g_bytes_get_size(b),
                                                  NULL, 0, &n),
                    ==, VMC_DECODE_OK);
    g_assert_cmpuint(n, ==, 5);
    /* and still checks the length */
    g_assert_cmpint(vmc_main_channels_list_decode(g_bytes_get_data(b, NULL),
                                                  g_bytes_get_size(b) - 1, NULL, 0, &n),
                    ==, VMC_DECODE_ERR_TRUNCATED);
}

static void
test_name_encode(void)
{
    guint8 buf[16];
    const char *name;
    guint32 name_len;

    g_assert_cmpuint(vmc_main_name_encode("vm", buf, sizeof buf), ==, 7);
    g_assert_cmpmem(buf, 7, "\x03\0\0\0vm\0", 7);
    g_assert_cmpuint(vmc_main_name_encode("", buf, sizeof buf), ==, 5);
    g_assert_cmpmem(buf, 5, "\x01\0\0\0\0", 5);
    g_assert_cmpuint(vmc_main_name_encode("vm", buf, 6), ==, 0);
    /* embedded NULs inside name_len are allowed; the last byte must be NUL */
    g_assert_cmpint(vmc_main_name_decode((const guint8 *)"\x04\0\0\0a\0b\0", 8, &name, &name_len),
                    ==, VMC_DECODE_OK);
    g_assert_cmpuint(name_len, ==, 4);
    g_assert_cmpstr(name, ==, "a");
}

static void
test_notify_encode(void)
{
    VmcNotify n = { 10000000000ull, SPICE_NOTIFY_SEVERITY_WARN, SPICE_NOTIFY_VISIBILITY_HIGH, 0,
                    (guint32)strlen(NOTIFY_MSG), NOTIFY_MSG };
    guint8 buf[64];
    VmcNotify out;
    gsize len = vmc_notify_encode(&n, buf, sizeof buf);

    g_assert_cmpuint(len, ==, 24 + 28 + 1);
    g_assert_cmpuint(buf[len - 1], ==, 0);
    g_assert_cmpint(vmc_notify_decode(buf, len, &out), ==, VMC_DECODE_OK);
    g_assert_cmpstr(out.message, ==, NOTIFY_MSG);
    g_assert_cmpuint(out.severity, ==, 1);
    g_assert_cmpuint(out.visibility, ==, 2);
    g_assert_cmpuint(vmc_notify_encode(&n, buf, len - 1), ==, 0);
    /* message_len decides, not strlen */
    n.message_len = 8;
    len = vmc_notify_encode(&n, buf, sizeof buf);
    g_assert_cmpuint(len, ==, 33);
    g_assert_cmpint(vmc_notify_decode(buf, len, &out), ==, VMC_DECODE_OK);
    g_assert_cmpstr(out.message, ==, "keyboard");
}

/* ------------------------------------------------------------------------ */
/* Client message size rules                                                 */

typedef struct {
    guint16 type;
    guint32 min, max;
} Limit;

static const Limit limits[] = {
    { SPICE_MSGC_ACK_SYNC, 4, 26624 },
    { SPICE_MSGC_ACK, 0, 26624 },
    { SPICE_MSGC_PONG, 12, 26624 },
    { SPICE_MSGC_MIGRATE_FLUSH_MARK, 0, 26624 },
    { SPICE_MSGC_MIGRATE_DATA, 1, 26624 },
    { SPICE_MSGC_DISCONNECTING, 12, 26624 },
    { SPICE_MSGC_MAIN_CLIENT_INFO, 8, 26624 },
    { SPICE_MSGC_MAIN_MIGRATE_CONNECTED, 0, 26624 },
    { SPICE_MSGC_MAIN_MIGRATE_CONNECT_ERROR, 0, 26624 },
    { SPICE_MSGC_MAIN_ATTACH_CHANNELS, 0, 26624 },
    { SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST, 2, 26624 },
    { SPICE_MSGC_MAIN_AGENT_START, 4, 26624 },
    { SPICE_MSGC_MAIN_AGENT_DATA, 1, 2048 },
    { SPICE_MSGC_MAIN_AGENT_TOKEN, 4, 26624 },
    { SPICE_MSGC_MAIN_MIGRATE_END, 0, 26624 },
    { SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS, 4, 26624 },
    { SPICE_MSGC_MAIN_MIGRATE_CONNECTED_SEAMLESS, 0, 26624 },
    { SPICE_MSGC_MAIN_QUALITY_INDICATOR, 1, 26624 },
};

static void
test_limits_table(void)
{
    guint known = 0;

    g_assert_cmpuint(VMC_MAIN_RECV_BUF_SIZE, ==, 4096 + 11 * 2048);
    for (guint32 t = 0; t <= 0xFFFF; t++) {
        guint32 min = 0xAAAA, max = 0xBBBB;
        gboolean exists = (t >= 1 && t <= 6) || (t >= 101 && t <= 112);

        g_assert_cmpint(vmc_main_client_msg_limits((guint16)t, &min, &max), ==, exists);
        if (!exists) {
            /* outputs untouched; the check says ERR_TYPE whatever the size */
            g_assert_cmpuint(min, ==, 0xAAAA);
            g_assert_cmpuint(max, ==, 0xBBBB);
            g_assert_cmpint(vmc_main_client_msg_check((guint16)t, 0), ==, VMC_DECODE_ERR_TYPE);
            g_assert_cmpint(vmc_main_client_msg_check((guint16)t, 0xFFFFFFFF), ==,
                            VMC_DECODE_ERR_TYPE);
            continue;
        }
        known++;
    }
    g_assert_cmpuint(known, ==, G_N_ELEMENTS(limits));
    g_assert_true(vmc_main_client_msg_limits(SPICE_MSGC_ACK, NULL, NULL));
}

static void
test_limit_entry(gconstpointer data)
{
    const Limit *l = data;
    guint32 min, max;
    const guint32 sizes[] = {
        0, 1, 2, 3, 4, 11, 12, 13, 2047, 2048, 2049, 26623, 26624, 26625, 30000, 0x7FFFFFF8,
        0x80000000, 0xAAAAAAAA, 0xFFFFFFF8, 0xFFFFFFFF,
    };

    g_assert_true(vmc_main_client_msg_limits(l->type, &min, &max));
    g_assert_cmpuint(min, ==, l->min);
    g_assert_cmpuint(max, ==, l->max);
    for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
        guint32 s = sizes[i];
        VmcDecodeResult want = s > l->max   ? VMC_DECODE_ERR_TOO_LARGE
                               : s < l->min ? VMC_DECODE_ERR_TRUNCATED
                                            : VMC_DECODE_OK;

        g_assert_cmpint(vmc_main_client_msg_check(l->type, s), ==, want);
    }
    if (l->min > 0)
        g_assert_cmpint(vmc_main_client_msg_check(l->type, l->min - 1), ==,
                        VMC_DECODE_ERR_TRUNCATED);
    g_assert_cmpint(vmc_main_client_msg_check(l->type, l->min), ==, VMC_DECODE_OK);
    g_assert_cmpint(vmc_main_client_msg_check(l->type, l->max), ==, VMC_DECODE_OK);
    g_assert_cmpint(vmc_main_client_msg_check(l->type, l->max + 1), ==,
                    VMC_DECODE_ERR_TOO_LARGE);
}

/* The reference behaviours of agent-protocol.md §9.1 #16 and §2.2, at the header. */
static void
test_limits_reference_cases(void)
{
    /* 26624-byte ATTACH_CHANNELS works, 30000 disconnects */
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_ATTACH_CHANNELS, 26624), ==,
                    VMC_DECODE_OK);
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_ATTACH_CHANNELS, 30000), ==,
                    VMC_DECODE_ERR_TOO_LARGE);
    /* AGENT_START with 6 bytes ok, with 2 bytes refused */
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_AGENT_START, 6), ==,
                    VMC_DECODE_OK);
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_AGENT_START, 2), ==,
                    VMC_DECODE_ERR_TRUNCATED);
    /* AGENT_DATA of 0 bytes refused; over 2048 refused at the header (the
     * reference reads the body first) */
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_AGENT_DATA, 0), ==,
                    VMC_DECODE_ERR_TRUNCATED);
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_AGENT_DATA, 2048), ==,
                    VMC_DECODE_OK);
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_AGENT_DATA, 2049), ==,
                    VMC_DECODE_ERR_TOO_LARGE);
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_AGENT_DATA, 0xFFFFFFF8), ==,
                    VMC_DECODE_ERR_TOO_LARGE);
    /* unknown type 113 refused; 0, 7 and 100 do not exist either */
    g_assert_cmpint(vmc_main_client_msg_check(113, 0), ==, VMC_DECODE_ERR_TYPE);
    g_assert_cmpint(vmc_main_client_msg_check(0, 0), ==, VMC_DECODE_ERR_TYPE);
    g_assert_cmpint(vmc_main_client_msg_check(7, 12), ==, VMC_DECODE_ERR_TYPE);
    g_assert_cmpint(vmc_main_client_msg_check(100, 12), ==, VMC_DECODE_ERR_TYPE);
    /* CLIENT_INFO and QUALITY_INDICATOR parse (the reference then disconnects
     * on "invalid message type", a session decision, not a size rule) */
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_CLIENT_INFO, 8), ==,
                    VMC_DECODE_OK);
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_QUALITY_INDICATOR, 1), ==,
                    VMC_DECODE_OK);
    /* PONG/DISCONNECTING need 12, ACK_SYNC 4, MOUSE_MODE_REQUEST 2 */
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_PONG, 11), ==,
                    VMC_DECODE_ERR_TRUNCATED);
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_DISCONNECTING, 11), ==,
                    VMC_DECODE_ERR_TRUNCATED);
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_ACK_SYNC, 3), ==,
                    VMC_DECODE_ERR_TRUNCATED);
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST, 1), ==,
                    VMC_DECODE_ERR_TRUNCATED);
    /* empty messages take any size up to the buffer */
    g_assert_cmpint(vmc_main_client_msg_check(SPICE_MSGC_ACK, 100), ==, VMC_DECODE_OK);
}

/* Each limit's minimum is what the body decoder needs: a body of exactly min
 * bytes decodes, one byte less does not. */
static void
test_limits_match_decoders(void)
{
    static const struct {
        guint16 type;
        const BodyCodec *codec;
    } pairs[] = {
        { SPICE_MSGC_ACK_SYNC, &codec_u32 },
        { SPICE_MSGC_PONG, &codec_pong },
        { SPICE_MSGC_DISCONNECTING, &codec_disconnecting },
        { SPICE_MSGC_MAIN_CLIENT_INFO, &codec_client_info },
        { SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST, &codec_mode_req },
        { SPICE_MSGC_MAIN_AGENT_START, &codec_u32 },
        { SPICE_MSGC_MAIN_AGENT_TOKEN, &codec_u32 },
        { SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS, &codec_u32 },
    };
    guint8 zeros[16] = { 0 };

    for (gsize i = 0; i < G_N_ELEMENTS(pairs); i++) {
        guint32 min, max;
        Fields f;

        g_assert_true(vmc_main_client_msg_limits(pairs[i].type, &min, &max));
        g_assert_cmpuint(min, ==, pairs[i].codec->fixed);
        g_assert_cmpint(guarded_body_decode(pairs[i].codec, zeros, min, &f), ==, VMC_DECODE_OK);
        g_assert_cmpint(guarded_body_decode(pairs[i].codec, zeros, min - 1, &f), ==,
                        VMC_DECODE_ERR_TRUNCATED);
    }
}

/* Whole messages (mini header + body) for the types without a body codec:
 * AGENT_CONNECTED, ATTACH_CHANNELS, ACK (empty) and AGENT_DATA (raw). */
static void
test_empty_and_raw_messages(void)
{
    static const struct {
        const char *hex;
        gboolean from_client;
        guint16 type;
        guint32 size;
    } msgs[] = {
        { "6b00 00000000", FALSE, SPICE_MSG_MAIN_AGENT_CONNECTED, 0 },
        { "6800 00000000", TRUE, SPICE_MSGC_MAIN_ATTACH_CHANNELS, 0 },
        { "0200 00000000", TRUE, SPICE_MSGC_ACK, 0 },
        /* AGENT_DATA server->client (109) and client->server (107), raw bytes */
        { "6d00 03000000 | 61 62 63", FALSE, SPICE_MSG_MAIN_AGENT_DATA, 3 },
        { "6b00 03000000 | 61 62 63", TRUE, SPICE_MSGC_MAIN_AGENT_DATA, 3 },
    };

    for (gsize i = 0; i < G_N_ELEMENTS(msgs); i++) {
        g_autoptr(GBytes) b = vmc_test_hex_bytes(msgs[i].hex);
        VmcDataHeader h;
        gsize consumed;
        guint8 enc[6];

        g_assert_cmpint(vmc_data_header_decode(g_bytes_get_data(b, NULL), g_bytes_get_size(b),
                                               TRUE, &h, &consumed),
                        ==, VMC_DECODE_OK);
        g_assert_cmpuint(h.type, ==, msgs[i].type);
        g_assert_cmpuint(h.size, ==, msgs[i].size);
        g_assert_cmpuint(consumed + h.size, ==, g_bytes_get_size(b));
        if (msgs[i].from_client)
            g_assert_cmpint(vmc_main_client_msg_check(h.type, h.size), ==, VMC_DECODE_OK);
        g_assert_cmpuint(vmc_data_header_encode(&h, TRUE, enc), ==, 6);
        g_assert_cmpmem(enc, 6, g_bytes_get_data(b, NULL), 6);
    }
    g_assert_cmpstr(vmc_main_msg_name(SPICE_MSG_MAIN_AGENT_CONNECTED), ==, "AGENT_CONNECTED");
    g_assert_cmpstr(vmc_main_msgc_name(SPICE_MSGC_MAIN_AGENT_DATA), ==, "AGENT_DATA");
}

static void
test_names(void)
{
    static const struct {
        guint16 type;
        const char *name;
    } s2c[] = {
        { 1, "MIGRATE" },
        { 2, "MIGRATE_DATA" },
        { 3, "SET_ACK" },
        { 4, "PING" },
        { 5, "WAIT_FOR_CHANNELS" },
        { 6, "DISCONNECTING" },
        { 7, "NOTIFY" },
        { 8, "LIST" },
        { 101, "MIGRATE_BEGIN" },
        { 102, "MIGRATE_CANCEL" },
        { 103, "INIT" },
        { 104, "CHANNELS_LIST" },
        { 105, "MOUSE_MODE" },
        { 106, "MULTI_MEDIA_TIME" },
        { 107, "AGENT_CONNECTED" },
        { 108, "AGENT_DISCONNECTED" },
        { 109, "AGENT_DATA" },
        { 110, "AGENT_TOKEN" },
        { 111, "MIGRATE_SWITCH_HOST" },
        { 112, "MIGRATE_END" },
        { 113, "NAME" },
        { 114, "UUID" },
        { 115, "AGENT_CONNECTED_TOKENS" },
        { 116, "MIGRATE_BEGIN_SEAMLESS" },
        { 117, "MIGRATE_DST_SEAMLESS_ACK" },
        { 118, "MIGRATE_DST_SEAMLESS_NACK" },
    },
      c2s[] = {
          { 1, "ACK_SYNC" },
          { 2, "ACK" },
          { 3, "PONG" },
          { 4, "MIGRATE_FLUSH_MARK" },
          { 5, "MIGRATE_DATA" },
          { 6, "DISCONNECTING" },
          { 101, "CLIENT_INFO" },
          { 102, "MIGRATE_CONNECTED" },
          { 103, "MIGRATE_CONNECT_ERROR" },
          { 104, "ATTACH_CHANNELS" },
          { 105, "MOUSE_MODE_REQUEST" },
          { 106, "AGENT_START" },
          { 107, "AGENT_DATA" },
          { 108, "AGENT_TOKEN" },
          { 109, "MIGRATE_END" },
          { 110, "MIGRATE_DST_DO_SEAMLESS" },
          { 111, "MIGRATE_CONNECTED_SEAMLESS" },
          { 112, "QUALITY_INDICATOR" },
      };
    static const guint16 unknown_s2c[] = { 0, 9, 100, 119, 0xFFFF };
    static const guint16 unknown_c2s[] = { 0, 7, 100, 113, 0xFFFF };

    for (gsize i = 0; i < G_N_ELEMENTS(s2c); i++)
        g_assert_cmpstr(vmc_main_msg_name(s2c[i].type), ==, s2c[i].name);
    for (gsize i = 0; i < G_N_ELEMENTS(c2s); i++)
        g_assert_cmpstr(vmc_main_msgc_name(c2s[i].type), ==, c2s[i].name);
    for (gsize i = 0; i < G_N_ELEMENTS(unknown_s2c); i++)
        g_assert_cmpstr(vmc_main_msg_name(unknown_s2c[i]), ==, "UNKNOWN");
    for (gsize i = 0; i < G_N_ELEMENTS(unknown_c2s); i++)
        g_assert_cmpstr(vmc_main_msgc_name(unknown_c2s[i]), ==, "UNKNOWN");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("SPICE main-channel message bodies and client size rules");

    for (gsize i = 0; i < G_N_ELEMENTS(body_vectors); i++) {
        g_autofree char *path = g_strdup_printf("/protocol/main/%s", body_vectors[i].path);
        g_test_add_data_func(path, &body_vectors[i], test_body_vector);
    }
    for (gsize i = 0; i < G_N_ELEMENTS(all_codecs); i++) {
        g_autofree char *path = g_strdup_printf("/protocol/main/random-roundtrip/%s",
                                                all_codecs[i]->name);
        g_test_add_data_func(path, all_codecs[i], test_random_roundtrip);
    }
    g_test_add_func("/protocol/main/ping-net-test-sizes", test_ping_net_test_sizes);
    g_test_add_func("/protocol/main/channels-list-max", test_channels_list_max);
    g_test_add_func("/protocol/main/name-encode", test_name_encode);
    g_test_add_func("/protocol/main/notify-encode", test_notify_encode);
    g_test_add_func("/protocol/main/empty-and-raw-messages", test_empty_and_raw_messages);

    g_test_add_func("/protocol/main/limits/table", test_limits_table);
    for (gsize i = 0; i < G_N_ELEMENTS(limits); i++) {
        g_autofree char *path = g_strdup_printf("/protocol/main/limits/%s",
                                                vmc_main_msgc_name(limits[i].type));
        g_test_add_data_func(path, &limits[i], test_limit_entry);
    }
    g_test_add_func("/protocol/main/limits/reference-cases", test_limits_reference_cases);
    g_test_add_func("/protocol/main/limits/match-decoders", test_limits_match_decoders);
    g_test_add_func("/protocol/main/names", test_names);

    return g_test_run();
}
