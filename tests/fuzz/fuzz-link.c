/* fuzz-link.c — fuzz target for the link, data header and main-channel codecs.
 *
 * Input: byte 0 picks the decoder (and a flag in its high bit), byte 1 picks a
 * split offset, the rest is the decoder's input. Every decoder is called on
 * exact-size heap copies (so ASan sees any over-read), and the target checks
 * invariants, not just absence of crashes:
 * - consumed <= len, and outputs are only meaningful on OK;
 * - prefix decoders: a prefix shorter than what was consumed is NEED_MORE, an
 *   error decided on a prefix stays the same on the whole input, decoding
 *   exactly the consumed bytes gives the same output;
 * - link message / reply results agree with an independent model of the rules;
 * - decode -> encode -> decode is stable, and for canonical inputs
 *   re-encoding gives back the input bytes;
 * - vmc_main_client_msg_check() agrees with vmc_main_client_msg_limits().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/vmc-header.h"
#include "protocol/vmc-link.h"
#include "protocol/vmc-main.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

/* An exact-size heap copy so that reading past `len` is an ASan error. */
static guint8 *
dup_exact(const guint8 *p, gsize len)
{
    guint8 *d = g_malloc(len ? len : 1);

    if (len)
        memcpy(d, p, len);
    return d;
}

static void
check_result_name(VmcDecodeResult r)
{
    CHECK(vmc_decode_result_to_string(r) != NULL);
}

/* ---- prefix decoders ---- */

typedef VmcDecodeResult (*PrefixFn)(const guint8 *buf, gsize len, gboolean flag, void *out,
                                    gsize *consumed);

static VmcDecodeResult
link_header_fn(const guint8 *buf, gsize len, gboolean flag, void *out, gsize *consumed)
{
    return vmc_link_header_decode(buf, len, flag, out, consumed);
}

static VmcDecodeResult
link_u32_fn(const guint8 *buf, gsize len, gboolean flag, void *out, gsize *consumed)
{
    return vmc_link_u32_decode(buf, len, out, consumed);
}

static VmcDecodeResult
data_header_fn(const guint8 *buf, gsize len, gboolean flag, void *out, gsize *consumed)
{
    return vmc_data_header_decode(buf, len, flag, out, consumed);
}

static VmcDecodeResult
run_prefix(PrefixFn fn, const guint8 *buf, gsize len, gboolean flag, void *out, gsize *consumed)
{
    guint8 *copy = dup_exact(buf, len);
    VmcDecodeResult r;

    *consumed = 0;
    r = fn(copy, len, flag, out, consumed);
    g_free(copy);
    check_result_name(r);
    if (r == VMC_DECODE_OK)
        CHECK(*consumed > 0 && *consumed <= len);
    return r;
}

/* Decodes the whole input and a prefix of `split` bytes and checks that the two
 * agree. `out_size` bytes of output are compared. Returns the whole result. */
static VmcDecodeResult
fuzz_prefix(PrefixFn fn, const guint8 *buf, gsize len, gsize split, gboolean flag, void *out,
            gsize out_size, gsize *consumed)
{
    g_autofree guint8 *out2 = g_malloc0(out_size);
    gsize c2;
    VmcDecodeResult whole, part;

    memset(out, 0, out_size);
    whole = run_prefix(fn, buf, len, flag, out, consumed);
    part = run_prefix(fn, buf, MIN(split, len), flag, out2, &c2);
    if (part != VMC_DECODE_NEED_MORE)
        CHECK(part == whole); /* a decision on a prefix is final */
    if (whole == VMC_DECODE_OK) {
        if (split < *consumed)
            CHECK(part == VMC_DECODE_NEED_MORE);
        else
            CHECK(part == VMC_DECODE_OK && c2 == *consumed &&
                  memcmp(out, out2, out_size) == 0);
        /* exactly the consumed bytes are enough, one fewer is not */
        memset(out2, 0, out_size);
        CHECK(run_prefix(fn, buf, *consumed, flag, out2, &c2) == VMC_DECODE_OK);
        CHECK(c2 == *consumed && memcmp(out, out2, out_size) == 0);
        CHECK(run_prefix(fn, buf, *consumed - 1, flag, out2, &c2) == VMC_DECODE_NEED_MORE);
    }
    return whole;
}

