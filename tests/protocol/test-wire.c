/* test-wire.c — bounded little-endian readers and writers, LE helpers, caps bit
 * helpers and decode result names (suite 'wire').
 *
 * Readers run over buffers that end at a guard page and writers into guarded
 * buffers of exactly their capacity, so any access past the bounds faults.
 */
#include <string.h>

#include "protocol/vmc-wire.h"
#include "vmc-test-util.h"

static const guint8 seq[16] = {
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10,
};

static void
test_get_put_le(void)
{
    guint8 buf[8];

    g_assert_cmphex(vmc_get_u16le(seq), ==, 0x0201);
    g_assert_cmphex(vmc_get_u32le(seq), ==, 0x04030201);
    g_assert_cmphex(vmc_get_u64le(seq), ==, G_GUINT64_CONSTANT(0x0807060504030201));
    g_assert_cmphex(vmc_get_u32le((const guint8 *)"REDQ"), ==, 0x51444552);
    {
        const guint8 high[8] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x80 };

        g_assert_cmphex(vmc_get_u16le(high), ==, 0xFFFF);
        g_assert_cmphex(vmc_get_u32le(high), ==, 0xFFFFFFFF);
        g_assert_cmphex(vmc_get_u64le(high), ==, G_GUINT64_CONSTANT(0x80FFFFFFFFFFFFFF));
    }

    memset(buf, 0, sizeof buf);
    vmc_put_u16le(buf, 0xABCD);
    g_assert_cmpmem(buf, 2, "\xCD\xAB", 2);
    vmc_put_u32le(buf, 0x12345678);
    g_assert_cmpmem(buf, 4, "\x78\x56\x34\x12", 4);
    vmc_put_u64le(buf, G_GUINT64_CONSTANT(0x0102030405060708));
    g_assert_cmpmem(buf, 8, "\x08\x07\x06\x05\x04\x03\x02\x01", 8);

    for (guint i = 0; i < 200; i++) {
        guint64 v = (guint64)(guint32)g_test_rand_int() << 32 | (guint32)g_test_rand_int();

        vmc_put_u64le(buf, v);
        g_assert_cmphex(vmc_get_u64le(buf), ==, v);
        vmc_put_u32le(buf, (guint32)v);
        g_assert_cmphex(vmc_get_u32le(buf), ==, (guint32)v);
        vmc_put_u16le(buf, (guint16)v);
        g_assert_cmphex(vmc_get_u16le(buf), ==, (guint16)v);
        g_assert_cmpuint(buf[0], ==, (guint8)v);
    }
}

static void
test_reader_reads(void)
{
    guint8 *g = vmc_test_guarded_dup(seq, sizeof seq);
    VmcReader r;
    guint8 u8;
    guint16 u16;
    guint32 u32;
    guint64 u64;
    guint8 bytes[2];
    const guint8 *borrowed;

    vmc_reader_init(&r, g, sizeof seq);
    g_assert_cmpuint(vmc_reader_remaining(&r), ==, 16);
    g_assert_true(vmc_reader_u8(&r, &u8));
    g_assert_cmphex(u8, ==, 0x01);
    g_assert_true(vmc_reader_u16(&r, &u16));
    g_assert_cmphex(u16, ==, 0x0302);
    g_assert_true(vmc_reader_u32(&r, &u32));
    g_assert_cmphex(u32, ==, 0x07060504);
    g_assert_cmpuint(vmc_reader_remaining(&r), ==, 9);
    g_assert_true(vmc_reader_bytes(&r, bytes, 2));
    g_assert_cmpmem(bytes, 2, "\x08\x09", 2);
    g_assert_true(vmc_reader_bytes(&r, NULL, 1)); /* skip 0x0A */
    g_assert_true(vmc_reader_borrow(&r, &borrowed, 0));
    g_assert_true(borrowed == g + 10);
    g_assert_true(vmc_reader_borrow(&r, &borrowed, 2));
    g_assert_true(borrowed == g + 10);
    g_assert_true(vmc_reader_bytes(&r, NULL, 0));
    g_assert_cmpuint(vmc_reader_remaining(&r), ==, 4);
    /* u64 does not fit in 4: fails, and the reader is now spent */
    u64 = 42;
    g_assert_false(vmc_reader_u64(&r, &u64));
    g_assert_cmpuint(u64, ==, 42);
    g_assert_true(r.overrun);
    g_assert_cmpuint(vmc_reader_remaining(&r), ==, 0);
    /* sticky: even a 1-byte read fails now */
    g_assert_false(vmc_reader_u8(&r, &u8));
    g_assert_false(vmc_reader_bytes(&r, NULL, 0));
    vmc_test_guarded_free(g, sizeof seq);
}

