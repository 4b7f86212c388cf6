/* test-link.c — the SPICE link handshake codec (suite 'link').
 *
 * Which decoders are incremental:
 * - vmc_link_header_decode() and vmc_link_u32_decode() are prefix decoders: a
 *   reader calls them on whatever has arrived. Every strict prefix of a valid
 *   input is NEED_MORE; they are fed whole, split at every offset, byte by byte
 *   and in random pieces, and must ignore trailing bytes.
 * - vmc_link_mess_decode() and vmc_link_reply_decode() take a message of exactly
 *   the size announced by its link header. A prefix shorter than the fixed part
 *   (18 / 178 bytes) is NEED_MORE; a longer prefix is a complete message whose
 *   caps no longer fit, i.e. ERR_CAPS.
 * Every decoder reads from a buffer that ends at a PROT_NONE page, so an
 * over-read faults, and every encoder writes into such a buffer of exactly the
 * capacity it is given.
 */
#include <string.h>

#include "protocol/vmc-link.h"
#include "vmc-test-util.h"

#define SENTINEL 0xA5

/* ------------------------------------------------------------------------ */
/* Shared helpers                                                           */

/* A prefix decoder under test, type-erased. */
typedef struct {
    gsize out_size;
    VmcDecodeResult (*decode)(const guint8 *buf, gsize len, gpointer out, gsize *consumed);
    VmcDecodeResult out_also_written_on; /* an error that still fills *out, else OK */
} PrefixCodec;

static VmcDecodeResult
guarded_prefix_decode(const PrefixCodec *codec, const guint8 *data, gsize len, gpointer out,
                      gsize *consumed)
{
    guint8 *g = vmc_test_guarded_dup(data, len);
    VmcDecodeResult r;

    memset(out, SENTINEL, codec->out_size);
    *consumed = 0xdeadbeef;
    r = codec->decode(g, len, out, consumed);
    vmc_test_guarded_free(g, len);
    if (r != VMC_DECODE_OK && r != codec->out_also_written_on)
        g_assert_true(vmc_test_all_bytes_are(out, codec->out_size, SENTINEL));
    if (r != VMC_DECODE_OK)
        g_assert_cmpuint(*consumed, ==, 0xdeadbeef);
    return r;
}

/* Decodes the accumulated bytes after each cut, as a reader would, until a
 * result other than NEED_MORE. Returns it and in *fed how many bytes had
 * arrived. */
static VmcDecodeResult
feed_cuts(const PrefixCodec *codec, const guint8 *data, gsize len, const gsize *cuts,
          gsize ncuts, gpointer out, gsize *consumed, gsize *fed)
{
    VmcDecodeResult r = VMC_DECODE_NEED_MORE;

    *fed = 0;
    for (gsize i = 0; i < ncuts && r == VMC_DECODE_NEED_MORE; i++) {
        g_assert_cmpuint(cuts[i], <=, len);
        *fed = cuts[i];
        r = guarded_prefix_decode(codec, data, cuts[i], out, consumed);
    }
    return r;
}

/* The full treatment for one prefix-decoder input: whole, every prefix, split at
 * every offset, byte by byte, random pieces, trailing bytes. `decided_at` is the
 * shortest prefix for which the decoder gives `expect`. */
static void
check_prefix_decoder(const PrefixCodec *codec, const guint8 *data, gsize len,
                     VmcDecodeResult expect, gsize decided_at, gsize expect_consumed,
                     gpointer whole_out)
{
    g_autofree guint8 *out = g_malloc(codec->out_size);
    g_autofree gsize *cuts = g_new(gsize, len + 1);
    gsize consumed, fed;
    VmcDecodeResult r;

    g_assert_cmpuint(decided_at, <=, len);

    /* whole */
    r = guarded_prefix_decode(codec, data, len, whole_out, &consumed);
    g_assert_cmpint(r, ==, expect);
    if (r == VMC_DECODE_OK)
        g_assert_cmpuint(consumed, ==, expect_consumed);

    /* every prefix: NEED_MORE before decided_at, the final answer from there on */
    for (gsize p = 0; p < len; p++) {
        r = guarded_prefix_decode(codec, data, p, out, &consumed);
        g_assert_cmpint(r, ==, p < decided_at ? VMC_DECODE_NEED_MORE : expect);
    }

    /* split at every offset */
    for (gsize k = 1; k < len; k++) {
        cuts[0] = k;
        cuts[1] = len;
        r = feed_cuts(codec, data, len, cuts, 2, out, &consumed, &fed);
        g_assert_cmpint(r, ==, expect);
        g_assert_cmpuint(fed, ==, k >= decided_at ? k : len);
        if (r == VMC_DECODE_OK || r == codec->out_also_written_on)
            g_assert_cmpmem(out, codec->out_size, whole_out, codec->out_size);
    }

    /* byte by byte */
    for (gsize i = 0; i < len; i++)
        cuts[i] = i + 1;
    r = feed_cuts(codec, data, len, cuts, len, out, &consumed, &fed);
    g_assert_cmpint(r, ==, expect);
    g_assert_cmpuint(fed, ==, MAX(decided_at, 1));
    if (r == VMC_DECODE_OK || r == codec->out_also_written_on)
        g_assert_cmpmem(out, codec->out_size, whole_out, codec->out_size);

    /* random pieces (reproducible with --seed) */
    for (guint iter = 0; iter < 8; iter++) {
        gsize n = 0, at = 0;

        while (at < len) {
            at += (gsize)g_test_rand_int_range(1, 6);
            cuts[n++] = MIN(at, len);
        }
        r = feed_cuts(codec, data, len, cuts, n, out, &consumed, &fed);
        g_assert_cmpint(r, ==, expect);
        g_assert_cmpuint(fed, >=, decided_at);
    }

    /* trailing bytes are not looked at */
    if (expect == VMC_DECODE_OK) {
        g_autofree guint8 *longer = g_malloc(len + 7);

        memcpy(longer, data, len);
        memset(longer + len, 0xEE, 7);
        r = guarded_prefix_decode(codec, longer, len + 7, out, &consumed);
        g_assert_cmpint(r, ==, VMC_DECODE_OK);
        g_assert_cmpuint(consumed, ==, expect_consumed);
        g_assert_cmpmem(out, codec->out_size, whole_out, codec->out_size);
    }
}

/* Output buffer whose end touches a guard page: an encoder that writes past
 * `cap` faults. */
static guint8 *
guarded_out(gsize cap)
{
    g_autofree guint8 *zero = g_malloc0(MAX(cap, 1));

    return vmc_test_guarded_dup(zero, cap);
}

/* ------------------------------------------------------------------------ */
/* Link header                                                              */

static VmcDecodeResult
header_checked(const guint8 *buf, gsize len, gpointer out, gsize *consumed)
{
    return vmc_link_header_decode(buf, len, TRUE, out, consumed);
}

static VmcDecodeResult
header_unchecked(const guint8 *buf, gsize len, gpointer out, gsize *consumed)
{
    return vmc_link_header_decode(buf, len, FALSE, out, consumed);
}

static const PrefixCodec header_checked_codec = {
    sizeof(VmcLinkHeader), header_checked, VMC_DECODE_ERR_VERSION,
};
static const PrefixCodec header_unchecked_codec = {
    sizeof(VmcLinkHeader), header_unchecked, VMC_DECODE_ERR_VERSION,
};