static void
fuzz_link_header(const guint8 *buf, gsize len, gsize split, gboolean check_size)
{
    VmcLinkHeader h;
    gsize consumed;
    VmcDecodeResult r = fuzz_prefix(link_header_fn, buf, len, split, check_size, &h, sizeof h,
                                    &consumed);

    if (r == VMC_DECODE_OK) {
        guint8 enc[VMC_LINK_HEADER_SIZE];

        CHECK(consumed == VMC_LINK_HEADER_SIZE);
        CHECK(h.magic == VMC_LINK_MAGIC && h.major_version == VMC_LINK_VERSION_MAJOR);
        if (check_size)
            CHECK(h.size >= VMC_LINK_MIN_SIZE && h.size <= VMC_LINK_MAX_SIZE);
        vmc_link_header_encode(&h, enc);
        CHECK(memcmp(enc, buf, sizeof enc) == 0);
    } else if (r == VMC_DECODE_ERR_MAGIC) {
        CHECK(len >= 4 && vmc_get_u32le(buf) != VMC_LINK_MAGIC);
    } else if (r == VMC_DECODE_ERR_VERSION) {
        CHECK(len >= 16 && h.major_version != 2 && h.major_version == vmc_get_u32le(buf + 4));
    } else if (r == VMC_DECODE_ERR_SIZE) {
        CHECK(check_size && len >= 16);
    } else {
        CHECK(r == VMC_DECODE_NEED_MORE && len < 16);
    }
    /* names never fail */
    CHECK(vmc_link_error_name(len ? buf[0] : 0) != NULL);
    CHECK(vmc_channel_type_name(len ? buf[0] : 0) != NULL);
}

static void
fuzz_link_u32(const guint8 *buf, gsize len, gsize split)
{
    guint32 v;
    gsize consumed;
    VmcDecodeResult r = fuzz_prefix(link_u32_fn, buf, len, split, FALSE, &v, sizeof v,
                                    &consumed);

    if (r == VMC_DECODE_OK) {
        guint8 enc[4];

        CHECK(consumed == 4);
        vmc_link_u32_encode(v, enc);
        CHECK(memcmp(enc, buf, 4) == 0);
    } else {
        CHECK(r == VMC_DECODE_NEED_MORE && len < 4);
    }
}

static void
fuzz_data_header(const guint8 *buf, gsize len, gsize split, gboolean mini)
{
    VmcDataHeader h, h2;
    gsize consumed, c2;
    VmcDecodeResult r = fuzz_prefix(data_header_fn, buf, len, split, mini, &h, sizeof h,
                                    &consumed);

    if (r == VMC_DECODE_OK) {
        guint8 enc[VMC_MAX_HEADER_SIZE];
        gsize n = vmc_data_header_encode(&h, mini, enc);

        CHECK(n == consumed && n == vmc_data_header_size(mini));
        CHECK(memcmp(enc, buf, n) == 0);
        CHECK(vmc_data_header_decode(enc, n, mini, &h2, &c2) == VMC_DECODE_OK);
        CHECK(h2.serial == h.serial && h2.type == h.type && h2.size == h.size &&
              h2.sub_list == h.sub_list);
        if (mini)
            CHECK(h.serial == 0 && h.sub_list == 0);
    } else {
        CHECK(r == VMC_DECODE_NEED_MORE && len < vmc_data_header_size(mini));
    }
}

/* ---- link message and reply ---- */

/* The reference's caps rule, stated independently. */
static VmcDecodeResult
caps_model(const guint8 *b, gsize len, gsize fixed, gsize counts_at)
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

static void
check_kept_caps(const guint32 *kept, guint32 n, const guint8 *src)
{
    for (guint32 i = 0; i < VMC_LINK_CAPS_KEEP; i++)
        CHECK(kept[i] == (i < n ? vmc_get_u32le(src + 4 * i) : 0));
}

