#include "vmc-test-util.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

GByteArray *
vmc_test_hex(const char *hex)
{
    GByteArray *out = g_byte_array_new();
    int nibble = -1;

    for (const char *p = hex; *p; p++) {
        int v;

        if (g_ascii_isspace(*p) || *p == '|')
            continue;
        v = g_ascii_xdigit_value(*p);
        g_assert_cmpint(v, >=, 0);
        if (nibble < 0) {
            nibble = v;
        } else {
            guint8 b = (guint8)(nibble << 4 | v);
            g_byte_array_append(out, &b, 1);
            nibble = -1;
        }
    }
    g_assert_cmpint(nibble, ==, -1);
    return out;
}

GBytes *
vmc_test_hex_bytes(const char *hex)
{
    return g_byte_array_free_to_bytes(vmc_test_hex(hex));
}

gboolean
vmc_test_all_bytes_are(gconstpointer p, gsize n, guint8 v)
{
    const guint8 *b = p;

    for (gsize i = 0; i < n; i++) {
        if (b[i] != v)
            return FALSE;
    }
    return TRUE;
}

static gsize
guard_span(gsize len, gsize *page_out)
{
    gsize page = (gsize)sysconf(_SC_PAGESIZE);
    gsize data_pages = (len + page - 1) / page;

    *page_out = page;
    return (data_pages + 1) * page;
}

guint8 *
vmc_test_guarded_dup(const guint8 *data, gsize len)
{
    gsize page;
    gsize span = guard_span(len, &page);
    guint8 *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    guint8 *p;

    g_assert(base != MAP_FAILED);
    g_assert_cmpint(mprotect(base + span - page, page, PROT_NONE), ==, 0);
    p = base + span - page - len;
    if (len)
        memcpy(p, data, len);
    return p;
}

void
vmc_test_guarded_free(guint8 *p, gsize len)
{
    gsize page;
    gsize span = guard_span(len, &page);
    guint8 *base = p + len + page - span;

    munmap(base, span);
}