static void
test_reader_exact_end(void)
{
    guint8 *g = vmc_test_guarded_dup(seq, 8);
    VmcReader r;
    guint64 u64;
    guint8 u8;

    vmc_reader_init(&r, g, 8);
    g_assert_true(vmc_reader_u64(&r, &u64));
    g_assert_cmphex(u64, ==, G_GUINT64_CONSTANT(0x0807060504030201));
    g_assert_cmpuint(vmc_reader_remaining(&r), ==, 0);
    g_assert_false(r.overrun);
    g_assert_true(vmc_reader_bytes(&r, NULL, 0)); /* zero bytes at the end is fine */
    g_assert_false(vmc_reader_u8(&r, &u8));
    g_assert_true(r.overrun);
    vmc_test_guarded_free(g, 8);
}

/* Every read size at every remaining length: success exactly when it fits. */
static void
test_reader_every_length(void)
{
    for (gsize len = 0; len <= 9; len++) {
        guint8 *g = vmc_test_guarded_dup(seq, len);

        for (guint width = 1; width <= 8; width *= 2) {
            VmcReader r;
            gboolean ok;
            guint8 u8;
            guint16 u16;
            guint32 u32;
            guint64 u64;

            vmc_reader_init(&r, g, len);
            switch (width) {
            case 1:
                ok = vmc_reader_u8(&r, &u8);
                break;
            case 2:
                ok = vmc_reader_u16(&r, &u16);
                break;
            case 4:
                ok = vmc_reader_u32(&r, &u32);
                break;
            default:
                ok = vmc_reader_u64(&r, &u64);
                break;
            }
            g_assert_cmpint(ok, ==, len >= width);
            g_assert_cmpint(r.overrun, ==, len < width);
            g_assert_cmpuint(vmc_reader_remaining(&r), ==, ok ? len - width : 0);
        }
        {
            VmcReader r;
            const guint8 *p = NULL;

            vmc_reader_init(&r, g, len);
            g_assert_cmpint(vmc_reader_borrow(&r, &p, len), ==, TRUE);
            g_assert_true(p == g);
            vmc_reader_init(&r, g, len);
            g_assert_false(vmc_reader_borrow(&r, &p, len + 1));
            /* a huge count must not wrap the bounds check */
            vmc_reader_init(&r, g, len);
            g_assert_false(vmc_reader_bytes(&r, NULL, G_MAXSIZE));
            vmc_reader_init(&r, g, len);
            if (len > 0)
                g_assert_true(vmc_reader_bytes(&r, NULL, 1));
            g_assert_false(vmc_reader_bytes(&r, NULL, G_MAXSIZE));
        }
        vmc_test_guarded_free(g, len);
    }
}

static void
test_reader_null(void)
{
    VmcReader r;
    guint8 u8;

    vmc_reader_init(&r, NULL, 100); /* no data means no bytes, whatever len says */
    g_assert_cmpuint(vmc_reader_remaining(&r), ==, 0);
    g_assert_false(vmc_reader_u8(&r, &u8));
}

static void
test_writer_writes(void)
{
    g_autofree guint8 *zero = g_malloc0(16);
    guint8 *g = vmc_test_guarded_dup(zero, 16);
    VmcWriter w;
    static const guint8 want[16] = {
        0x01, 0x03, 0x02, 0x07, 0x06, 0x05, 0x04, 0x0F, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 0x09, 0x08,
        0xAA,
    };

    vmc_writer_init(&w, g, 16);
    vmc_writer_u8(&w, 0x01);
    vmc_writer_u16(&w, 0x0203);
    vmc_writer_u32(&w, 0x04050607);
    vmc_writer_u64(&w, G_GUINT64_CONSTANT(0x08090A0B0C0D0E0F));
    g_assert_cmpuint(vmc_writer_finish(&w), ==, 15);
    vmc_writer_bytes(&w, "\xAA", 1);
    g_assert_cmpuint(vmc_writer_finish(&w), ==, 16);
    g_assert_cmpmem(g, 16, want, 16);
    /* full: a zero-length write is fine, anything more overflows for good */
    vmc_writer_bytes(&w, NULL, 0);
    vmc_writer_zeros(&w, 0);
    g_assert_cmpuint(vmc_writer_finish(&w), ==, 16);
    vmc_writer_u8(&w, 0xFF);
    g_assert_true(w.overflow);
    g_assert_cmpuint(vmc_writer_finish(&w), ==, 0);
    vmc_writer_zeros(&w, 0);
    g_assert_cmpuint(vmc_writer_finish(&w), ==, 0);
    g_assert_cmpmem(g, 16, want, 16); /* nothing was changed by the failed writes */
    vmc_test_guarded_free(g, 16);
}

