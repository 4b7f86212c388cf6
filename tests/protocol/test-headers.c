/* test-headers.c — SPICE data headers, mini (6 bytes) and full (18 bytes)
 * (suite 'headers').
 *
 * vmc_data_header_decode() is a prefix decoder: every strict prefix of a header
 * is NEED_MORE, and it is fed whole, split at every offset, byte by byte and in
 * random pieces, from buffers that end at a guard page. Encoders write into
 * guarded buffers of exactly 6 or 18 bytes.
 */
#include <string.h>

#include "protocol/vmc-header.h"
#include "protocol/vmc-main.h"
#include "vmc-test-util.h"

#define SENTINEL 0xA5

static VmcDecodeResult
guarded_decode(const guint8 *data, gsize len, gboolean mini, VmcDataHeader *out,
               gsize *consumed)
{
    guint8 *g = vmc_test_guarded_dup(data, len);
    VmcDecodeResult r;

    memset(out, SENTINEL, sizeof *out);
    *consumed = 0xdeadbeef;
    r = vmc_data_header_decode(g, len, mini, out, consumed);
    vmc_test_guarded_free(g, len);
    if (r != VMC_DECODE_OK) {
        g_assert_true(vmc_test_all_bytes_are(out, sizeof *out, SENTINEL));
        g_assert_cmpuint(*consumed, ==, 0xdeadbeef);
    }
    return r;
}

static void
assert_header_eq(const VmcDataHeader *a, const VmcDataHeader *b)
{
    g_assert_cmpuint(a->serial, ==, b->serial);
    g_assert_cmpuint(a->type, ==, b->type);
    g_assert_cmpuint(a->size, ==, b->size);
    g_assert_cmpuint(a->sub_list, ==, b->sub_list);
}

typedef struct {
    const char *path;
    gboolean mini;
    const char *hex;
    guint64 serial;
    guint16 type;
    guint32 size;
    guint32 sub_list;
} HeaderVector;

static const HeaderVector vectors[] = {
    /* mini: u16 type | u32 size */
    { "mini/init", TRUE, "6700 | 20000000", 0, SPICE_MSG_MAIN_INIT, 32 },
    { "mini/agent-data-2048", TRUE, "6b00 | 00080000", 0, SPICE_MSGC_MAIN_AGENT_DATA, 2048 },
    { "mini/agent-start", TRUE, "6a00 | 04000000", 0, SPICE_MSGC_MAIN_AGENT_START, 4 },
    { "mini/attach-channels", TRUE, "6800 | 00000000", 0, SPICE_MSGC_MAIN_ATTACH_CHANNELS, 0 },
    { "mini/ping-net-test", TRUE, "0400 | 0ce80300", 0, SPICE_MSG_PING, 256012 },
    { "mini/size-0xfffffff8", TRUE, "6b00 | f8ffffff", 0, SPICE_MSGC_MAIN_AGENT_DATA,
      0xFFFFFFF8 },
    { "mini/type-0xffff", TRUE, "ffff | ffffffff", 0, 0xFFFF, 0xFFFFFFFF },
    { "mini/zero", TRUE, "0000 | 00000000", 0, 0, 0 },
    { "mini/byte-order", TRUE, "0102 | 03040506", 0, 0x0201, 0x06050403 },
    /* full: u64 serial | u16 type | u32 size | u32 sub_list */
    { "full/init-serial-1", FALSE, "0100000000000000 | 6700 | 20000000 | 00000000", 1,
      SPICE_MSG_MAIN_INIT, 32, 0 },
    { "full/name-serial-2", FALSE, "0200000000000000 | 7100 | 07000000 | 00000000", 2,
      SPICE_MSG_MAIN_NAME, 7, 0 },
    { "full/client-ignored-fields", FALSE, "efcdab8967452301 | 6a00 | 04000000 | 78563412",
      0x0123456789ABCDEF, SPICE_MSGC_MAIN_AGENT_START, 4, 0x12345678 },
    { "full/all-ones", FALSE, "ffffffffffffffff | ffff | ffffffff | ffffffff", G_MAXUINT64,
      0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF },
    { "full/zero", FALSE, "0000000000000000 | 0000 | 00000000 | 00000000", 0, 0, 0, 0 },
};

