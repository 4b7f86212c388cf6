/* vmc-ticket.c — RSA-1024 ticket keys (OpenSSL 3 EVP), their pool, the password check. */
#define _GNU_SOURCE
#include "server/vmc-ticket.h"

#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <gio/gio.h>

#define TICKET_RSA_BITS 1024

struct _VmcTicketKey {
    EVP_PKEY *pkey;
    guint8 pub[VMC_TICKET_PUBKEY_BYTES];
    gboolean warm;
};

static void
set_ssl_error(GError **error, const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();

    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    else
        g_strlcpy(buf, "unknown error", sizeof(buf));
    ERR_clear_error();
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s", what, buf);
}

/**
 * vmc_ticket_key_new:
 *
 * Returns: (transfer full): a new RSA-1024 (e = 65537) key, or %NULL on an OpenSSL
 *   failure
 */
VmcTicketKey *
vmc_ticket_key_new(GError **error)
{
    VmcTicketKey *key;
    EVP_PKEY *pkey;
    unsigned char *p;
    int n;

    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)TICKET_RSA_BITS);
    if (pkey == NULL) {
        set_ssl_error(error, "RSA key generation failed");
        return NULL;
    }
    n = i2d_PUBKEY(pkey, NULL);
    if (n != (int)VMC_TICKET_PUBKEY_BYTES) {
        EVP_PKEY_free(pkey);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "unexpected public key size %d (want %u)", n, VMC_TICKET_PUBKEY_BYTES);
        return NULL;
    }
    key = g_new0(VmcTicketKey, 1);
    key->pkey = pkey;
    p = key->pub;
    i2d_PUBKEY(pkey, &p);
    return key;
}

void
vmc_ticket_key_free(VmcTicketKey *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey);
    g_free(key);
}

const guint8 *
vmc_ticket_key_get_public(VmcTicketKey *key)
{
    g_return_val_if_fail(key != NULL, NULL);
    return key->pub;
}

static gboolean
setup_oaep(EVP_PKEY_CTX *ctx)
{
    return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
           EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()) > 0 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha1()) > 0;
}

/**
 * vmc_ticket_key_decrypt:
 * @cipher: (array length=len): the 128 ticket bytes (borrowed)
 * @out: (out caller-allocates) (array fixed-size=128): the plaintext
 * @out_len: (out): its length
 */