/* Every write size into every capacity: writes only when it fits, never past cap. */
static void
test_writer_every_capacity(void)
{
    g_autofree guint8 *zero = g_malloc0(16);

    for (gsize cap = 0; cap <= 9; cap++) {
        for (guint width = 1; width <= 8; width *= 2) {
            guint8 *g = vmc_test_guarded_dup(zero, cap);
            VmcWriter w;

            vmc_writer_init(&w, g, cap);
            switch (width) {
            case 1:
                vmc_writer_u8(&w, 0xFF);
                break;
            case 2:
                vmc_writer_u16(&w, 0xFFFF);
                break;
            case 4:
                vmc_writer_u32(&w, 0xFFFFFFFF);
                break;
            default:
                vmc_writer_u64(&w, G_MAXUINT64);
                break;
            }
            g_assert_cmpuint(vmc_writer_finish(&w), ==, cap >= width ? width : 0);
            if (cap < width)
                g_assert_true(cap == 0 || g[0] == 0); /* nothing partial */
            vmc_test_guarded_free(g, cap);
        }
        {
            guint8 *g = vmc_test_guarded_dup(seq, cap);
            VmcWriter w;

            vmc_writer_init(&w, g, cap);
            vmc_writer_zeros(&w, cap);
            g_assert_cmpuint(vmc_writer_finish(&w), ==, cap);
            for (gsize i = 0; i < cap; i++)
                g_assert_cmpuint(g[i], ==, 0);
            vmc_writer_init(&w, g, cap);
            vmc_writer_zeros(&w, G_MAXSIZE); /* must not wrap */
            g_assert_cmpuint(vmc_writer_finish(&w), ==, 0);
            vmc_writer_init(&w, g, cap);
            vmc_writer_bytes(&w, seq, cap + 1);
            g_assert_cmpuint(vmc_writer_finish(&w), ==, 0);
            vmc_test_guarded_free(g, cap);
        }
    }
}

static void
test_writer_null(void)
{
    VmcWriter w;

    vmc_writer_init(&w, NULL, 100);
    vmc_writer_bytes(&w, NULL, 0);
    g_assert_cmpuint(vmc_writer_finish(&w), ==, 0);
    g_assert_false(w.overflow);
    vmc_writer_u8(&w, 1);
    g_assert_true(w.overflow);
    g_assert_cmpuint(vmc_writer_finish(&w), ==, 0);
}

static void
test_writer_reader_roundtrip(void)
{
    for (guint iter = 0; iter < 100; iter++) {
        guint8 buf[64];
        guint8 kinds[16];
        guint64 vals[16];
        guint n = (guint)g_test_rand_int_range(1, 8);
        VmcWriter w;
        VmcReader r;

        vmc_writer_init(&w, buf, sizeof buf);
        for (guint i = 0; i < n; i++) {
            kinds[i] = (guint8)g_test_rand_int_range(0, 4);
            vals[i] = (guint64)(guint32)g_test_rand_int() << 32 | (guint32)g_test_rand_int();
            switch (kinds[i]) {
            case 0:
                vmc_writer_u8(&w, (guint8)vals[i]);
                vals[i] &= 0xFF;
                break;
            case 1:
                vmc_writer_u16(&w, (guint16)vals[i]);
                vals[i] &= 0xFFFF;
                break;
            case 2:
                vmc_writer_u32(&w, (guint32)vals[i]);
                vals[i] &= 0xFFFFFFFF;
                break;
            default:
                vmc_writer_u64(&w, vals[i]);
                break;
            }
        }
        g_assert_cmpuint(vmc_writer_finish(&w), >, 0);
        vmc_reader_init(&r, buf, vmc_writer_finish(&w));
        for (guint i = 0; i < n; i++) {
            guint8 u8;
            guint16 u16;
            guint32 u32;
            guint64 u64;
            guint64 got;

            switch (kinds[i]) {
            case 0:
                g_assert_true(vmc_reader_u8(&r, &u8));
                got = u8;
                break;
            case 1:
                g_assert_true(vmc_reader_u16(&r, &u16));
                got = u16;
                break;
            case 2:
                g_assert_true(vmc_reader_u32(&r, &u32));
                got = u32;
                break;
            default:
                g_assert_true(vmc_reader_u64(&r, &u64));
                got = u64;
                break;
            }
            g_assert_cmphex(got, ==, vals[i]);
        }
        g_assert_cmpuint(vmc_reader_remaining(&r), ==, 0);
        g_assert_false(r.overrun);
    }
}