static void
test_vector(gconstpointer data)
{
    const HeaderVector *v = data;
    g_autoptr(GBytes) b = vmc_test_hex_bytes(v->hex);
    const guint8 *bytes = g_bytes_get_data(b, NULL);
    gsize len = g_bytes_get_size(b);
    VmcDataHeader want = { v->serial, v->type, v->size, v->sub_list };
    VmcDataHeader out, whole;
    gsize consumed;
    guint8 *enc;

    g_assert_cmpuint(len, ==, vmc_data_header_size(v->mini));

    /* whole */
    g_assert_cmpint(guarded_decode(bytes, len, v->mini, &whole, &consumed), ==, VMC_DECODE_OK);
    g_assert_cmpuint(consumed, ==, len);
    assert_header_eq(&whole, &want);

    /* every strict prefix */
    for (gsize p = 0; p < len; p++)
        g_assert_cmpint(guarded_decode(bytes, p, v->mini, &out, &consumed), ==,
                        VMC_DECODE_NEED_MORE);

    /* split at every offset: the first piece is never enough, the second is */
    for (gsize k = 1; k < len; k++) {
        g_assert_cmpint(guarded_decode(bytes, k, v->mini, &out, &consumed), ==,
                        VMC_DECODE_NEED_MORE);
        g_assert_cmpint(guarded_decode(bytes, len, v->mini, &out, &consumed), ==, VMC_DECODE_OK);
        assert_header_eq(&out, &whole);
    }

    /* byte by byte: OK exactly when the last byte arrives */
    for (gsize fed = 1; fed <= len; fed++) {
        VmcDecodeResult r = guarded_decode(bytes, fed, v->mini, &out, &consumed);

        g_assert_cmpint(r, ==, fed == len ? VMC_DECODE_OK : VMC_DECODE_NEED_MORE);
    }
    assert_header_eq(&out, &whole);

    /* trailing bytes (the body) are not consumed */
    {
        g_autofree guint8 *longer = g_malloc(len + 9);

        memcpy(longer, bytes, len);
        memset(longer + len, 0x77, 9);
        g_assert_cmpint(guarded_decode(longer, len + 9, v->mini, &out, &consumed), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(consumed, ==, len);
        assert_header_eq(&out, &whole);
    }

    /* encode gives the same bytes into exactly len bytes of storage */
    enc = vmc_test_guarded_dup(bytes, len);
    memset(enc, 0, len);
    g_assert_cmpuint(vmc_data_header_encode(&want, v->mini, enc), ==, len);
    g_assert_cmpmem(enc, len, bytes, len);
    vmc_test_guarded_free(enc, len);
}

static void
test_mini_drops_full_fields(void)
{
    VmcDataHeader h = { 99, SPICE_MSG_MAIN_AGENT_DATA, 10, 77 }, out;
    guint8 buf[VMC_MINI_HEADER_SIZE];
    gsize consumed;

    g_assert_cmpuint(vmc_data_header_encode(&h, TRUE, buf), ==, 6);
    g_assert_cmpint(vmc_data_header_decode(buf, 6, TRUE, &out, &consumed), ==, VMC_DECODE_OK);
    g_assert_cmpuint(out.serial, ==, 0);
    g_assert_cmpuint(out.sub_list, ==, 0);
    g_assert_cmpuint(out.type, ==, h.type);
    g_assert_cmpuint(out.size, ==, 10);
    g_assert_cmpuint(vmc_data_header_size(TRUE), ==, 6);
    g_assert_cmpuint(vmc_data_header_size(FALSE), ==, 18);
    g_assert_cmpuint(VMC_MAX_HEADER_SIZE, ==, 18);
}

static void
test_random_roundtrip(void)
{
    for (guint i = 0; i < 500; i++) {
        gboolean mini = g_test_rand_bit();
        VmcDataHeader h = {
            mini ? 0 : (guint64)(guint32)g_test_rand_int() << 32 | (guint32)g_test_rand_int(),
            (guint16)g_test_rand_int_range(0, 0x10000),
            g_test_rand_int(),
            mini ? 0 : g_test_rand_int(),
        };
        VmcDataHeader out;
        guint8 buf[VMC_MAX_HEADER_SIZE];
        gsize n, consumed;

        n = vmc_data_header_encode(&h, mini, buf);
        g_assert_cmpuint(n, ==, vmc_data_header_size(mini));
        g_assert_cmpint(guarded_decode(buf, n, mini, &out, &consumed), ==, VMC_DECODE_OK);
        g_assert_cmpuint(consumed, ==, n);
        assert_header_eq(&out, &h);
        g_assert_cmpint(guarded_decode(buf, n - 1, mini, &out, &consumed), ==,
                        VMC_DECODE_NEED_MORE);
    }
}

/* Header sizes a client may claim for AGENT_DATA (security.md M2): all must be
 * refused at the header, before any body is read or allocated. */
static void
test_agent_data_huge_sizes(void)
{
    static const guint32 sizes[] = {
        0xFFFFFFF8, 0xFFFFFFF9, 0xFFFFFFFA, 0xFFFFFFFB, 0xFFFFFFFC, 0xFFFFFFFD, 0xFFFFFFFE,
        0xFFFFFFFF, 0x80000000, 0x7FFFFFF8, 2049, 26624,
    };

    for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
        for (int mini = 0; mini <= 1; mini++) {
            VmcDataHeader h = { 1, SPICE_MSGC_MAIN_AGENT_DATA, sizes[i], 0 }, out;
            guint8 buf[VMC_MAX_HEADER_SIZE];
            gsize n = vmc_data_header_encode(&h, mini, buf), consumed;

            g_assert_cmpint(guarded_decode(buf, n, mini, &out, &consumed), ==, VMC_DECODE_OK);
            g_assert_cmpuint(out.size, ==, sizes[i]);
            g_assert_cmpint(vmc_main_client_msg_check(out.type, out.size), ==,
                            VMC_DECODE_ERR_TOO_LARGE);
        }
    }
}