typedef struct {
    const char *path;
    const char *hex;
    gboolean check_size;
    VmcDecodeResult expect;
    gsize decided_at;
    guint32 major, minor, size; /* checked on OK and ERR_VERSION */
} HeaderVector;

#define MAGIC "52 45 44 51 "

static const HeaderVector header_vectors[] = {
    /* the main link message header spice-gtk sends: 2.2, 26 bytes follow */
    { "main-26", MAGIC "02000000 02000000 | 1a000000", TRUE, VMC_DECODE_OK, 16, 2, 2, 26 },
    { "size-18-min", MAGIC "02000000 02000000 | 12000000", TRUE, VMC_DECODE_OK, 16, 2, 2, 18 },
    { "size-4096-max", MAGIC "02000000 02000000 | 00100000", TRUE, VMC_DECODE_OK, 16, 2, 2,
      4096 },
    /* the minor version is never checked (reference: minor 99 accepted) */
    { "minor-99", MAGIC "02000000 63000000 | 1a000000", TRUE, VMC_DECODE_OK, 16, 2, 99, 26 },
    { "minor-0", MAGIC "02000000 00000000 | 1a000000", TRUE, VMC_DECODE_OK, 16, 2, 0, 26 },
    { "minor-max", MAGIC "02000000 ffffffff | 1a000000", TRUE, VMC_DECODE_OK, 16, 2,
      0xFFFFFFFF, 26 },
    /* size bounds 18..4096 (CVE-2016-9578) */
    { "size-0", MAGIC "02000000 02000000 | 00000000", TRUE, VMC_DECODE_ERR_SIZE, 16 },
    { "size-17", MAGIC "02000000 02000000 | 11000000", TRUE, VMC_DECODE_ERR_SIZE, 16 },
    { "size-4097", MAGIC "02000000 02000000 | 01100000", TRUE, VMC_DECODE_ERR_SIZE, 16 },
    { "size-0xaaaaaaaa", MAGIC "02000000 02000000 | aaaaaaaa", TRUE, VMC_DECODE_ERR_SIZE, 16 },
    { "size-0xffffffff", MAGIC "02000000 02000000 | ffffffff", TRUE, VMC_DECODE_ERR_SIZE, 16 },
    { "size-0x80000000", MAGIC "02000000 02000000 | 00000080", TRUE, VMC_DECODE_ERR_SIZE, 16 },
    /* a client decoding the server's reply header does not bound the size */
    { "unchecked-size-0", MAGIC "02000000 02000000 | 00000000", FALSE, VMC_DECODE_OK, 16, 2, 2,
      0 },
    { "unchecked-size-4097", MAGIC "02000000 02000000 | 01100000", FALSE, VMC_DECODE_OK, 16, 2, 2,
      4097 },
    { "unchecked-size-max", MAGIC "02000000 02000000 | ffffffff", FALSE, VMC_DECODE_OK, 16, 2, 2,
      0xFFFFFFFF },
    { "unchecked-reply-186", MAGIC "02000000 02000000 | ba000000", FALSE, VMC_DECODE_OK, 16, 2, 2,
      186 },
    /* major version: 0 closes silently, 1 and 3 get VERSION_MISMATCH; *out is set */
    { "major-0", MAGIC "00000000 02000000 | 1a000000", TRUE, VMC_DECODE_ERR_VERSION, 16, 0, 2,
      26 },
    { "major-1", MAGIC "01000000 02000000 | 1a000000", TRUE, VMC_DECODE_ERR_VERSION, 16, 1, 2,
      26 },
    { "major-3", MAGIC "03000000 02000000 | 1a000000", TRUE, VMC_DECODE_ERR_VERSION, 16, 3, 2,
      26 },
    { "major-big-endian-2", MAGIC "00000002 02000000 | 1a000000", TRUE, VMC_DECODE_ERR_VERSION,
      16, 0x02000000, 2, 26 },
    /* version is checked before size */
    { "major-3-size-0", MAGIC "03000000 02000000 | 00000000", TRUE, VMC_DECODE_ERR_VERSION, 16, 3,
      2, 0 },
    { "unchecked-major-1", MAGIC "01000000 02000000 | 1a000000", FALSE, VMC_DECODE_ERR_VERSION,
      16, 1, 2, 26 },
    /* magic: decided as soon as its four bytes are in, before version and size */
    { "magic-qder", "51 44 45 52 02000000 02000000 1a000000", TRUE, VMC_DECODE_ERR_MAGIC, 4 },
    { "magic-zero", "00000000 02000000 02000000 1a000000", TRUE, VMC_DECODE_ERR_MAGIC, 4 },
    { "magic-http-get", "47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31 0d 0a", TRUE,
      VMC_DECODE_ERR_MAGIC, 4 },
    { "magic-last-byte", "52 45 44 52 02000000 02000000 1a000000", TRUE, VMC_DECODE_ERR_MAGIC,
      4 },
    { "magic-and-major-and-size", "ffffffff 00000000 00000000 ffffffff", TRUE,
      VMC_DECODE_ERR_MAGIC, 4 },
    { "unchecked-magic", "52 45 44 00 02000000 02000000 ba000000", FALSE, VMC_DECODE_ERR_MAGIC,
      4 },
};

static void
test_header_vector(gconstpointer data)
{
    const HeaderVector *v = data;
    g_autoptr(GBytes) b = vmc_test_hex_bytes(v->hex);
    const PrefixCodec *codec = v->check_size ? &header_checked_codec : &header_unchecked_codec;
    VmcLinkHeader h;

    g_assert_cmpuint(g_bytes_get_size(b), ==, VMC_LINK_HEADER_SIZE);
    check_prefix_decoder(codec, g_bytes_get_data(b, NULL), g_bytes_get_size(b), v->expect,
                         v->decided_at, VMC_LINK_HEADER_SIZE, &h);
    if (v->expect == VMC_DECODE_OK || v->expect == VMC_DECODE_ERR_VERSION) {
        guint8 enc[VMC_LINK_HEADER_SIZE];

        g_assert_cmphex(h.magic, ==, VMC_LINK_MAGIC);
        g_assert_cmpuint(h.major_version, ==, v->major);
        g_assert_cmpuint(h.minor_version, ==, v->minor);
        g_assert_cmpuint(h.size, ==, v->size);
        /* re-encoding gives the same bytes */
        vmc_link_header_encode(&h, enc);
        g_assert_cmpmem(enc, sizeof enc, g_bytes_get_data(b, NULL), g_bytes_get_size(b));
    }
}

