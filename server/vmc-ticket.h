/* vmc-ticket.h — SPICE ticket authentication: one fresh RSA-1024 key per link, a
 * pool that keeps keys ready ahead of need, OAEP-SHA1 decryption (OpenSSL 3 EVP) and
 * a constant-time password check.
 *
 * Why a key per link: the client encrypts its password with the public key of the
 * link reply. A key that served two links would let a captured ticket be replayed on
 * the second. Generating RSA-1024 costs 5-20 ms, which is what makes a
 * libspice-server link slow (~17 ms); the pool moves that work off the link path:
 * worker threads (lowest priority, one per missing key up to one per CPU) keep `target`
 * keys ready and touch nothing but the pool's own locked queue (no protocol state;
 * towards the main loop only a thread-safe wake-up of the attached context). When the
 * pool runs dry, an attached pool makes the link wait for the workers instead of
 * generating a key on the caller's thread. Every key is handed out once and freed by
 * its user.
 */
#pragma once

#include <glib.h>
#include "protocol/vmc-link.h"

G_BEGIN_DECLS

typedef struct _VmcTicketKey VmcTicketKey;

/* Generates an RSA-1024 key pair with e = 65537. */
VmcTicketKey *vmc_ticket_key_new(GError **error);
void vmc_ticket_key_free(VmcTicketKey *key); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcTicketKey, vmc_ticket_key_free)

/* The link reply's pub_key field: the DER SubjectPublicKeyInfo, exactly
 * VMC_TICKET_PUBKEY_BYTES (162) bytes for RSA-1024. Borrowed from the key. */
const guint8 *vmc_ticket_key_get_public(VmcTicketKey *key);

/* Decrypts a ticket: RSA-OAEP with SHA-1, MGF1-SHA-1, empty label, as the reference
 * and every SPICE client do. `out` must hold VMC_TICKET_CIPHER_BYTES. FALSE (and
 * nothing written) when `len` is not the modulus size or the padding does not check. */
gboolean vmc_ticket_key_decrypt(VmcTicketKey *key, const guint8 *cipher, gsize len, guint8 *out,
                                gsize *out_len);

/* Does one private-key operation now, on this thread (see vmc-ticket.c); the next
 * decryption on the same thread is then ~3x faster. */
gboolean vmc_ticket_key_warm(VmcTicketKey *key);

/* Compares a decrypted ticket with the password in constant time (for a given
 * password length class): the plaintext is cut at its first NUL, as the reference's
 * strcmp() does ("pw" and "pw\0" both match). Plaintexts and passwords longer than
 * VMC_TICKET_MAX_PASSWORD never match. An empty or NULL password never matches. */
gboolean vmc_ticket_check_password(const guint8 *plain, gsize len, const char *password);

/* Test helper and client side: encrypts `password` (plus its NUL, as spice-gtk
 * sends it) to `pub_key` (a DER SubjectPublicKeyInfo). `out` holds 128 bytes. */
gboolean vmc_ticket_encrypt(const guint8 *pub_key, gsize pub_key_len, const guint8 *plain,
                            gsize plain_len, guint8 *out, gsize *out_len);

typedef struct _VmcTicketPool VmcTicketPool;

/* `target` keys are kept ready. With `background` worker threads refill the pool
 * whenever a key is taken (and fill it now); without, keys are only made by
 * vmc_ticket_pool_fill() and, when the pool is empty, synchronously by take().
 * A background pool that runs dry grows its target (doubling, up to
 * VMC_TICKET_POOL_GROW_MAX or the initial target if larger) so the next burst of links
 * finds keys made ahead: keys cost ~4.4 KB each (~6.7 KB once warmed). */
#define VMC_TICKET_POOL_GROW_MAX 32u
VmcTicketPool *vmc_ticket_pool_new(guint target, gboolean background);
/* NULL-safe; waits for the key generations in progress (at most one key's time). */
void vmc_ticket_pool_free(VmcTicketPool *pool);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcTicketPool, vmc_ticket_pool_free)

/* Called on the attached context when keys were made while a taker waited (after
 * vmc_ticket_pool_take_nowait() gave no key). Only notifies. */
typedef void (*VmcTicketPoolReadyFunc)(gpointer user_data);
/* Makes a background pool asynchronous for take_nowait(): an empty pool then answers
 * "wait" and calls `func` on `context` once a worker has made keys. Call once, before
 * taking keys; the pool must be freed before the context. */
void vmc_ticket_pool_attach(VmcTicketPool *pool, GMainContext *context,
                            VmcTicketPoolReadyFunc func, gpointer user_data);

/* A fresh key (transfer full), never handed out before: from the pool, or made now if
 * the pool is empty. Blocks for a key generation (5-20 ms) in that case. */
VmcTicketKey *vmc_ticket_pool_take(VmcTicketPool *pool, GError **error);
/* Never blocks on an attached background pool: TRUE with *key (transfer full) when one
 * is ready, TRUE with *key NULL when the caller must wait for the ready callback (the
 * workers are making keys), FALSE (error set) when no key can be made. On a pool that is
 * not attached it is take(). */
gboolean vmc_ticket_pool_take_nowait(VmcTicketPool *pool, VmcTicketKey **key, GError **error);
/* Synchronously tops the pool up to `target` keys. */
gboolean vmc_ticket_pool_fill(VmcTicketPool *pool, GError **error);
guint vmc_ticket_pool_get_ready(VmcTicketPool *pool);
/* The current target (grown by misses). */
guint vmc_ticket_pool_get_target(VmcTicketPool *pool);
/* Warms one made key on the calling thread (the one that will decrypt tickets, in
 * idle time): FALSE when there was none to warm. take() hands out warm keys first. */
gboolean vmc_ticket_pool_warm_one(VmcTicketPool *pool);
/* TRUE when `target` warm keys are ready. */
gboolean vmc_ticket_pool_is_warm(VmcTicketPool *pool);
/* Takes that found the pool empty (a key was then made synchronously, or the taker
 * waited for the workers): a sizing hint. */
guint64 vmc_ticket_pool_get_misses(VmcTicketPool *pool);

G_END_DECLS