static void
test_caps_helpers(void)
{
    guint32 words[2] = { 0, 0 };

    g_assert_false(vmc_caps_test(words, 2, 0));
    vmc_caps_set(words, 2, 0);
    vmc_caps_set(words, 2, 3);
    vmc_caps_set(words, 2, 31);
    vmc_caps_set(words, 2, 32);
    vmc_caps_set(words, 2, 63);
    vmc_caps_set(words, 2, 64); /* out of range: ignored */
    vmc_caps_set(words, 2, 1000);
    g_assert_cmphex(words[0], ==, 0x80000009);
    g_assert_cmphex(words[1], ==, 0x80000001);
    g_assert_true(vmc_caps_test(words, 2, 3));
    g_assert_true(vmc_caps_test(words, 2, 31));
    g_assert_true(vmc_caps_test(words, 2, 32));
    g_assert_true(vmc_caps_test(words, 2, 63));
    g_assert_false(vmc_caps_test(words, 2, 1));
    g_assert_false(vmc_caps_test(words, 2, 64));
    g_assert_false(vmc_caps_test(words, 1, 32)); /* only one word counted */
    g_assert_false(vmc_caps_test(words, 0, 0));
    g_assert_false(vmc_caps_test(NULL, 0, 5));
    vmc_caps_clear(words, 2, 31);
    vmc_caps_clear(words, 2, 32);
    vmc_caps_clear(words, 2, 64);
    g_assert_cmphex(words[0], ==, 0x00000009);
    g_assert_cmphex(words[1], ==, 0x80000000);
    /* the reference's default common caps word: AUTH_SELECTION, AUTH_SPICE, MINI_HEADER */
    words[0] = 0;
    vmc_caps_set(words, 1, 0);
    vmc_caps_set(words, 1, 1);
    vmc_caps_set(words, 1, 3);
    g_assert_cmphex(words[0], ==, 0x0B);
}

static void
test_result_names(void)
{
    GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);

    for (int r = VMC_DECODE_OK; r <= VMC_DECODE_ERR_INVALID; r++) {
        const char *s = vmc_decode_result_to_string((VmcDecodeResult)r);

        g_assert_nonnull(s);
        g_assert_cmpstr(s, !=, "unknown result");
        g_assert_false(g_hash_table_contains(seen, s));
        g_hash_table_add(seen, (gpointer)s);
    }
    g_assert_cmpstr(vmc_decode_result_to_string(VMC_DECODE_OK), ==, "ok");
    g_assert_cmpstr(vmc_decode_result_to_string(VMC_DECODE_ERR_MAGIC), ==, "bad magic");
    g_assert_cmpstr(vmc_decode_result_to_string((VmcDecodeResult)99), ==, "unknown result");
    g_hash_table_unref(seen);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("Bounded little-endian readers/writers and helpers");

    g_test_add_func("/protocol/wire/get-put-le", test_get_put_le);
    g_test_add_func("/protocol/wire/reader/reads", test_reader_reads);
    g_test_add_func("/protocol/wire/reader/exact-end", test_reader_exact_end);
    g_test_add_func("/protocol/wire/reader/every-length", test_reader_every_length);
    g_test_add_func("/protocol/wire/reader/null", test_reader_null);
    g_test_add_func("/protocol/wire/writer/writes", test_writer_writes);
    g_test_add_func("/protocol/wire/writer/every-capacity", test_writer_every_capacity);
    g_test_add_func("/protocol/wire/writer/null", test_writer_null);
    g_test_add_func("/protocol/wire/writer-reader-roundtrip", test_writer_reader_roundtrip);
    g_test_add_func("/protocol/wire/caps", test_caps_helpers);
    g_test_add_func("/protocol/wire/result-names", test_result_names);

    return g_test_run();
}