static void
fuzz_link_mess(const guint8 *buf, gsize len)
{
    guint8 *copy = dup_exact(buf, len);
    VmcLinkMess m, m2;
    gsize consumed = 0, c2;
    VmcDecodeResult r = vmc_link_mess_decode(copy, len, &m, &consumed);
    guint8 enc[VMC_LINK_MESS_SIZE + 8 * 4];
    guint32 nc, nch;
    gsize n;

    check_result_name(r);
    CHECK(r == caps_model(copy, len, VMC_LINK_MESS_SIZE, 6));
    if (r != VMC_DECODE_OK) {
        g_free(copy);
        return;
    }
    CHECK(consumed == len);
    CHECK(m.num_common_caps <= VMC_LINK_MAX_CAPS && m.num_channel_caps <= VMC_LINK_MAX_CAPS);
    if (m.num_common_caps + m.num_channel_caps > 0) {
        check_kept_caps(m.common_caps, m.num_common_caps, copy + m.caps_offset);
        check_kept_caps(m.channel_caps, m.num_channel_caps,
                        copy + m.caps_offset + 4 * (gsize)m.num_common_caps);
    }

    /* round trip with the kept words */
    nc = MIN(m.num_common_caps, VMC_LINK_CAPS_KEEP);
    nch = MIN(m.num_channel_caps, VMC_LINK_CAPS_KEEP);
    n = vmc_link_mess_encode(&m, m.common_caps, nc, m.channel_caps, nch, enc, sizeof enc);
    CHECK(n == VMC_LINK_MESS_SIZE + 4 * (gsize)(nc + nch));
    CHECK(vmc_link_mess_decode(enc, n, &m2, &c2) == VMC_DECODE_OK && c2 == n);
    CHECK(m2.connection_id == m.connection_id && m2.channel_type == m.channel_type &&
          m2.channel_id == m.channel_id && m2.num_common_caps == nc &&
          m2.num_channel_caps == nch && m2.caps_offset == VMC_LINK_MESS_SIZE);
    CHECK(memcmp(m2.common_caps, m.common_caps, sizeof m.common_caps) == 0);
    CHECK(memcmp(m2.channel_caps, m.channel_caps, sizeof m.channel_caps) == 0);
    /* a canonical message re-encodes to itself */
    if (nc == m.num_common_caps && nch == m.num_channel_caps &&
        m.caps_offset == VMC_LINK_MESS_SIZE && n == len)
        CHECK(memcmp(enc, copy, n) == 0);
    /* too small a buffer gives 0 */
    CHECK(vmc_link_mess_encode(&m, m.common_caps, nc, m.channel_caps, nch, enc, n - 1) == 0);
    g_free(copy);
}