gboolean
vmc_ticket_key_decrypt(VmcTicketKey *key, const guint8 *cipher, gsize len, guint8 *out,
                       gsize *out_len)
{
    guint8 tmp[VMC_TICKET_CIPHER_BYTES];
    size_t n = sizeof(tmp);
    EVP_PKEY_CTX *ctx;
    gboolean ok;

    g_return_val_if_fail(key != NULL, FALSE);
    g_return_val_if_fail(cipher != NULL && out != NULL && out_len != NULL, FALSE);

    if (len != VMC_TICKET_CIPHER_BYTES)
        return FALSE;
    ctx = EVP_PKEY_CTX_new(key->pkey, NULL);
    ok = ctx != NULL && EVP_PKEY_decrypt_init(ctx) > 0 && setup_oaep(ctx) &&
         EVP_PKEY_decrypt(ctx, tmp, &n, cipher, len) > 0 && n <= sizeof(tmp);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    if (ok) {
        memcpy(out, tmp, n);
        *out_len = n;
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return ok;
}

/**
 * vmc_ticket_key_warm:
 *
 * Runs one private-key operation on the calling thread. OpenSSL sets up a key's
 * Montgomery contexts and its RSA blinding (kept per thread) on the first private
 * operation, which costs about two decryptions; doing it ahead on the thread that
 * will decrypt the ticket takes that off the link path.
 */
gboolean
vmc_ticket_key_warm(VmcTicketKey *key)
{
    static const guint8 probe[1] = {0};
    guint8 cipher[VMC_TICKET_CIPHER_BYTES];
    guint8 plain[VMC_TICKET_CIPHER_BYTES];
    size_t n = sizeof(cipher);
    gsize pn = 0;
    EVP_PKEY_CTX *ctx;
    gboolean ok;

    g_return_val_if_fail(key != NULL, FALSE);
    if (key->warm)
        return TRUE;
    ctx = EVP_PKEY_CTX_new(key->pkey, NULL);
    ok = ctx != NULL && EVP_PKEY_encrypt_init(ctx) > 0 && setup_oaep(ctx) &&
         EVP_PKEY_encrypt(ctx, cipher, &n, probe, sizeof(probe)) > 0;
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    ok = ok && vmc_ticket_key_decrypt(key, cipher, n, plain, &pn);
    key->warm = ok;
    return ok;
}

/**
 * vmc_ticket_encrypt:
 * @pub_key: (array length=pub_key_len): DER SubjectPublicKeyInfo
 * @out: (out caller-allocates) (array fixed-size=128): the ticket
 */
gboolean
vmc_ticket_encrypt(const guint8 *pub_key, gsize pub_key_len, const guint8 *plain,
                   gsize plain_len, guint8 *out, gsize *out_len)
{
    const unsigned char *p = pub_key;
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *ctx = NULL;
    size_t n = VMC_TICKET_CIPHER_BYTES;
    gboolean ok;

    g_return_val_if_fail(pub_key != NULL && out != NULL && out_len != NULL, FALSE);

    if (pub_key_len > G_MAXLONG)
        return FALSE;
    pkey = d2i_PUBKEY(NULL, &p, (long)pub_key_len);
    if (pkey == NULL) {
        ERR_clear_error();
        return FALSE;
    }
    ok = EVP_PKEY_get_size(pkey) == (int)VMC_TICKET_CIPHER_BYTES &&
         (ctx = EVP_PKEY_CTX_new(pkey, NULL)) != NULL && EVP_PKEY_encrypt_init(ctx) > 0 &&
         setup_oaep(ctx) && EVP_PKEY_encrypt(ctx, out, &n, plain, plain_len) > 0;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    if (ok)
        *out_len = n;
    return ok;
}

/**
 * vmc_ticket_check_password:
 * @plain: (array length=len): a decrypted ticket
 * @password: (nullable): the configured password
 */
gboolean
vmc_ticket_check_password(const guint8 *plain, gsize len, const char *password)
{
    guint8 a[VMC_TICKET_MAX_PASSWORD + 1];
    guint8 b[VMC_TICKET_MAX_PASSWORD + 1];
    gsize plen, pwlen;
    gboolean ok;

    if (password == NULL || password[0] == '\0' || (plain == NULL && len > 0))
        return FALSE;
    pwlen = strnlen(password, VMC_TICKET_MAX_PASSWORD + 1);
    plen = plain ? strnlen((const char *)plain, len) : 0;

    /* fixed-size, zero-padded copies so the comparison time does not depend on where
     * the first difference is */
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    if (plen > 0)
        memcpy(a, plain, MIN(plen, sizeof(a)));
    memcpy(b, password, MIN(pwlen, sizeof(b)));
    ok = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return ok && plen == pwlen && pwlen <= VMC_TICKET_MAX_PASSWORD;
}

/* ------------------------------------------------------------------------------------
 * pool
 * ------------------------------------------------------------------------------------ */

#define MAX_WORKERS 4u

typedef struct {
    VmcTicketPool *pool;
    GThread *thread; /* joinable */
    gboolean done;   /* no longer touches the pool (under the lock) */
} Worker;

struct _VmcTicketPool {
    GMutex lock;
    GQueue keys; /* made by a worker (or fill), not warmed yet */
    GQueue warm; /* warmed on the owner's thread: used first */
    guint target;
    guint grow_max;
    gboolean background;
    gboolean closing;
    GPtrArray *workers; /* Worker*: running or done, not joined yet */
    guint running;     /* workers not done */
    guint busy;        /* keys being made right now */
    guint max_workers; /* one per CPU, at most MAX_WORKERS */
    gboolean waiting;  /* a take_nowait() gave no key: notify when one is made */
    gboolean failed;   /* the last generation by a worker failed */
    guint64 misses;
    GSource *ready; /* on the attached context, or NULL */
};

static guint
pool_count(VmcTicketPool *pool)
{
    return pool->keys.length + pool->warm.length;
}


/* Worker: makes keys until the pool (with the keys being made) is full, then exits.
 * Touches only the pool's queue and, when a taker waits, the ready source. */
static gpointer
pool_worker(gpointer data)
{
    Worker *w = data;
    VmcTicketPool *pool = w->pool;

    /* key making is background work: let the protocol thread win the CPU */
    setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
    g_mutex_lock(&pool->lock);
    while (!pool->closing && pool_count(pool) + pool->busy < pool->target) {
        VmcTicketKey *key;
        GError *error = NULL;
        GSource *notify;

        pool->busy++;
        g_mutex_unlock(&pool->lock);
        key = vmc_ticket_key_new(&error);
        g_mutex_lock(&pool->lock);
        pool->busy--;
        if (key == NULL) {
            g_debug("ticket key pool: %s", error->message);
            g_error_free(error);
            pool->failed = TRUE;
        } else {
            pool->failed = FALSE;
            g_queue_push_tail(&pool->keys, key);
        }
        /* a waiting taker hears of the key, or of the failure (it then tries itself) */
        notify = pool->waiting ? pool->ready : NULL; /* set while anyone can wait */
        pool->waiting = FALSE;
        g_mutex_unlock(&pool->lock);
        /* thread-safe: takes the context's lock and wakes it up; the source lives
         * until the workers are joined */
        if (notify != NULL)
            g_source_set_ready_time(notify, 0);
        g_mutex_lock(&pool->lock);
        if (key == NULL)
            break;
    }
    pool->running--;
    g_mutex_unlock(&pool->lock);
    /* free this thread's OpenSSL state (its DRBGs) now, not at some later exit */
    OPENSSL_thread_stop();
    g_mutex_lock(&pool->lock);
    w->done = TRUE;
    g_mutex_unlock(&pool->lock);
    return NULL;
}

/* Called with the lock held: joins finished workers, starts the ones the deficit needs
 * (one per missing key, up to max_workers: they run at the lowest priority, so they
 * only take CPU time the protocol thread leaves). */
static void
pool_kick(VmcTicketPool *pool)
{
    guint want, deficit;

    for (guint i = 0; i < pool->workers->len;) {
        Worker *w = g_ptr_array_index(pool->workers, i);
        if (w->done) {
            /* it no longer touches the lock: joining here is immediate */
            g_thread_join(w->thread);
            g_free(w);
            g_ptr_array_remove_index_fast(pool->workers, i);
        } else {
            i++;
        }
    }
    if (!pool->background || pool->closing)
        return;
    deficit = pool->target > pool_count(pool) + pool->busy
                  ? pool->target - pool_count(pool) - pool->busy
                  : 0;
    want = MIN(pool->max_workers, deficit);
    while (pool->running < want) {
        GError *error = NULL;
        Worker *w = g_new0(Worker, 1);

        w->pool = pool;
        w->thread = g_thread_try_new("vmc-ticket-keys", pool_worker, w, &error);
        if (w->thread == NULL) {
            g_debug("ticket key pool: cannot start a worker: %s", error->message);
            g_error_free(error);
            g_free(w);
            return;
        }
        g_ptr_array_add(pool->workers, w);
        pool->running++;
    }
}

/* Called with the lock held when a take found no key: keep more ready next time. */
static void
pool_missed(VmcTicketPool *pool)
{
    pool->misses++;
    if (pool->background && pool->target < pool->grow_max)
        pool->target = MIN(pool->target * 2, pool->grow_max);
}

/**
 * vmc_ticket_pool_new:
 * @target: keys to keep ready (0 is taken as 1)
 * @background: refill from worker threads
 *
 * Returns: (transfer full): the pool
 */
VmcTicketPool *
vmc_ticket_pool_new(guint target, gboolean background)
{
    VmcTicketPool *pool = g_new0(VmcTicketPool, 1);

    g_mutex_init(&pool->lock);
    g_queue_init(&pool->keys);
    g_queue_init(&pool->warm);
    pool->workers = g_ptr_array_new();
    pool->target = MAX(target, 1u);
    pool->grow_max = MAX(pool->target, VMC_TICKET_POOL_GROW_MAX);
    pool->background = background;
    pool->max_workers = CLAMP(g_get_num_processors(), 1u, MAX_WORKERS);
    g_mutex_lock(&pool->lock);
    pool_kick(pool);
    g_mutex_unlock(&pool->lock);
    return pool;
}

void
vmc_ticket_pool_free(VmcTicketPool *pool)
{
    if (pool == NULL)
        return;
    g_mutex_lock(&pool->lock);
    pool->closing = TRUE;
    g_mutex_unlock(&pool->lock);
    /* no new workers start once closing is set; each one ends after its key */
    for (guint i = 0; i < pool->workers->len; i++) {
        Worker *w = g_ptr_array_index(pool->workers, i);
        g_thread_join(w->thread);
        g_free(w);
    }
    g_ptr_array_unref(pool->workers);
    if (pool->ready != NULL) {
        g_source_destroy(pool->ready);
        g_source_unref(pool->ready);
    }
    g_queue_clear_full(&pool->keys, (GDestroyNotify)vmc_ticket_key_free);
    g_queue_clear_full(&pool->warm, (GDestroyNotify)vmc_ticket_key_free);
    g_mutex_clear(&pool->lock);
    g_free(pool);
}

typedef struct {
    VmcTicketPoolReadyFunc func;
    gpointer user_data;
} ReadyCb;

static gboolean
ready_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    ReadyCb *cb = user_data;

    g_source_set_ready_time(source, -1);
    cb->func(cb->user_data);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs ready_funcs = {
    .dispatch = ready_dispatch,
};

/**
 * vmc_ticket_pool_attach:
 * @context: where @func is called
 * @func: (scope notified): told that keys were made for a waiting taker
 */
void
vmc_ticket_pool_attach(VmcTicketPool *pool, GMainContext *context, VmcTicketPoolReadyFunc func,
                       gpointer user_data)
{
    GSource *src;
    ReadyCb *cb;

    g_return_if_fail(pool != NULL && func != NULL);
    g_return_if_fail(pool->ready == NULL);

    cb = g_new0(ReadyCb, 1);
    cb->func = func;
    cb->user_data = user_data;
    src = g_source_new(&ready_funcs, sizeof(GSource));
    g_source_set_static_name(src, "vmc-ticket-keys-ready");
    g_source_set_callback(src, NULL, cb, g_free);
    g_source_set_ready_time(src, -1);
    g_source_attach(src, context);
    g_mutex_lock(&pool->lock);
    pool->ready = src;
    g_mutex_unlock(&pool->lock);
}

/* Called with the lock held. */
static VmcTicketKey *
pool_pop(VmcTicketPool *pool)
{
    VmcTicketKey *key = g_queue_pop_head(&pool->warm);

    return key != NULL ? key : g_queue_pop_head(&pool->keys);
}

VmcTicketKey *
vmc_ticket_pool_take(VmcTicketPool *pool, GError **error)
{
    VmcTicketKey *key;

    g_return_val_if_fail(pool != NULL, NULL);

    g_mutex_lock(&pool->lock);
    key = pool_pop(pool);
    if (key == NULL)
        pool_missed(pool);
    pool_kick(pool);
    g_mutex_unlock(&pool->lock);
    if (key == NULL)
        key = vmc_ticket_key_new(error);
    return key;
}

/**
 * vmc_ticket_pool_take_nowait:
 * @key: (out) (transfer full) (nullable): the key, or %NULL: wait for the ready callback
 */
gboolean
vmc_ticket_pool_take_nowait(VmcTicketPool *pool, VmcTicketKey **key, GError **error)
{
    VmcTicketKey *k;
    gboolean wait = FALSE;

    g_return_val_if_fail(pool != NULL && key != NULL, FALSE);

    g_mutex_lock(&pool->lock);
    k = pool_pop(pool);
    if (k == NULL) {
        pool_missed(pool);
        if (pool->ready != NULL && pool->background && !pool->failed) {
            pool->waiting = TRUE;
            pool_kick(pool);
            /* someone must be making a key that will wake us */
            wait = pool->busy > 0 || pool->running > 0;
            if (!wait)
                pool->waiting = FALSE;
        }
    }
    pool_kick(pool);
    g_mutex_unlock(&pool->lock);
    if (k == NULL && !wait) {
        k = vmc_ticket_key_new(error);
        if (k == NULL)
            return FALSE;
    }
    *key = k;
    return TRUE;
}

gboolean
vmc_ticket_pool_fill(VmcTicketPool *pool, GError **error)
{
    g_return_val_if_fail(pool != NULL, FALSE);

    for (;;) {
        VmcTicketKey *key;

        g_mutex_lock(&pool->lock);
        if (pool_count(pool) >= pool->target) {
            g_mutex_unlock(&pool->lock);
            return TRUE;
        }
        g_mutex_unlock(&pool->lock);
        key = vmc_ticket_key_new(error);
        if (key == NULL)
            return FALSE;
        g_mutex_lock(&pool->lock);
        g_queue_push_tail(&pool->keys, key);
        g_mutex_unlock(&pool->lock);
    }
}

guint
vmc_ticket_pool_get_ready(VmcTicketPool *pool)
{
    guint n;

    g_return_val_if_fail(pool != NULL, 0);
    g_mutex_lock(&pool->lock);
    n = pool_count(pool);
    g_mutex_unlock(&pool->lock);
    return n;
}

guint
vmc_ticket_pool_get_target(VmcTicketPool *pool)
{
    guint n;

    g_return_val_if_fail(pool != NULL, 0);
    g_mutex_lock(&pool->lock);
    n = pool->target;
    g_mutex_unlock(&pool->lock);
    return n;
}

gboolean
vmc_ticket_pool_warm_one(VmcTicketPool *pool)
{
    VmcTicketKey *key;

    g_return_val_if_fail(pool != NULL, FALSE);
    g_mutex_lock(&pool->lock);
    key = g_queue_pop_head(&pool->keys);
    g_mutex_unlock(&pool->lock);
    if (key == NULL)
        return FALSE;
    vmc_ticket_key_warm(key); /* a failure here only means no head start */
    g_mutex_lock(&pool->lock);
    g_queue_push_tail(&pool->warm, key);
    g_mutex_unlock(&pool->lock);
    return TRUE;
}

gboolean
vmc_ticket_pool_is_warm(VmcTicketPool *pool)
{
    gboolean full;

    g_return_val_if_fail(pool != NULL, TRUE);
    g_mutex_lock(&pool->lock);
    full = pool->warm.length >= pool->target;
    g_mutex_unlock(&pool->lock);
    return full;
}

guint64
vmc_ticket_pool_get_misses(VmcTicketPool *pool)
{
    guint64 n;

    g_return_val_if_fail(pool != NULL, 0);
    g_mutex_lock(&pool->lock);
    n = pool->misses;
    g_mutex_unlock(&pool->lock);
    return n;
}