/* A client stream of several messages (mini headers) cut into random pieces and
 * framed by a reader that decodes a header, checks it, then waits for the body. */
static void
test_stream_framing(void)
{
    g_autoptr(GBytes) stream = vmc_test_hex_bytes(
        "6a00 04000000 | 0a000000"                    /* AGENT_START 10 */
        "6800 00000000 |"                             /* ATTACH_CHANNELS */
        "6b00 18000000 | 01000000 01000000 00000000 04000000 00000000 74657374" /* AGENT_DATA */
        "6c00 04000000 | 05000000"                    /* AGENT_TOKEN 5 */
        "0300 0c000000 | 01000000 4000000000000000"   /* PONG */
        "7100 00000000");                             /* type 113: does not exist */
    static const guint16 want_types[] = {
        SPICE_MSGC_MAIN_AGENT_START, SPICE_MSGC_MAIN_ATTACH_CHANNELS, SPICE_MSGC_MAIN_AGENT_DATA,
        SPICE_MSGC_MAIN_AGENT_TOKEN, SPICE_MSGC_PONG,
    };
    static const guint32 want_sizes[] = { 4, 0, 24, 4, 12 };
    const guint8 *bytes = g_bytes_get_data(stream, NULL);
    gsize len = g_bytes_get_size(stream);

    for (guint iter = 0; iter < 50; iter++) {
        GByteArray *acc = g_byte_array_new();
        gsize at = 0, nmsg = 0;
        VmcDecodeResult fail = VMC_DECODE_OK;
        gboolean have_header = FALSE;
        VmcDataHeader h;

        while (at < len && fail == VMC_DECODE_OK) {
            gsize piece = iter == 0 ? 1 : (gsize)g_test_rand_int_range(1, 20);

            piece = MIN(piece, len - at);
            g_byte_array_append(acc, bytes + at, (guint)piece);
            at += piece;
            for (;;) {
                gsize consumed;

                if (!have_header) {
                    VmcDecodeResult r = vmc_data_header_decode(acc->data, acc->len, TRUE, &h,
                                                               &consumed);

                    if (r == VMC_DECODE_NEED_MORE)
                        break;
                    g_assert_cmpint(r, ==, VMC_DECODE_OK);
                    g_byte_array_remove_range(acc, 0, (guint)consumed);
                    fail = vmc_main_client_msg_check(h.type, h.size);
                    if (fail != VMC_DECODE_OK)
                        break;
                    have_header = TRUE;
                }
                if (acc->len < h.size)
                    break;
                g_assert_cmpuint(nmsg, <, G_N_ELEMENTS(want_types));
                g_assert_cmpuint(h.type, ==, want_types[nmsg]);
                g_assert_cmpuint(h.size, ==, want_sizes[nmsg]);
                nmsg++;
                g_byte_array_remove_range(acc, 0, h.size);
                have_header = FALSE;
            }
        }
        g_assert_cmpuint(nmsg, ==, G_N_ELEMENTS(want_types));
        g_assert_cmpint(fail, ==, VMC_DECODE_ERR_TYPE);
        g_assert_cmpuint(h.type, ==, 113);
        g_byte_array_unref(acc);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("SPICE data headers: mini and full");

    for (gsize i = 0; i < G_N_ELEMENTS(vectors); i++) {
        g_autofree char *path = g_strdup_printf("/protocol/headers/%s", vectors[i].path);
        g_test_add_data_func(path, &vectors[i], test_vector);
    }
    g_test_add_func("/protocol/headers/mini-drops-full-fields", test_mini_drops_full_fields);
    g_test_add_func("/protocol/headers/random-roundtrip", test_random_roundtrip);
    g_test_add_func("/protocol/headers/agent-data-huge-sizes", test_agent_data_huge_sizes);
    g_test_add_func("/protocol/headers/stream-framing", test_stream_framing);

    return g_test_run();
}