static void
fuzz_link_reply(const guint8 *buf, gsize len)
{
    guint8 *copy = dup_exact(buf, len);
    VmcLinkReply rep, rep2;
    VmcLinkHeader h;
    gsize consumed = 0, c2;
    VmcDecodeResult r = vmc_link_reply_decode(copy, len, &rep, &consumed);
    guint8 enc[VMC_LINK_HEADER_SIZE + VMC_LINK_REPLY_SIZE + 8 * 4];
    guint32 nc, nch;
    gsize n;

    check_result_name(r);
    CHECK(r == caps_model(copy, len, VMC_LINK_REPLY_SIZE, 4 + VMC_TICKET_PUBKEY_BYTES));
    if (r != VMC_DECODE_OK) {
        g_free(copy);
        return;
    }
    CHECK(consumed == len);
    CHECK(memcmp(rep.pub_key, copy + 4, VMC_TICKET_PUBKEY_BYTES) == 0);
    if (rep.num_common_caps + rep.num_channel_caps > 0) {
        check_kept_caps(rep.common_caps, rep.num_common_caps, copy + rep.caps_offset);
        check_kept_caps(rep.channel_caps, rep.num_channel_caps,
                        copy + rep.caps_offset + 4 * (gsize)rep.num_common_caps);
    }

    nc = MIN(rep.num_common_caps, VMC_LINK_CAPS_KEEP);
    nch = MIN(rep.num_channel_caps, VMC_LINK_CAPS_KEEP);
    n = vmc_link_reply_encode(&rep, rep.common_caps, nc, rep.channel_caps, nch, enc, sizeof enc);
    CHECK(n == VMC_LINK_HEADER_SIZE + VMC_LINK_REPLY_SIZE + 4 * (gsize)(nc + nch));
    CHECK(vmc_link_header_decode(enc, n, TRUE, &h, &c2) == VMC_DECODE_OK);
    CHECK(h.size == n - VMC_LINK_HEADER_SIZE);
    CHECK(vmc_link_reply_decode(enc + VMC_LINK_HEADER_SIZE, h.size, &rep2, &c2) ==
          VMC_DECODE_OK);
    CHECK(rep2.error == rep.error && rep2.num_common_caps == nc &&
          rep2.num_channel_caps == nch && rep2.caps_offset == VMC_LINK_REPLY_SIZE);
    CHECK(memcmp(rep2.pub_key, rep.pub_key, sizeof rep.pub_key) == 0);
    CHECK(memcmp(rep2.common_caps, rep.common_caps, sizeof rep.common_caps) == 0);
    CHECK(memcmp(rep2.channel_caps, rep.channel_caps, sizeof rep.channel_caps) == 0);
    CHECK(vmc_link_reply_encode(&rep, rep.common_caps, nc, rep.channel_caps, nch, enc, n - 1) ==
          0);
    /* a zeroed reply with only an error is what vmc_link_error_encode() writes */
    if (nc + nch == 0 && rep.caps_offset == 0 && len == VMC_LINK_REPLY_SIZE) {
        guint8 err[VMC_LINK_HEADER_SIZE + VMC_LINK_REPLY_SIZE];
        gboolean zero_key = TRUE;

        for (guint i = 0; i < VMC_TICKET_PUBKEY_BYTES; i++)
            zero_key = zero_key && rep.pub_key[i] == 0;
        vmc_link_error_encode(rep.error, err);
        if (zero_key)
            CHECK(memcmp(err + VMC_LINK_HEADER_SIZE, copy, len) == 0);
    }
    g_free(copy);
}

/* A whole client link stream: header, message of header.size, auth word. */
static void
fuzz_link_stream(const guint8 *buf, gsize len)
{
    VmcLinkHeader h;
    VmcLinkMess m;
    guint32 mech;
    gsize consumed, off = 0;
    guint8 *copy = dup_exact(buf, len);
    VmcDecodeResult r = vmc_link_header_decode(copy, len, TRUE, &h, &consumed);

    if (r == VMC_DECODE_OK) {
        off = consumed;
        CHECK(h.size >= 18 && h.size <= 4096);
        if (len - off >= h.size) {
            r = vmc_link_mess_decode(copy + off, h.size, &m, &consumed);
            CHECK(r == caps_model(copy + off, h.size, 18, 6));
            if (r == VMC_DECODE_OK) {
                CHECK(consumed == h.size);
                off += consumed;
                r = vmc_link_u32_decode(copy + off, len - off, &mech, &consumed);
                CHECK(r == (len - off >= 4 ? VMC_DECODE_OK : VMC_DECODE_NEED_MORE));
            }
        }
    }
    g_free(copy);
}

/* ---- main-channel bodies ---- */

