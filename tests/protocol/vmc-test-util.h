/* Test helpers shared by the codec suites. */
#pragma once

#include <glib.h>

/* Parses a hex string ("52 45 44 51", spaces, '|' and newlines ignored) into a new
 * byte array; aborts the test on a malformed string. */
GByteArray *vmc_test_hex(const char *hex);

/* The same as a GBytes. */
GBytes *vmc_test_hex_bytes(const char *hex);

/* TRUE when all `n` bytes at `p` equal `v` (checks that encoders leave the rest of a
 * buffer untouched). */
gboolean vmc_test_all_bytes_are(gconstpointer p, gsize n, guint8 v);

/* Copies `len` bytes into a buffer whose end touches a PROT_NONE guard page, so any
 * read past `len` faults. Free with vmc_test_guarded_free(). */
guint8 *vmc_test_guarded_dup(const guint8 *data, gsize len);
void vmc_test_guarded_free(guint8 *p, gsize len);