static void
test_header_size_boundaries(void)
{
    /* every size from 0 to 4200 and a few large ones, checked and unchecked */
    static const guint32 big[] = { 0x7FFFFFFF, 0x80000000, 0xAAAAAAAA, 0xFFFFFFFE, 0xFFFFFFFF };
    guint8 buf[VMC_LINK_HEADER_SIZE];
    VmcLinkHeader h = { VMC_LINK_MAGIC, 2, 2, 0 }, out;
    gsize consumed;

    for (guint32 size = 0; size < 4200 + G_N_ELEMENTS(big); size++) {
        guint32 s = size < 4200 ? size : big[size - 4200];
        gboolean in_range = s >= 18 && s <= 4096;

        h.size = s;
        vmc_link_header_encode(&h, buf);
        g_assert_cmpint(vmc_link_header_decode(buf, sizeof buf, TRUE, &out, &consumed), ==,
                        in_range ? VMC_DECODE_OK : VMC_DECODE_ERR_SIZE);
        g_assert_cmpint(vmc_link_header_decode(buf, sizeof buf, FALSE, &out, &consumed), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(out.size, ==, s);
    }
}

static void
test_header_major_versions(void)
{
    static const guint32 majors[] = { 0, 1, 2, 3, 4, 0x100, 0xFFFFFFFF };
    guint8 buf[VMC_LINK_HEADER_SIZE];
    VmcLinkHeader out;
    gsize consumed;

    for (gsize i = 0; i < G_N_ELEMENTS(majors); i++) {
        VmcLinkHeader h = { VMC_LINK_MAGIC, majors[i], 2, 100 };

        vmc_link_header_encode(&h, buf);
        memset(&out, 0, sizeof out);
        g_assert_cmpint(vmc_link_header_decode(buf, sizeof buf, TRUE, &out, &consumed), ==,
                        majors[i] == 2 ? VMC_DECODE_OK : VMC_DECODE_ERR_VERSION);
        g_assert_cmpuint(out.major_version, ==, majors[i]);
    }
}

static void
test_header_random_roundtrip(void)
{
    for (guint i = 0; i < 200; i++) {
        VmcLinkHeader h = {
            VMC_LINK_MAGIC,
            2,
            g_test_rand_int(),
            (guint32)g_test_rand_int_range(VMC_LINK_MIN_SIZE, VMC_LINK_MAX_SIZE + 1),
        };
        VmcLinkHeader out;
        guint8 buf[VMC_LINK_HEADER_SIZE];
        gsize consumed = 0;

        vmc_link_header_encode(&h, buf);
        g_assert_cmphex(vmc_get_u32le(buf), ==, 0x51444552);
        g_assert_cmpmem(buf, 4, "REDQ", 4);
        g_assert_cmpint(vmc_link_header_decode(buf, sizeof buf, TRUE, &out, &consumed), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(consumed, ==, 16);
        g_assert_cmpmem(&out, sizeof out, &h, sizeof h);
    }
}

/* ------------------------------------------------------------------------ */
/* SpiceLinkMess                                                            */

typedef struct {
    const char *path;
    const char *hex; /* the SpiceLinkMess only, without the link header */
    VmcDecodeResult expect;
    guint32 connection_id;
    guint8 channel_type, channel_id;
    guint32 ncommon, nchannel, caps_offset;
    guint32 common[VMC_LINK_CAPS_KEEP], channel[VMC_LINK_CAPS_KEEP];
} MessVector;

/*                  connection_id  type id   ncommon   nchannel  caps_offset */
static const MessVector mess_vectors[] = {
    /* what spice-gtk sends for the main channel: AUTH_SELECTION|AUTH_SPICE|MINI_HEADER,
     * SEMI_SEAMLESS|NAME_AND_UUID|AGENT_CONNECTED_TOKENS|SEAMLESS */
    { "main-gtk", "00000000 | 01 00 | 01000000 | 01000000 | 12000000 | 0b000000 | 0f000000",
      VMC_DECODE_OK, 0, 1, 0, 1, 1, 18, { 0x0B }, { 0x0F } },
    { "inputs-session", "67458b6b | 03 00 | 01000000 | 00000000 | 12000000 | 0b000000",
      VMC_DECODE_OK, 0x6B8B4567, 3, 0, 1, 0, 18, { 0x0B } },
    { "display-id-7", "01000000 | 02 07 | 00000000 | 01000000 | 12000000 | ffffffff",
      VMC_DECODE_OK, 1, 2, 7, 0, 1, 18, { 0 }, { 0xFFFFFFFF } },
    /* zero caps: caps_offset is not checked at all */
    { "no-caps-offset-0", "00000000 | 01 00 | 00000000 | 00000000 | 00000000", VMC_DECODE_OK, 0,
      1, 0, 0, 0, 0 },
    { "no-caps-offset-10", "00000000 | 01 00 | 00000000 | 00000000 | 0a000000", VMC_DECODE_OK, 0,
      1, 0, 0, 0, 10 },
    { "no-caps-offset-max", "00000000 | 01 00 | 00000000 | 00000000 | ffffffff", VMC_DECODE_OK, 0,
      1, 0, 0, 0, 0xFFFFFFFF },
    /* caps_offset < 18 with caps (reference [V] caps_offset 10) */
    { "caps-offset-10", "00000000 | 01 00 | 01000000 | 01000000 | 0a000000 | 0b000000 0f000000",
      VMC_DECODE_ERR_CAPS },
    { "caps-offset-0", "00000000 | 01 00 | 01000000 | 00000000 | 00000000 | 0b000000",
      VMC_DECODE_ERR_CAPS },
    { "caps-offset-17", "00000000 | 01 00 | 00000000 | 01000000 | 11000000 | 0f000000 00",
      VMC_DECODE_ERR_CAPS },
    /* caps after a gap: offset 22 is fine if the words fit */
    { "caps-offset-22", "00000000 | 01 00 | 01000000 | 01000000 | 16000000 | eeeeeeee | "
      "0b000000 0f000000", VMC_DECODE_OK, 0, 1, 0, 1, 1, 22, { 0x0B }, { 0x0F } },
    /* caps_offset + 4 * n one past the end */
    { "caps-offset-19-one-past", "00000000 | 01 00 | 01000000 | 01000000 | 13000000 | "
      "0b000000 0f000000", VMC_DECODE_ERR_CAPS },
    { "caps-count-past-end", "00000000 | 01 00 | 02000000 | 01000000 | 12000000 | "
      "0b000000 0f000000", VMC_DECODE_ERR_CAPS },
    /* an offset whose 32-bit sum with 4 * n wraps (0xFFFFFFFC + 4 = 0) */
    { "caps-offset-wraps", "00000000 | 01 00 | 01000000 | 00000000 | fcffffff | 0b000000",
      VMC_DECODE_ERR_CAPS },
    { "caps-offset-max", "00000000 | 01 00 | 00000000 | 01000000 | ffffffff | 0b000000",
      VMC_DECODE_ERR_CAPS },
    /* counts over 1024, checked before the offset (CVE-2016-9578 (b)) */
    { "ncommon-1025", "00000000 | 01 00 | 01040000 | 00000000 | 12000000", VMC_DECODE_ERR_CAPS },
    { "nchannel-1025", "00000000 | 01 00 | 00000000 | 01040000 | 12000000", VMC_DECODE_ERR_CAPS },
    { "counts-2x-0x80000000", "00000000 | 01 00 | 00000080 | 00000080 | 12000000",
      VMC_DECODE_ERR_CAPS },
    { "counts-0xffffffff-1", "00000000 | 01 00 | ffffffff | 01000000 | 12000000 | 00000000",
      VMC_DECODE_ERR_CAPS },
    /* more caps than kept: only the first 4 words of each array are stored */
    { "six-common-words", "00000000 | 01 00 | 06000000 | 00000000 | 12000000 | "
      "01000000 02000000 03000000 04000000 05000000 06000000", VMC_DECODE_OK, 0, 1, 0, 6, 0, 18,
      { 1, 2, 3, 4 } },
    { "five-channel-words", "00000000 | 01 00 | 01000000 | 05000000 | 12000000 | 0b000000 | "
      "11000000 12000000 13000000 14000000 15000000", VMC_DECODE_OK, 0, 1, 0, 1, 5, 18,
      { 0x0B }, { 0x11, 0x12, 0x13, 0x14 } },
    /* trailing bytes after the caps are allowed (size counts them) */
    { "trailing-after-caps", "00000000 | 01 00 | 01000000 | 00000000 | 12000000 | 0b000000 | "
      "aabbccdd", VMC_DECODE_OK, 0, 1, 0, 1, 0, 18, { 0x0B } },
};

/* An independent statement of the reference's rule, in 64-bit arithmetic. */
static VmcDecodeResult
mess_model(const guint8 *b, gsize len, gsize fixed, gsize counts_at)
{
    guint64 nc, nch, off;

    if (len < fixed)
        return VMC_DECODE_NEED_MORE;
    nc = vmc_get_u32le(b + counts_at);
    nch = vmc_get_u32le(b + counts_at + 4);
    off = vmc_get_u32le(b + counts_at + 8);
    if (nc > 1024 || nch > 1024)
        return VMC_DECODE_ERR_CAPS;
    if (nc + nch > 0 && (off < fixed || off + 4 * (nc + nch) > len))
        return VMC_DECODE_ERR_CAPS;
    return VMC_DECODE_OK;
}

static VmcDecodeResult
guarded_mess_decode(const guint8 *data, gsize len, VmcLinkMess *out, gsize *consumed)
{
    guint8 *g = vmc_test_guarded_dup(data, len);
    VmcDecodeResult r;

    memset(out, SENTINEL, sizeof *out);
    *consumed = 0xdeadbeef;
    r = vmc_link_mess_decode(g, len, out, consumed);
    vmc_test_guarded_free(g, len);
    if (r != VMC_DECODE_OK) {
        g_assert_true(vmc_test_all_bytes_are(out, sizeof *out, SENTINEL));
        g_assert_cmpuint(*consumed, ==, 0xdeadbeef);
    } else {
        g_assert_cmpuint(*consumed, ==, len);
    }
    return r;
}

static void
test_mess_vector(gconstpointer data)
{
    const MessVector *v = data;
    g_autoptr(GBytes) b = vmc_test_hex_bytes(v->hex);
    const guint8 *bytes = g_bytes_get_data(b, NULL);
    gsize len = g_bytes_get_size(b);
    VmcLinkMess m;
    gsize consumed;

    g_assert_cmpint(mess_model(bytes, len, 18, 6), ==, v->expect);
    g_assert_cmpint(guarded_mess_decode(bytes, len, &m, &consumed), ==, v->expect);

    if (v->expect == VMC_DECODE_OK) {
        g_assert_cmpuint(m.connection_id, ==, v->connection_id);
        g_assert_cmpuint(m.channel_type, ==, v->channel_type);
        g_assert_cmpuint(m.channel_id, ==, v->channel_id);
        g_assert_cmpuint(m.num_common_caps, ==, v->ncommon);
        g_assert_cmpuint(m.num_channel_caps, ==, v->nchannel);
        g_assert_cmpuint(m.caps_offset, ==, v->caps_offset);
        g_assert_cmpmem(m.common_caps, sizeof m.common_caps, v->common, sizeof v->common);
        g_assert_cmpmem(m.channel_caps, sizeof m.channel_caps, v->channel, sizeof v->channel);
    }

    /* every strict prefix: NEED_MORE below 18 bytes, else what the rule says
     * for a message of that size (ERR_CAPS once the caps are cut) */
    for (gsize p = 0; p < len; p++) {
        VmcDecodeResult r = guarded_mess_decode(bytes, p, &m, &consumed);

        if (p < VMC_LINK_MESS_SIZE)
            g_assert_cmpint(r, ==, VMC_DECODE_NEED_MORE);
        else
            g_assert_cmpint(r, ==, mess_model(bytes, p, 18, 6));
    }
}

/* The whole client link: header + message, as one stream, every split. */
static void
test_mess_main_link_stream(void)
{
    g_autoptr(GBytes) b = vmc_test_hex_bytes(
        /* SpiceLinkHeader */ "52454451 02000000 02000000 1a000000"
        /* SpiceLinkMess   */ "00000000 01 00 01000000 01000000 12000000"
        /* caps            */ "0b000000 0f000000");
    const guint8 *bytes = g_bytes_get_data(b, NULL);
    gsize len = g_bytes_get_size(b);

    g_assert_cmpuint(len, ==, 42);
    for (gsize k = 0; k <= len; k++) {
        /* a reader that got k bytes first, then the rest */
        VmcLinkHeader h;
        VmcLinkMess m;
        gsize consumed, have = k;
        VmcDecodeResult r = vmc_link_header_decode(bytes, have, TRUE, &h, &consumed);

        if (r == VMC_DECODE_NEED_MORE) {
            g_assert_cmpuint(have, <, 16);
            have = len;
            r = vmc_link_header_decode(bytes, have, TRUE, &h, &consumed);
        }
        g_assert_cmpint(r, ==, VMC_DECODE_OK);
        g_assert_cmpuint(consumed, ==, 16);
        g_assert_cmpuint(h.size, ==, 26);
        /* a body decoder only ever sees the complete h.size bytes */
        g_assert_cmpuint(have, >=, 16);
        if (have - 16 < h.size)
            have = len;
        g_assert_cmpuint(have - 16, >=, h.size);
        g_assert_cmpint(guarded_mess_decode(bytes + 16, h.size, &m, &consumed), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(m.channel_type, ==, SPICE_CHANNEL_MAIN);
        g_assert_true(vmc_caps_test(m.common_caps, VMC_LINK_CAPS_KEEP,
                                    SPICE_COMMON_CAP_MINI_HEADER));
        g_assert_true(vmc_caps_test(m.common_caps, VMC_LINK_CAPS_KEEP,
                                    SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION));
        g_assert_true(vmc_caps_test(m.channel_caps, VMC_LINK_CAPS_KEEP,
                                    SPICE_MAIN_CAP_AGENT_CONNECTED_TOKENS));
        g_assert_false(vmc_caps_test(m.common_caps, VMC_LINK_CAPS_KEEP,
                                     SPICE_COMMON_CAP_AUTH_SASL));
    }
}

/* Builds a link message with n common and m channel words, caps_offset 18. */
static guint8 *
build_mess(guint32 ncommon, guint32 nchannel, gsize *len)
{
    VmcLinkMess m = { .connection_id = 5, .channel_type = 1 };
    g_autofree guint32 *c = g_new(guint32, (gsize)ncommon + 1);
    g_autofree guint32 *ch = g_new(guint32, (gsize)nchannel + 1);
    gsize cap = 18 + 4 * ((gsize)ncommon + nchannel);
    guint8 *out = g_malloc(cap);

    for (guint32 i = 0; i < ncommon; i++)
        c[i] = i + 1;
    for (guint32 i = 0; i < nchannel; i++)
        ch[i] = 0x1000 + i;
    *len = vmc_link_mess_encode(&m, c, ncommon, ch, nchannel, out, cap);
    g_assert_cmpuint(*len, ==, cap);
    return out;
}

static void
test_mess_caps_1024(void)
{
    VmcLinkMess m;
    gsize len, consumed;
    g_autofree guint8 *a = build_mess(1024, 1024, &len);
    g_autofree guint8 *b = NULL;

    /* 1024 of each is the most; the decoder itself does not bound len (the header does) */
    g_assert_cmpuint(len, ==, 18 + 8192);
    g_assert_cmpint(guarded_mess_decode(a, len, &m, &consumed), ==, VMC_DECODE_OK);
    g_assert_cmpuint(m.num_common_caps, ==, 1024);
    g_assert_cmpuint(m.num_channel_caps, ==, 1024);
    g_assert_cmpuint(m.common_caps[0], ==, 1);
    g_assert_cmpuint(m.common_caps[3], ==, 4);
    g_assert_cmpuint(m.channel_caps[0], ==, 0x1000);
    g_assert_cmpuint(m.channel_caps[3], ==, 0x1003);
    /* inside the 4096-byte limit 1024 words cannot fit with the fixed part */
    g_assert_cmpint(guarded_mess_decode(a, 4096, &m, &consumed), ==, VMC_DECODE_ERR_CAPS);

    /* 1025 in either count */
    vmc_put_u32le(a + 6, 1025);
    g_assert_cmpint(guarded_mess_decode(a, len, &m, &consumed), ==, VMC_DECODE_ERR_CAPS);
    vmc_put_u32le(a + 6, 1024);
    vmc_put_u32le(a + 10, 1025);
    g_assert_cmpint(guarded_mess_decode(a, len, &m, &consumed), ==, VMC_DECODE_ERR_CAPS);

    /* 1025 words that do fit are still refused: the count alone decides */
    {
        g_autofree guint8 *c = build_mess(1025, 0, &len);
        g_autofree guint8 *d = build_mess(0, 1025, &len);
        g_autofree guint8 *e = build_mess(1024, 0, &len);

        g_assert_cmpint(guarded_mess_decode(c, 18 + 4100, &m, &consumed), ==,
                        VMC_DECODE_ERR_CAPS);
        g_assert_cmpint(guarded_mess_decode(d, 18 + 4100, &m, &consumed), ==,
                        VMC_DECODE_ERR_CAPS);
        g_assert_cmpint(guarded_mess_decode(e, 18 + 4096, &m, &consumed), ==, VMC_DECODE_OK);
        g_assert_cmpuint(m.num_common_caps, ==, 1024);
        g_assert_cmpint(mess_model(c, 18 + 4100, 18, 6), ==, VMC_DECODE_ERR_CAPS);
    }

    /* the most that fits a 4096-byte message: 1019 words */
    b = build_mess(1000, 19, &len);
    g_assert_cmpuint(len, ==, 4094);
    g_assert_cmpint(guarded_mess_decode(b, len, &m, &consumed), ==, VMC_DECODE_OK);
    g_assert_cmpint(guarded_mess_decode(b, len - 1, &m, &consumed), ==, VMC_DECODE_ERR_CAPS);
}

static void
test_mess_encode(void)
{
    VmcLinkMess m = { .connection_id = 0x6B8B4567, .channel_type = 3, .channel_id = 1 };
    const guint32 common[] = { 0x0B };
    const guint32 channel[] = { 0x01, 0x80000000 };
    g_autoptr(GBytes) want =
        vmc_test_hex_bytes("67458b6b 03 01 01000000 02000000 12000000 0b000000 "
                           "01000000 00000080");
    gsize need = g_bytes_get_size(want);

    /* too small for every shorter capacity; exact capacity works */
    for (gsize cap = 0; cap <= need; cap++) {
        guint8 *out = guarded_out(cap);
        gsize n = vmc_link_mess_encode(&m, common, 1, channel, 2, out, cap);

        g_assert_cmpuint(n, ==, cap == need ? need : 0);
        if (n)
            g_assert_cmpmem(out, n, g_bytes_get_data(want, NULL), need);
        vmc_test_guarded_free(out, cap);
    }
    /* no caps: the fixed part only, caps_offset 18 */
    {
        VmcLinkMess main_mess = { .connection_id = 1, .channel_type = 1 };
        guint8 out[18];
        g_autoptr(GBytes) w0 = vmc_test_hex_bytes("01000000 01 00 00000000 00000000 12000000");

        g_assert_cmpuint(vmc_link_mess_encode(&main_mess, NULL, 0, NULL, 0, out, sizeof out), ==,
                         18);
        g_assert_cmpmem(out, 18, g_bytes_get_data(w0, NULL), 18);
        g_assert_cmpuint(vmc_link_mess_encode(&main_mess, NULL, 0, NULL, 0, out, 17), ==, 0);
    }
}

static void
test_mess_random_roundtrip(void)
{
    for (guint iter = 0; iter < 300; iter++) {
        guint32 nc = (guint32)g_test_rand_int_range(0, 9);
        guint32 nch = (guint32)g_test_rand_int_range(0, 9);
        guint32 c[8], ch[8];
        VmcLinkMess m = {
            .connection_id = g_test_rand_int(),
            .channel_type = (guint8)g_test_rand_int_range(0, 256),
            .channel_id = (guint8)g_test_rand_int_range(0, 256),
        };
        VmcLinkMess out;
        guint8 buf[16 + 18 + 64];
        VmcLinkHeader h = { VMC_LINK_MAGIC, 2, 2, 0 }, hout;
        gsize n, consumed;

        for (guint i = 0; i < 8; i++) {
            c[i] = g_test_rand_int();
            ch[i] = g_test_rand_int();
        }
        n = vmc_link_mess_encode(&m, c, nc, ch, nch, buf + 16, sizeof buf - 16);
        g_assert_cmpuint(n, ==, 18 + 4 * (nc + nch));
        h.size = (guint32)n;
        vmc_link_header_encode(&h, buf);

        g_assert_cmpint(vmc_link_header_decode(buf, 16 + n, TRUE, &hout, &consumed), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(hout.size, ==, n);
        g_assert_cmpint(guarded_mess_decode(buf + 16, hout.size, &out, &consumed), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(out.connection_id, ==, m.connection_id);
        g_assert_cmpuint(out.channel_type, ==, m.channel_type);
        g_assert_cmpuint(out.channel_id, ==, m.channel_id);
        g_assert_cmpuint(out.num_common_caps, ==, nc);
        g_assert_cmpuint(out.num_channel_caps, ==, nch);
        g_assert_cmpuint(out.caps_offset, ==, 18);
        for (guint i = 0; i < VMC_LINK_CAPS_KEEP; i++) {
            g_assert_cmphex(out.common_caps[i], ==, i < nc ? c[i] : 0);
            g_assert_cmphex(out.channel_caps[i], ==, i < nch ? ch[i] : 0);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* SpiceLinkReply                                                           */

/* A real RSA-1024 SubjectPublicKeyInfo (e = 65537), DER: 162 bytes. */
#define PUBKEY_HEX                                                                                \
    "30819f300d06092a864886f70d010101 050003818d0030818902818100cd3e27"                           \
    "62c85edb86b8761266753fccebaa3794 7f4a7e20a09c79f3dc9986111ff04a8f"                           \
    "2f7ad330026e48837b2707475346893a ef5cc1286c24ff5ce873004b98eab85c"                           \
    "1aa9e656e9585b8f4911f37266fb63dc 05f933ccbf1d634a04a4d2c5d06854aa"                           \
    "c11928d424a7f728ba246dfa20d23257 050b7fcd3898223398d9831eb7020301"                           \
    "0001"

#define ZERO16 "00000000000000000000000000000000"
#define ZERO_PUBKEY_HEX ZERO16 ZERO16 ZERO16 ZERO16 ZERO16 ZERO16 ZERO16 ZERO16 ZERO16 ZERO16 "0000"

/* The reference's main link reply [V]: 16 + 186 bytes, one common word 0x0B, one
 * main word 0x0F, caps_offset 178. */
static const char main_reply_hex[] =
    "52454451 02000000 02000000 ba000000"      /* header, size 186 */
    "00000000"                                 /* error OK */
    PUBKEY_HEX                                 /* pub_key[162] */
    "01000000 01000000 b2000000"               /* ncommon 1, nchannel 1, caps_offset 178 */
    "0b000000"                                 /* AUTH_SELECTION|AUTH_SPICE|MINI_HEADER */
    "0f000000";                                /* main: bits 0..3 */

/* The reference's link error INVALID_MAGIC: a zeroed reply with error 2. */
static const char error_reply_hex[] =
    "52454451 02000000 02000000 b2000000"      /* header, size 178 */
    "02000000"                                 /* error INVALID_MAGIC */
    ZERO_PUBKEY_HEX                            /* pub_key zero */
    "00000000 00000000 00000000";              /* no caps, caps_offset 0 */

static VmcDecodeResult
guarded_reply_decode(const guint8 *data, gsize len, VmcLinkReply *out, gsize *consumed)
{
    guint8 *g = vmc_test_guarded_dup(data, len);
    VmcDecodeResult r;

    memset(out, SENTINEL, sizeof *out);
    *consumed = 0xdeadbeef;
    r = vmc_link_reply_decode(g, len, out, consumed);
    vmc_test_guarded_free(g, len);
    if (r != VMC_DECODE_OK) {
        g_assert_true(vmc_test_all_bytes_are(out, sizeof *out, SENTINEL));
        g_assert_cmpuint(*consumed, ==, 0xdeadbeef);
    } else {
        g_assert_cmpuint(*consumed, ==, len);
    }
    return r;
}

static void
test_reply_main_reference(void)
{
    g_autoptr(GBytes) b = vmc_test_hex_bytes(main_reply_hex);
    g_autoptr(GBytes) key = vmc_test_hex_bytes(PUBKEY_HEX);
    const guint8 *bytes = g_bytes_get_data(b, NULL);
    gsize len = g_bytes_get_size(b);
    VmcLinkHeader h;
    VmcLinkReply r;
    gsize consumed;
    const guint32 common = 0x0B, channel = 0x0F;

    g_assert_cmpuint(g_bytes_get_size(key), ==, VMC_TICKET_PUBKEY_BYTES);
    g_assert_cmpuint(len, ==, 16 + 186);

    /* client side: header without size bounds, then the reply */
    g_assert_cmpint(vmc_link_header_decode(bytes, len, FALSE, &h, &consumed), ==, VMC_DECODE_OK);
    g_assert_cmpuint(h.size, ==, 186);
    g_assert_cmpint(guarded_reply_decode(bytes + 16, h.size, &r, &consumed), ==, VMC_DECODE_OK);
    g_assert_cmpuint(r.error, ==, SPICE_LINK_ERR_OK);
    g_assert_cmpmem(r.pub_key, sizeof r.pub_key, g_bytes_get_data(key, NULL), 162);
    g_assert_cmpuint(r.num_common_caps, ==, 1);
    g_assert_cmpuint(r.num_channel_caps, ==, 1);
    g_assert_cmpuint(r.caps_offset, ==, 178);
    g_assert_cmphex(r.common_caps[0], ==, 0x0B);
    g_assert_cmphex(r.channel_caps[0], ==, 0x0F);
    g_assert_cmphex(r.common_caps[1], ==, 0);
    g_assert_true(vmc_caps_test(r.common_caps, 4, SPICE_COMMON_CAP_AUTH_SPICE));
    g_assert_false(vmc_caps_test(r.common_caps, 4, SPICE_COMMON_CAP_AUTH_SASL));
    g_assert_true(vmc_caps_test(r.channel_caps, 4, SPICE_MAIN_CAP_SEAMLESS_MIGRATE));

    /* server side: encoding gives exactly these bytes, and nothing fits a smaller buffer */
    for (gsize cap = 0; cap <= len; cap++) {
        guint8 *out = guarded_out(cap);
        gsize n = vmc_link_reply_encode(&r, &common, 1, &channel, 1, out, cap);

        g_assert_cmpuint(n, ==, cap == len ? len : 0);
        if (n)
            g_assert_cmpmem(out, n, bytes, len);
        vmc_test_guarded_free(out, cap);
    }

    /* every strict prefix of the reply body: NEED_MORE below 178, then ERR_CAPS */
    for (gsize p = 0; p < 186; p++) {
        VmcDecodeResult res = guarded_reply_decode(bytes + 16, p, &r, &consumed);

        g_assert_cmpint(res, ==, p < 178 ? VMC_DECODE_NEED_MORE : VMC_DECODE_ERR_CAPS);
        g_assert_cmpint(res, ==, mess_model(bytes + 16, p, 178, 166));
    }
}

static void
test_reply_link_error(void)
{
    g_autoptr(GBytes) b = vmc_test_hex_bytes(error_reply_hex);
    const guint8 *bytes = g_bytes_get_data(b, NULL);
    gsize len = g_bytes_get_size(b);
    guint8 out[VMC_LINK_HEADER_SIZE + VMC_LINK_REPLY_SIZE];
    VmcLinkHeader h;
    VmcLinkReply r;
    gsize consumed;

    g_assert_cmpuint(len, ==, 16 + 178);
    vmc_link_error_encode(SPICE_LINK_ERR_INVALID_MAGIC, out);
    g_assert_cmpmem(out, sizeof out, bytes, len);

    g_assert_cmpint(vmc_link_header_decode(bytes, len, FALSE, &h, &consumed), ==, VMC_DECODE_OK);
    g_assert_cmpuint(h.size, ==, 178);
    g_assert_cmpint(guarded_reply_decode(bytes + 16, 178, &r, &consumed), ==, VMC_DECODE_OK);
    g_assert_cmpuint(r.error, ==, 2);
    g_assert_true(vmc_test_all_bytes_are(r.pub_key, sizeof r.pub_key, 0));
    g_assert_cmpuint(r.num_common_caps, ==, 0);
    g_assert_cmpuint(r.num_channel_caps, ==, 0);
    g_assert_cmpuint(r.caps_offset, ==, 0);
    for (gsize p = 0; p < 178; p++)
        g_assert_cmpint(guarded_reply_decode(bytes + 16, p, &r, &consumed), ==,
                        VMC_DECODE_NEED_MORE);

    /* every code the server sends as a link error */
    for (guint32 e = SPICE_LINK_ERR_ERROR; e < SPICE_LINK_ERR_ENUM_END; e++) {
        vmc_link_error_encode(e, out);
        g_assert_cmpmem(out, 16, bytes, 16);
        g_assert_cmpuint(vmc_get_u32le(out + 16), ==, e);
        g_assert_true(vmc_test_all_bytes_are(out + 20, 174, 0));
        g_assert_cmpint(guarded_reply_decode(out + 16, 178, &r, &consumed), ==, VMC_DECODE_OK);
        g_assert_cmpuint(r.error, ==, e);
    }
}

static void
test_reply_bad_caps(void)
{
    g_autoptr(GBytes) b = vmc_test_hex_bytes(main_reply_hex);
    g_autofree guint8 *body = g_memdup2((const guint8 *)g_bytes_get_data(b, NULL) + 16, 186);
    VmcLinkReply r;
    gsize consumed;
    static const struct {
        guint32 nc, nch, off;
        VmcDecodeResult expect;
    } cases[] = {
        { 1, 1, 178, VMC_DECODE_OK },
        { 1, 1, 177, VMC_DECODE_ERR_CAPS },      /* offset inside the fixed part */
        { 1, 1, 18, VMC_DECODE_ERR_CAPS },       /* a link message's offset */
        { 1, 1, 179, VMC_DECODE_ERR_CAPS },      /* one past the end */
        { 2, 0, 178, VMC_DECODE_OK },
        { 0, 2, 178, VMC_DECODE_OK },
        { 2, 1, 178, VMC_DECODE_ERR_CAPS },
        { 0, 0, 0, VMC_DECODE_OK },              /* no caps: offset unchecked */
        { 0, 0, 0xFFFFFFFF, VMC_DECODE_OK },
        { 1025, 0, 178, VMC_DECODE_ERR_CAPS },
        { 0, 1025, 178, VMC_DECODE_ERR_CAPS },
        { 0x80000000, 0x80000000, 178, VMC_DECODE_ERR_CAPS },
        { 1, 0, 0xFFFFFFFC, VMC_DECODE_ERR_CAPS },
        { 1, 0, 182, VMC_DECODE_OK },            /* last word alone */
        { 1, 0, 183, VMC_DECODE_ERR_CAPS },
    };
    /* 1025 words that fit are refused for the count alone */
    g_autofree guint8 *big = g_malloc0(178 + 4 * 1025);

    memcpy(big, body, 178);
    vmc_put_u32le(big + 166, 1025);
    vmc_put_u32le(big + 170, 0);
    vmc_put_u32le(big + 174, 178);
    g_assert_cmpint(guarded_reply_decode(big, 178 + 4 * 1025, &r, &consumed), ==,
                    VMC_DECODE_ERR_CAPS);
    vmc_put_u32le(big + 166, 0);
    vmc_put_u32le(big + 170, 1025);
    g_assert_cmpint(guarded_reply_decode(big, 178 + 4 * 1025, &r, &consumed), ==,
                    VMC_DECODE_ERR_CAPS);
    vmc_put_u32le(big + 170, 1024);
    g_assert_cmpint(guarded_reply_decode(big, 178 + 4 * 1025, &r, &consumed), ==,
                    VMC_DECODE_OK);

    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        vmc_put_u32le(body + 166, cases[i].nc);
        vmc_put_u32le(body + 170, cases[i].nch);
        vmc_put_u32le(body + 174, cases[i].off);
        g_assert_cmpint(mess_model(body, 186, 178, 166), ==, cases[i].expect);
        g_assert_cmpint(guarded_reply_decode(body, 186, &r, &consumed), ==, cases[i].expect);
    }
}

static void
test_reply_random_roundtrip(void)
{
    guint8 *buf = g_malloc(16 + 178 + 4 * 2048);

    for (guint iter = 0; iter < 200; iter++) {
        VmcLinkReply r, out;
        guint32 nc = (guint32)g_test_rand_int_range(0, 7);
        guint32 nch = (guint32)g_test_rand_int_range(0, 7);
        guint32 c[6], ch[6];
        VmcLinkHeader h;
        gsize n, consumed;

        if (iter == 0)
            nc = nch = VMC_LINK_MAX_CAPS; /* the largest legal reply */
        r.error = (guint32)g_test_rand_int_range(0, 10);
        for (guint i = 0; i < VMC_TICKET_PUBKEY_BYTES; i++)
            r.pub_key[i] = (guint8)g_test_rand_int();
        for (guint i = 0; i < 6; i++) {
            c[i] = g_test_rand_int();
            ch[i] = g_test_rand_int();
        }
        if (iter == 0) {
            g_autofree guint32 *big = g_new0(guint32, 1024);

            memcpy(big, c, sizeof c);
            n = vmc_link_reply_encode(&r, big, nc, big, nch, buf, 16 + 178 + 4 * 2048);
        } else {
            n = vmc_link_reply_encode(&r, c, nc, ch, nch, buf, 16 + 178 + 4 * 2048);
        }
        g_assert_cmpuint(n, ==, 16 + 178 + 4 * (gsize)(nc + nch));
        g_assert_cmpint(vmc_link_header_decode(buf, n, FALSE, &h, &consumed), ==, VMC_DECODE_OK);
        g_assert_cmpuint(h.size, ==, n - 16);
        g_assert_cmpuint(h.minor_version, ==, 2);
        g_assert_cmpint(guarded_reply_decode(buf + 16, h.size, &out, &consumed), ==,
                        VMC_DECODE_OK);
        g_assert_cmpuint(out.error, ==, r.error);
        g_assert_cmpmem(out.pub_key, 162, r.pub_key, 162);
        g_assert_cmpuint(out.num_common_caps, ==, nc);
        g_assert_cmpuint(out.num_channel_caps, ==, nch);
        g_assert_cmpuint(out.caps_offset, ==, 178);
        for (guint i = 0; i < VMC_LINK_CAPS_KEEP; i++) {
            if (iter == 0) {
                g_assert_cmphex(out.common_caps[i], ==, c[i]);
                g_assert_cmphex(out.channel_caps[i], ==, c[i]);
            } else {
                g_assert_cmphex(out.common_caps[i], ==, i < nc ? c[i] : 0);
                g_assert_cmphex(out.channel_caps[i], ==, i < nch ? ch[i] : 0);
            }
        }
    }
    g_free(buf);
}

/* ------------------------------------------------------------------------ */
/* 4-byte words: auth mechanism and link result                              */

static VmcDecodeResult
u32_prefix(const guint8 *buf, gsize len, gpointer out, gsize *consumed)
{
    return vmc_link_u32_decode(buf, len, out, consumed);
}

static const PrefixCodec u32_codec = { sizeof(guint32), u32_prefix, VMC_DECODE_OK };

typedef struct {
    const char *path;
    const char *hex;
    guint32 value;
} WordVector;

static const WordVector word_vectors[] = {
    { "result-ok", "00000000", SPICE_LINK_ERR_OK },
    { "result-permission-denied", "07000000", SPICE_LINK_ERR_PERMISSION_DENIED },
    { "result-bad-connection-id", "08000000", SPICE_LINK_ERR_BAD_CONNECTION_ID },
    { "auth-spice", "01000000", SPICE_COMMON_CAP_AUTH_SPICE },
    { "auth-sasl", "02000000", SPICE_COMMON_CAP_AUTH_SASL },
    { "auth-5", "05000000", 5 },
    { "max", "ffffffff", 0xFFFFFFFF },
    { "byte-order", "01020304", 0x04030201 },
};

static void
test_word_vector(gconstpointer data)
{
    const WordVector *v = data;
    g_autoptr(GBytes) b = vmc_test_hex_bytes(v->hex);
    guint32 out;
    guint8 enc[4];

    check_prefix_decoder(&u32_codec, g_bytes_get_data(b, NULL), 4, VMC_DECODE_OK, 4, 4, &out);
    g_assert_cmphex(out, ==, v->value);
    vmc_link_u32_encode(v->value, enc);
    g_assert_cmpmem(enc, 4, g_bytes_get_data(b, NULL), 4);
}

/* ------------------------------------------------------------------------ */
/* A whole server-side link read, stream cut into random pieces              */

typedef enum { RD_HEADER, RD_MESS, RD_AUTH, RD_DONE, RD_FAILED } ReadState;

/* Consumes as much of `buf` as it can; returns the bytes used. */
static gsize
link_reader_step(ReadState *st, const guint8 *buf, gsize len, VmcLinkHeader *h, VmcLinkMess *m,
                 guint32 *mech, VmcDecodeResult *err)
{
    gsize used = 0, consumed;
    VmcDecodeResult r;

    for (;;) {
        switch (*st) {
        case RD_HEADER:
            r = vmc_link_header_decode(buf + used, len - used, TRUE, h, &consumed);
            break;
        case RD_MESS:
            if (len - used < h->size)
                return used;
            r = vmc_link_mess_decode(buf + used, h->size, m, &consumed);
            break;
        case RD_AUTH:
            r = vmc_link_u32_decode(buf + used, len - used, mech, &consumed);
            break;
        default:
            return used;
        }
        if (r == VMC_DECODE_NEED_MORE)
            return used;
        if (r != VMC_DECODE_OK) {
            *err = r;
            *st = RD_FAILED;
            return used;
        }
        used += consumed;
        (*st)++;
    }
}

static void
run_link_reader(const guint8 *stream, gsize len, gboolean random_pieces, ReadState *st,
                VmcLinkHeader *h, VmcLinkMess *m, guint32 *mech, VmcDecodeResult *err)
{
    GByteArray *acc = g_byte_array_new();
    gsize at = 0;

    *st = RD_HEADER;
    while (at < len && *st != RD_FAILED) {
        gsize piece = random_pieces ? (gsize)g_test_rand_int_range(1, 12) : 1;
        gsize used;

        piece = MIN(piece, len - at);
        g_byte_array_append(acc, stream + at, (guint)piece);
        at += piece;
        used = link_reader_step(st, acc->data, acc->len, h, m, mech, err);
        g_byte_array_remove_range(acc, 0, (guint)used);
    }
    g_byte_array_unref(acc);
}

static void
test_link_reader_stream(void)
{
    g_autoptr(GBytes) good = vmc_test_hex_bytes("52454451 02000000 02000000 1a000000"
                                       "00000000 01 00 01000000 01000000 12000000"
                                       "0b000000 0f000000"
                                       "01000000");
    g_autoptr(GBytes) bad_caps = vmc_test_hex_bytes("52454451 02000000 02000000 1a000000"
                                           "00000000 01 00 01000000 01000000 0a000000"
                                           "0b000000 0f000000");
    g_autoptr(GBytes) bad_size = vmc_test_hex_bytes("52454451 02000000 02000000 aaaaaaaa 00");
    VmcLinkHeader h;
    VmcLinkMess m;
    guint32 mech = 0;
    VmcDecodeResult err = VMC_DECODE_OK;
    ReadState st;

    for (guint iter = 0; iter < 40; iter++) {
        gboolean random_pieces = iter > 0;

        run_link_reader(g_bytes_get_data(good, NULL), g_bytes_get_size(good), random_pieces, &st,
                        &h, &m, &mech, &err);
        g_assert_cmpint(st, ==, RD_DONE);
        g_assert_cmpuint(h.size, ==, 26);
        g_assert_cmpuint(m.num_channel_caps, ==, 1);
        g_assert_cmpuint(mech, ==, SPICE_COMMON_CAP_AUTH_SPICE);

        run_link_reader(g_bytes_get_data(bad_caps, NULL), g_bytes_get_size(bad_caps),
                        random_pieces, &st, &h, &m, &mech, &err);
        g_assert_cmpint(st, ==, RD_FAILED);
        g_assert_cmpint(err, ==, VMC_DECODE_ERR_CAPS);

        run_link_reader(g_bytes_get_data(bad_size, NULL), g_bytes_get_size(bad_size),
                        random_pieces, &st, &h, &m, &mech, &err);
        g_assert_cmpint(st, ==, RD_FAILED);
        g_assert_cmpint(err, ==, VMC_DECODE_ERR_SIZE);
    }
}

/* ------------------------------------------------------------------------ */
/* Names                                                                    */

static void
test_names(void)
{
    static const char *const errors[] = {
        "OK", "ERROR", "INVALID_MAGIC", "INVALID_DATA", "VERSION_MISMATCH", "NEED_SECURED",
        "NEED_UNSECURED", "PERMISSION_DENIED", "BAD_CONNECTION_ID", "CHANNEL_NOT_AVAILABLE",
    };
    static const char *const channels[] = {
        "unknown", "main", "display", "inputs", "cursor", "playback", "record", "tunnel",
        "smartcard", "usbredir", "port", "webdav",
    };

    for (guint32 e = 0; e < G_N_ELEMENTS(errors); e++)
        g_assert_cmpstr(vmc_link_error_name(e), ==, errors[e]);
    g_assert_cmpstr(vmc_link_error_name(SPICE_LINK_ERR_ENUM_END), ==, "UNKNOWN");
    g_assert_cmpstr(vmc_link_error_name(0xFFFFFFFF), ==, "UNKNOWN");

    for (guint t = 0; t < G_N_ELEMENTS(channels); t++)
        g_assert_cmpstr(vmc_channel_type_name((guint8)t), ==, channels[t]);
    g_assert_cmpstr(vmc_channel_type_name(SPICE_CHANNEL_WEBDAV + 1), ==, "unknown");
    g_assert_cmpstr(vmc_channel_type_name(255), ==, "unknown");
}

/* ------------------------------------------------------------------------ */

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("SPICE link codec: header, link message, reply, words, names");

    for (gsize i = 0; i < G_N_ELEMENTS(header_vectors); i++) {
        g_autofree char *path = g_strdup_printf("/protocol/link/header/%s",
                                                header_vectors[i].path);
        g_test_add_data_func(path, &header_vectors[i], test_header_vector);
    }
    g_test_add_func("/protocol/link/header/size-boundaries", test_header_size_boundaries);
    g_test_add_func("/protocol/link/header/major-versions", test_header_major_versions);
    g_test_add_func("/protocol/link/header/random-roundtrip", test_header_random_roundtrip);

    for (gsize i = 0; i < G_N_ELEMENTS(mess_vectors); i++) {
        g_autofree char *path = g_strdup_printf("/protocol/link/mess/%s", mess_vectors[i].path);
        g_test_add_data_func(path, &mess_vectors[i], test_mess_vector);
    }
    g_test_add_func("/protocol/link/mess/main-link-stream", test_mess_main_link_stream);
    g_test_add_func("/protocol/link/mess/caps-1024", test_mess_caps_1024);
    g_test_add_func("/protocol/link/mess/encode", test_mess_encode);
    g_test_add_func("/protocol/link/mess/random-roundtrip", test_mess_random_roundtrip);

    g_test_add_func("/protocol/link/reply/main-reference", test_reply_main_reference);
    g_test_add_func("/protocol/link/reply/link-error", test_reply_link_error);
    g_test_add_func("/protocol/link/reply/bad-caps", test_reply_bad_caps);
    g_test_add_func("/protocol/link/reply/random-roundtrip", test_reply_random_roundtrip);

    for (gsize i = 0; i < G_N_ELEMENTS(word_vectors); i++) {
        g_autofree char *path = g_strdup_printf("/protocol/link/word/%s", word_vectors[i].path);
        g_test_add_data_func(path, &word_vectors[i], test_word_vector);
    }
    g_test_add_func("/protocol/link/reader-stream", test_link_reader_stream);
    g_test_add_func("/protocol/link/names", test_names);

    return g_test_run();
}