static void
fuzz_main_body(guint which, const guint8 *buf, gsize len)
{
    guint8 *copy = dup_exact(buf, len);
    guint8 enc[512];
    VmcDecodeResult r;
    gsize n;

    switch (which) {
    case 0: {
        VmcMainInit a, b;

        r = vmc_main_init_decode(copy, len, &a);
        CHECK(r == (len >= 32 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        n = vmc_main_init_encode(&a, enc, sizeof enc);
        CHECK(n == 32 && memcmp(enc, copy, 32) == 0);
        CHECK(vmc_main_init_decode(enc, n, &b) == VMC_DECODE_OK);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        CHECK(vmc_main_init_encode(&a, enc, 31) == 0);
        break;
    }
    case 1: {
        VmcChannelId ids[8], ids2[8];
        guint32 count, count2;

        r = vmc_main_channels_list_decode(copy, len, ids, G_N_ELEMENTS(ids), &count);
        if (r != VMC_DECODE_OK) {
            CHECK(r == VMC_DECODE_ERR_TRUNCATED);
            CHECK(len < 4 || vmc_get_u32le(copy) > (len - 4) / 2);
            break;
        }
        CHECK(4 + 2 * (guint64)count <= len);
        for (guint32 i = 0; i < count && i < 8; i++)
            CHECK(ids[i].type == copy[4 + 2 * i] && ids[i].id == copy[5 + 2 * i]);
        if (count <= G_N_ELEMENTS(ids)) {
            n = vmc_main_channels_list_encode(ids, count, enc, sizeof enc);
            CHECK(n == 4 + 2 * (gsize)count && memcmp(enc, copy, n) == 0);
            CHECK(vmc_main_channels_list_decode(enc, n, ids2, 8, &count2) == VMC_DECODE_OK);
            CHECK(count2 == count && memcmp(ids, ids2, count * sizeof ids[0]) == 0);
            CHECK(vmc_main_channels_list_encode(ids, count, enc, n - 1) == 0);
        }
        break;
    }
    case 2: {
        const char *name, *name2;
        guint32 nlen, nlen2;

        r = vmc_main_name_decode(copy, len, &name, &nlen);
        if (r != VMC_DECODE_OK) {
            CHECK(r == VMC_DECODE_ERR_TRUNCATED || r == VMC_DECODE_ERR_INVALID);
            break;
        }
        CHECK(nlen >= 1 && 4 + (guint64)nlen <= len && name[nlen - 1] == '\0');
        CHECK((const guint8 *)name == copy + 4);
        n = vmc_main_name_encode(name, enc, sizeof enc);
        if (strlen(name) + 5 <= sizeof enc) {
            CHECK(n == 4 + strlen(name) + 1);
            CHECK(vmc_main_name_decode(enc, n, &name2, &nlen2) == VMC_DECODE_OK);
            CHECK(strcmp(name, name2) == 0 && nlen2 == strlen(name) + 1);
            if (nlen == strlen(name) + 1)
                CHECK(memcmp(enc, copy, n) == 0);
        } else {
            CHECK(n == 0);
        }
        break;
    }
    case 3: {
        guint8 uuid[16], uuid2[16];

        r = vmc_main_uuid_decode(copy, len, uuid);
        CHECK(r == (len >= 16 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        n = vmc_main_uuid_encode(uuid, enc, sizeof enc);
        CHECK(n == 16 && memcmp(enc, copy, 16) == 0);
        CHECK(vmc_main_uuid_decode(enc, n, uuid2) == VMC_DECODE_OK);
        CHECK(memcmp(uuid, uuid2, 16) == 0);
        break;
    }
    case 4: {
        VmcPing p, p2;

        r = vmc_ping_decode(copy, len, &p);
        CHECK(r == (len >= 12 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        CHECK(p.padding == len - 12);
        if (len <= sizeof enc) {
            n = vmc_ping_encode(&p, enc, sizeof enc);
            CHECK(n == len && memcmp(enc, copy, 12) == 0);
            CHECK(vmc_ping_decode(enc, n, &p2) == VMC_DECODE_OK);
            CHECK(p2.id == p.id && p2.timestamp == p.timestamp && p2.padding == p.padding);
            CHECK(vmc_ping_encode(&p, enc, n - 1) == 0);
        }
        /* the answer */
        n = vmc_pong_encode(&p, enc, sizeof enc);
        CHECK(n == 12 && memcmp(enc, copy, 12) == 0);
        break;
    }
    case 5: {
        VmcMouseMode a, b;

        r = vmc_main_mouse_mode_decode(copy, len, &a);
        CHECK(r == (len >= 4 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        n = vmc_main_mouse_mode_encode(&a, enc, sizeof enc);
        CHECK(n == 4 && memcmp(enc, copy, 4) == 0);
        CHECK(vmc_main_mouse_mode_decode(enc, n, &b) == VMC_DECODE_OK);
        CHECK(a.supported_modes == b.supported_modes && a.current_mode == b.current_mode);
        break;
    }
    case 6: {
        VmcNotify a, b;

        r = vmc_notify_decode(copy, len, &a);
        if (r != VMC_DECODE_OK) {
            CHECK(r == VMC_DECODE_ERR_TRUNCATED || r == VMC_DECODE_ERR_INVALID);
            CHECK(r != VMC_DECODE_ERR_INVALID ||
                  (len >= 25 && copy[24 + (gsize)vmc_get_u32le(copy + 20)] != 0));
            break;
        }
        CHECK(24 + (guint64)a.message_len + 1 <= len);
        CHECK((const guint8 *)a.message == copy + 24 && a.message[a.message_len] == '\0');
        n = vmc_notify_encode(&a, enc, sizeof enc);
        if (24 + (gsize)a.message_len + 1 <= sizeof enc) {
            CHECK(n == 24 + (gsize)a.message_len + 1 && memcmp(enc, copy, n) == 0);
            CHECK(vmc_notify_decode(enc, n, &b) == VMC_DECODE_OK);
            CHECK(a.time_stamp == b.time_stamp && a.severity == b.severity &&
                  a.visibility == b.visibility && a.what == b.what &&
                  a.message_len == b.message_len &&
                  memcmp(a.message, b.message, a.message_len) == 0);
            CHECK(vmc_notify_encode(&a, enc, n - 1) == 0);
        } else {
            CHECK(n == 0);
        }
        break;
    }
    case 7: {
        VmcSetAck a, b;

        r = vmc_set_ack_decode(copy, len, &a);
        CHECK(r == (len >= 8 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        n = vmc_set_ack_encode(&a, enc, sizeof enc);
        CHECK(n == 8 && memcmp(enc, copy, 8) == 0);
        CHECK(vmc_set_ack_decode(enc, n, &b) == VMC_DECODE_OK);
        CHECK(a.generation == b.generation && a.window == b.window);
        break;
    }
    case 8: {
        guint32 a, b;

        r = vmc_u32_body_decode(copy, len, &a);
        CHECK(r == (len >= 4 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        n = vmc_u32_body_encode(a, enc, sizeof enc);
        CHECK(n == 4 && memcmp(enc, copy, 4) == 0);
        CHECK(vmc_u32_body_decode(enc, n, &b) == VMC_DECODE_OK && a == b);
        CHECK(vmc_u32_body_encode(a, enc, 3) == 0);
        break;
    }
    case 9: {
        VmcPing a, b;

        r = vmc_pong_decode(copy, len, &a);
        CHECK(r == (len >= 12 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        CHECK(a.padding == 0);
        n = vmc_pong_encode(&a, enc, sizeof enc);
        CHECK(n == 12 && memcmp(enc, copy, 12) == 0);
        CHECK(vmc_pong_decode(enc, n, &b) == VMC_DECODE_OK);
        CHECK(a.id == b.id && a.timestamp == b.timestamp);
        break;
    }
    case 10: {
        VmcDisconnecting a, b;

        r = vmc_disconnecting_decode(copy, len, &a);
        CHECK(r == (len >= 12 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        n = vmc_disconnecting_encode(&a, enc, sizeof enc);
        CHECK(n == 12 && memcmp(enc, copy, 12) == 0);
        CHECK(vmc_disconnecting_decode(enc, n, &b) == VMC_DECODE_OK);
        CHECK(a.time_stamp == b.time_stamp && a.reason == b.reason);
        break;
    }
    case 11: {
        guint16 a, b;

        r = vmc_main_mouse_mode_request_decode(copy, len, &a);
        CHECK(r == (len >= 2 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        n = vmc_main_mouse_mode_request_encode(a, enc, sizeof enc);
        CHECK(n == 2 && memcmp(enc, copy, 2) == 0);
        CHECK(vmc_main_mouse_mode_request_decode(enc, n, &b) == VMC_DECODE_OK && a == b);
        break;
    }
    default: {
        guint64 a, b;

        r = vmc_main_client_info_decode(copy, len, &a);
        CHECK(r == (len >= 8 ? VMC_DECODE_OK : VMC_DECODE_ERR_TRUNCATED));
        if (r != VMC_DECODE_OK)
            break;
        n = vmc_main_client_info_encode(a, enc, sizeof enc);
        CHECK(n == 8 && memcmp(enc, copy, 8) == 0);
        CHECK(vmc_main_client_info_decode(enc, n, &b) == VMC_DECODE_OK && a == b);
        break;
    }
    }
    check_result_name(r);
    g_free(copy);
}

#define N_MAIN_BODIES 13

/* A client data stream: each message is a header checked with
 * vmc_main_client_msg_check(); a checked body is handed to its decoder. */
static void
fuzz_client_stream(const guint8 *buf, gsize len, gboolean mini)
{
    gsize off = 0;

    while (off < len) {
        VmcDataHeader h;
        gsize consumed;
        guint32 min, max;
        VmcDecodeResult r = vmc_data_header_decode(buf + off, len - off, mini, &h, &consumed);
        VmcDecodeResult check;

        if (r == VMC_DECODE_NEED_MORE)
            return;
        CHECK(r == VMC_DECODE_OK && consumed <= len - off);
        off += consumed;
        check = vmc_main_client_msg_check(h.type, h.size);
        CHECK(vmc_main_msgc_name(h.type) != NULL && vmc_main_msg_name(h.type) != NULL);
        if (!vmc_main_client_msg_limits(h.type, &min, &max)) {
            CHECK(check == VMC_DECODE_ERR_TYPE);
            CHECK(strcmp(vmc_main_msgc_name(h.type), "UNKNOWN") == 0);
            return;
        }
        CHECK(min <= max && max <= VMC_MAIN_RECV_BUF_SIZE);
        CHECK(check == (h.size > max   ? VMC_DECODE_ERR_TOO_LARGE
                        : h.size < min ? VMC_DECODE_ERR_TRUNCATED
                                       : VMC_DECODE_OK));
        if (h.type == SPICE_MSGC_MAIN_AGENT_DATA)
            CHECK(max == VMC_AGENT_MAX_DATA_SIZE && min == 1);
        if (check != VMC_DECODE_OK || h.size > len - off)
            return;
        switch (h.type) {
        case SPICE_MSGC_ACK_SYNC:
        case SPICE_MSGC_MAIN_AGENT_START:
        case SPICE_MSGC_MAIN_AGENT_TOKEN:
        case SPICE_MSGC_MAIN_MIGRATE_DST_DO_SEAMLESS:
            fuzz_main_body(8, buf + off, h.size);
            break;
        case SPICE_MSGC_PONG:
            fuzz_main_body(9, buf + off, h.size);
            break;
        case SPICE_MSGC_DISCONNECTING:
            fuzz_main_body(10, buf + off, h.size);
            break;
        case SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST:
            fuzz_main_body(11, buf + off, h.size);
            break;
        case SPICE_MSGC_MAIN_CLIENT_INFO:
            fuzz_main_body(12, buf + off, h.size);
            break;
        default:
            break;
        }
        off += h.size;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    guint8 sel;
    gsize split;
    const guint8 *p;
    gsize len;
    gboolean flag;

    if (size < 2)
        return 0;
    sel = data[0];
    split = data[1];
    p = data + 2;
    len = size - 2;
    flag = (sel & 0x80) != 0;

    switch ((sel & 0x7F) % (8 + N_MAIN_BODIES)) {
    case 0:
        fuzz_link_header(p, len, split, !flag);
        break;
    case 1:
        fuzz_link_mess(p, len);
        break;
    case 2:
        fuzz_link_reply(p, len);
        break;
    case 3:
        fuzz_link_u32(p, len, split);
        break;
    case 4:
        fuzz_data_header(p, len, split, flag);
        break;
    case 5:
        fuzz_link_stream(p, len);
        break;
    case 6:
        fuzz_client_stream(p, len, !flag);
        break;
    case 7: {
        /* header checks over every type at a size picked by the input */
        guint32 size32 = len >= 4 ? vmc_get_u32le(p) : (guint32)split;

        for (guint32 t = 0; t < 0x80; t++) {
            guint32 min, max;
            VmcDecodeResult c = vmc_main_client_msg_check((guint16)t, size32);

            if (vmc_main_client_msg_limits((guint16)t, &min, &max))
                CHECK(c == (size32 > max   ? VMC_DECODE_ERR_TOO_LARGE
                            : size32 < min ? VMC_DECODE_ERR_TRUNCATED
                                           : VMC_DECODE_OK));
            else
                CHECK(c == VMC_DECODE_ERR_TYPE);
        }
        break;
    }
    default:
        fuzz_main_body((guint)((sel & 0x7F) % (8 + N_MAIN_BODIES)) - 8, p, len);
        break;
    }
    return 0;
}
