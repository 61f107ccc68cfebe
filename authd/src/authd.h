/*
 * authd.h - the private header of portcullis-authd: every struct and cross-file function of
 * the daemon, grouped by the file that defines it (OpenBSD httpd.h style).
 *
 * The pure core (config.c, session.c, jwt.c, decide.c, redirect.c) touches no sockets and no
 * clocks: the current time is always the `now` parameter (Unix seconds). Only config.c reads
 * files (the cookie secret files, at load). The I/O side (main.c, server.c, ...) adds its own
 * sections at the end of this file.
 *
 * Return codes are those of portcullis/base.h: 0 or a negative PC_E* / -errno code.
 * Additive changes only: other files code against these declarations.
 */
#ifndef PORTCULLIS_AUTHD_H
#define PORTCULLIS_AUTHD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "portcullis/strmap.h"

#include "portcullis/base.h"

/* Bounds on what arrives from the network. */
#define AUTHD_MAX_COOKIE_HEADER (16 * 1024) /* bytes of one Cookie header */
#define AUTHD_MAX_COOKIES 128               /* name=value pairs parsed from one header */
#define AUTHD_MAX_CHUNKS 16                 /* <name>_0 .. <name>_15 */
#define AUTHD_MAX_CHUNK_SETS 4              /* colliding sets of chunks tried per request */
#define AUTHD_CHUNK_SIZE 4000               /* bytes of one cookie value */
#define AUTHD_MAX_STATE_COOKIES 8           /* parallel logins honoured per browser */
#define AUTHD_STATE_LIFETIME 600            /* seconds a login may take */
#define AUTHD_MAX_TOKEN (16 * 1024)         /* bytes of a compact JWS */
#define AUTHD_MAX_REDIRECT 2048             /* bytes of a redirect target */
#define AUTHD_MAX_SECRETS 8                 /* cookieSecretFiles entries */
#define AUTHD_MIN_SECRET 32                 /* bytes of a cookie secret */
#define AUTHD_JWT_LEEWAY 60                 /* seconds of clock skew tolerated */
#define AUTHD_MAX_HOST 262                  /* bytes of a host header value: name, dot, :port */

/* A list of new strings; the list owns them. */
struct authd_strlist {
    char **v;
    size_t n;
};

enum authd_mode { AUTHD_MODE_ENFORCE, AUTHD_MODE_REPORT_ONLY };
enum authd_samesite { AUTHD_SAMESITE_LAX, AUTHD_SAMESITE_STRICT, AUTHD_SAMESITE_NONE };

/* One upstreamHeaders entry: header `name` gets the value of the session's claim `claim`. */
struct authd_upstream_header {
    char *name;
    char *claim;
};

/*
 * Keys derived (HKDF-SHA256) from the cookie secrets. Index 0 seals, every index opens.
 * Cleansed by authd_keys_release.
 */
struct authd_keys {
    size_t n;
    uint8_t session[AUTHD_MAX_SECRETS][32]; /* session cookies */
    uint8_t state[AUTHD_MAX_SECRETS][32];   /* login state cookies */
    uint8_t redis[AUTHD_MAX_SECRETS][32];   /* salt of the keys of sessions kept in Redis */
};

/* Where a host's sessions live: sealed in the cookie, or in Redis behind a ticket cookie. */
enum authd_session_store { AUTHD_STORE_COOKIE, AUTHD_STORE_REDIS };

/* One hosts[] entry of the config: a ProtectedHost's spec with its secrets resolved. */
struct authd_host {
    char *id;                   /* "namespace/name" */
    struct authd_strlist hosts; /* lowercase; "*.example.com" wildcards kept as written */
    struct {
        char *issuer_url; /* no trailing slash is added or removed: compared exactly */
        char *client_id;
        char *client_secret;         /* NULL for public clients; cleansed on free */
        struct authd_strlist scopes; /* "openid" always first */
        char *claim_groups;          /* dotted paths, default groups / email / preferred_username */
        char *claim_email;
        char *claim_username;
        char *callback_path; /* default /oauth2/callback */
        char *sign_out_path; /* default /oauth2/sign_out */
        /* allowedURLPrefixes (the admin policy's issuers): the only URLs authd fetches for
         * this host's issuer (discovery, JWKS, token endpoint); empty: any. */
        struct authd_strlist url_prefixes;
    } oidc;
    struct {
        struct authd_strlist groups;
        struct authd_strlist email_domains; /* lowercase, no leading "@" */
        struct authd_strlist emails;        /* lowercase */
        /* Email rules and the email header use the email claim even without
         * email_verified: true (IdPs that never send it). Off by default. */
        bool allow_unverified_email;
    } access;
    struct {
        struct authd_strlist skip;
        struct authd_strlist api;
    } paths;
    struct {
        char *cookie_name;   /* default _portcullis */
        char *cookie_domain; /* NULL: host-only */
        int64_t lifetime;    /* seconds, default 12h */
        int64_t refresh;     /* seconds, 0 = never */
        enum authd_samesite same_site;
        enum authd_session_store store; /* default cookie */
    } session;
    struct authd_upstream_header *upstream_headers;
    size_t nupstream_headers;
    bool pass_id_token;
    struct {
        bool enabled;
        struct authd_strlist audiences; /* empty: the clientID */
    } bearer;
    enum authd_mode mode;
};

struct authd_pages;

/*
 * The top-level redis section: authd's one connection to the session store shared by every
 * replica. Strings new, owned; the password is cleansed on free.
 */
struct authd_redis_config {
    char *url;      /* redis://host[:port][/db] or rediss://..., as written (no userinfo) */
    bool tls;       /* rediss:// */
    char *host;     /* from the URL; "[v6]" brackets removed */
    int port;       /* default 6379 */
    int database;   /* the URL's /db or database:, default 0 */
    char *username; /* ACL user, NULL: the default user */
    char *password; /* read from password_file, NULL: no AUTH */
    char *password_file;
    char *ca_file;              /* rediss: CA bundle, NULL: the system's */
    char *server_name;          /* rediss: the name the certificate must carry, default host */
    char *key_prefix;           /* default "portcullis:" */
    int64_t connect_timeout_ms; /* default 1000 */
    int64_t command_timeout_ms; /* default 500, at most AUTHD_REDIS_MAX_COMMAND_MS */
    int64_t revalidate;         /* seconds a held session is used before Redis is asked again */
    int64_t grace;              /* seconds held sessions keep passing while Redis is down */
};
#define AUTHD_REDIS_MAX_COMMAND_MS 1500 /* a check through Envoy must end within its 2 s */
/* A new deep copy of r (NULL: NULL); free it with authd_redis_config_free (NULL: no-op). */
struct authd_redis_config *authd_redis_config_copy(const struct authd_redis_config *r);
void authd_redis_config_free(struct authd_redis_config *r);

struct authd_config {
    char *file;             /* path it was loaded from, or NULL */
    char *listen;           /* default 0.0.0.0:4180 */
    char *admin_listen;     /* default 0.0.0.0:9090 */
    char *ext_authz_prefix; /* default /ext-authz */
    bool allow_insecure_issuers;
    struct authd_strlist secret_files;
    struct authd_keys keys;
    /* The entries in order. A config loaded from a file owns them (store); a merged one
     * (authd_config_with_hosts) points into its parts, which may serve several configs. */
    struct authd_host **hosts;
    struct authd_host *store;
    size_t nhosts;
    /* Host name -> hosts[] index (exact names), ".suffix" -> index ("*.suffix" wildcards):
     * authd_config_match_host's lookups, built with the host list (keys borrowed from it).
     * Not indexed: every lookup scans (the tests compare the two). */
    struct pc_strmap exact, wild;
    bool indexed;
    /* Merged from parts (authd_config_with_hosts): the config holds a reference to each.
     * NULL otherwise. */
    struct authd_hostlist **parts;
    size_t nparts;
    char *templates_dir;              /* templatesDir / --templates-dir, NULL: built-in pages */
    struct authd_pages *pages;        /* loaded from templates_dir; NULL: built-in pages */
    struct authd_redis_config *redis; /* the redis section, NULL when absent */
};

/*
 * The claims a decision needs, from a session or a verified bearer token. Strings are new,
 * owned by the struct; NULL when absent. extra holds the values of upstreamHeaders claims
 * other than sub/email/preferred_username/groups (string claims, dotted paths allowed).
 */
struct authd_claim {
    char *name;
    char *value;                /* a scalar claim (numbers and bools rendered); NULL for a list */
    struct authd_strlist items; /* a list claim: its string items (at most 1024) */
};
struct authd_identity {
    char *sub;
    char *email;         /* as the IdP sent it; authd_identity_email says whether it counts */
    bool email_verified; /* the token's email_verified was true */
    char *preferred_username;
    struct authd_strlist groups;
    struct authd_claim *extra;
    size_t nextra;
};

/* An open session (decrypted cookie). */
struct authd_session {
    struct authd_identity id;
    char *issuer;
    char *client_id;
    int64_t issued_at;    /* login time */
    int64_t expires_at;   /* the session ends here, whatever the tokens say */
    int64_t refreshed_at; /* last successful refresh, = issued_at before any */
    char *refresh_token;  /* optional; cleansed on free */
    char *id_token;       /* optional (kept only when passIDToken); cleansed on free */
};

/* A login in progress, sealed in the cookie <cookieName>_csrf_<id>. */
struct authd_login_state {
    char *id;            /* short random id, the cookie name suffix */
    char *state;         /* the OAuth2 state parameter; starts with id */
    char *nonce;         /* OIDC nonce */
    char *pkce_verifier; /* PKCE S256 code_verifier; challenge via authd_pkce_challenge */
    char *redirect;      /* validated return target */
    char *host_id;       /* authd_host.id that started the login */
    int64_t expires_at;
};

/* ------------------------------------------------------------------------------------------ */
/* config.c */

/*
 * Reads a whole secret file. Returns 0 with *data new (caller cleanses and frees) or a negative
 * code. Lets tests and fuzzers load configs without touching the disk.
 */
typedef int (*authd_read_file_fn)(void *ud, const char *path, char **data, size_t *len);

/*
 * Values from the command line that win over the file's: the file is often rendered for a
 * pod's layout (listen 0.0.0.0:4180, secrets under /etc/portcullis) that differs from where
 * authd actually runs. Applied on every load, reloads included.
 */
struct authd_overrides {
    const char *listen;       /* NULL: the file's */
    const char *admin_listen; /* NULL: the file's */
    const char *secret_files[AUTHD_MAX_SECRETS];
    size_t nsecret_files;        /* 0: the file's cookieSecretFiles */
    bool allow_insecure_issuers; /* true wins over the file's allowInsecureIssuers */
    const char *templates_dir;   /* NULL: the file's templatesDir */
    /* --redis-*: with redis_url set they replace the file's whole redis section. */
    const char *redis_url, *redis_username, *redis_password_file, *redis_ca_file;
};

struct authd_config_opts {
    const char *file;             /* name used in diagnostics, may be NULL */
    authd_read_file_fn read_file; /* NULL: read from disk */
    void *ud;
    const struct authd_overrides *overrides; /* may be NULL */
    bool head_only; /* --watch-config: hosts must be absent or empty (they come from parts) */
};

/*
 * Parses the §5 config from memory. On success *out is new (authd_config_free); on failure
 * returns PC_EPARSE / PC_EINVAL / PC_ETOOBIG / PC_EIO and diag holds "line:col: message" that
 * names the field and the fix (format with pc_diag_format). Secret files are read here, their
 * content (one trailing newline stripped) must be >= AUTHD_MIN_SECRET bytes; keys are derived.
 */
int authd_config_parse(const char *text, size_t len, const struct authd_config_opts *opts,
                       struct authd_config **out, struct pc_diag *diag);
/* Reads path and parses it (diag->file = path). Same errors, plus -errno for the file. */
int authd_config_load(const char *path, struct authd_config **out, struct pc_diag *diag);
/* The same with command-line overrides (may be NULL). */
int authd_config_load_with(const char *path, const struct authd_overrides *ov,
                           struct authd_config **out, struct pc_diag *diag);
/*
 * The head of an --watch-config config (everything but the hosts): from the file at path,
 * whose hosts must be absent or empty, or with path NULL from ov and the defaults alone
 * (diagnostics then name "command line"). Same errors as authd_config_load_with.
 */
int authd_config_load_head(const char *path, const struct authd_overrides *ov,
                           struct authd_config **out, struct pc_diag *diag);

/*
 * The hosts[] entries of one part of a config (a config Secret shard), parsed alone: immutable
 * once parsed, reference-counted, shared by every config merged from it.
 */
struct authd_hostlist {
    atomic_int refs;
    struct authd_host *hosts;
    size_t n;
    struct {
        int line, col;
    } * pos; /* where each entry starts in the document, for diagnostics */
};
struct authd_hostlist_opts {
    const char *file; /* names the document in diagnostics ("<secret>/hosts.yaml") */
    bool allow_insecure_issuers;
};
/*
 * Parses a document that is a map with the one key `hosts` (a list, possibly empty) of hosts[]
 * entries, checked as in a config file (ids, host names and cookie scopes unique within it).
 * Returns 0 with *out new (refs 1), or the errors of authd_config_parse with "file:line:col".
 */
int authd_hostlist_parse(const char *text, size_t len, const struct authd_hostlist_opts *opts,
                         struct authd_hostlist **out, struct pc_diag *diag);
struct authd_hostlist *authd_hostlist_get(struct authd_hostlist *l);
/* Drops one reference; the last frees the entries (secrets wiped). NULL is a no-op. */
void authd_hostlist_put(struct authd_hostlist *l);
/*
 * New config with head's settings and keys and the entries of parts in order (each part gets
 * a reference). The caller checked that they fit together (authd_host_cookie_claim, unique
 * ids and host names).
 */
struct authd_config *authd_config_with_hosts(const struct authd_config *head,
                                             struct authd_hostlist *const *parts, size_t nparts);
/*
 * Records h's session cookie in s (cookiescope.h) under label; PC_EINVAL with *why new when it
 * collides with an entry recorded before (then h is not recorded).
 */
struct pc_cookie_scopes;
int authd_host_cookie_claim(struct pc_cookie_scopes *s, const struct authd_host *h,
                            const char *label, char **why);
void authd_config_free(struct authd_config *cfg);
/*
 * New config to serve with while the --config file does not exist yet (a Kubernetes Secret
 * mounted optional: true): no hosts, no keys, listen addresses from ov (may be NULL) or the
 * defaults 0.0.0.0:4180 / 0.0.0.0:9090, secret_files from ov (so the watcher notices them).
 */
struct authd_config *authd_config_placeholder(const struct authd_overrides *ov);

/*
 * The host policy for a Host header value: port stripped, lowercased, an exact entry beats any
 * "*." wildcard, the longest wildcard suffix wins ("*.example.com" matches "a.example.com" and
 * "a.b.example.com", never "example.com"). Borrowed from cfg; NULL for unknown hosts.
 */
const struct authd_host *authd_config_match_host(const struct authd_config *cfg, const char *host);
/*
 * True when two Host-style values name the same host: equal after the normalisation
 * authd_config_match_host applies (port, case, trailing dots), or, when either is no usable
 * host name, equal ignoring case.
 */
bool authd_host_same(const char *a, const char *b);
/*
 * The host name of a Host-style value as authd_config_match_host compares it (port dropped,
 * lowercased, trailing dots dropped) into out. False when it is no usable host name.
 */
bool authd_host_normalize(const char *in, char *out, size_t outlen);
/* Parses "12h", "30m", "90s", "1h30m", "0s", "0" into seconds. Returns 0 or PC_EPARSE. */
int authd_parse_duration(const char *s, int64_t *out);

void authd_strlist_release(struct authd_strlist *l);
/* Appends a copy of s. */
void authd_strlist_add(struct authd_strlist *l, const char *s);
bool authd_strlist_contains(const struct authd_strlist *l, const char *s);
/*
 * Whether authd may fetch url for an issuer whose hosts have the allowedURLPrefixes lists[n]:
 * within a prefix (pc_url_within) of every non-empty list. No non-empty list: any url.
 */
bool authd_url_allowed(const struct authd_strlist *lists, size_t n, const char *url);

/* ------------------------------------------------------------------------------------------ */
/* shards.c: the hosts from the config Secrets portcullis-authd-config-<xx> (--watch-config). */

#define AUTHD_SHARD_PREFIX "portcullis-authd-config-"
#define AUTHD_MAX_SHARDS 256

/* Every shard's newest version and the one last merged. Not thread-safe. */
struct authd_shards;
struct authd_shards *authd_shards_new(bool allow_insecure_issuers);
void authd_shards_free(struct authd_shards *s);
/* 0..255 for "portcullis-authd-config-<xx>" (two lowercase hex digits), else PC_EINVAL. */
int authd_shard_index(const char *name);

/* A watch event of a config Secret. */
struct authd_shard_change {
    const json_t *secret; /* the Secret (borrowed); for a deletion, metadata.name suffices */
    bool deleted;
};
/*
 * Records the Secret's version as the shard's newest: its data key hosts.yaml parsed alone
 * (authd_hostlist_parse) and its annotation portcullis.io/generation. A deletion forgets the
 * shard. Returns 0, or why the version is refused (diag->msg holds "<secret>/hosts.yaml:line:col:
 * message"; the version loaded before keeps serving): the parse errors, PC_EINVAL for a missing
 * generation or a name that is not a shard's (then nothing is recorded).
 */
int authd_shards_apply(struct authd_shards *s, const struct authd_shard_change *ch,
                       struct pc_diag *diag);

/* A version a merge refused for the first time (its hosts collide with a lower shard's). */
struct authd_shard_refusal {
    int index;     /* 0..255 */
    char shard[3]; /* "0a" */
    long long generation;
    char *why; /* new: "<secret>/hosts.yaml:line:col: hosts[i] (id x): ..." */
};
struct authd_shards_result {
    struct authd_config *cfg; /* new: head's settings, every merged shard's hosts */
    char *loaded;             /* new: "00=12,01=9": shard=generation of each merged version */
    char *rejected;           /* new: "0a=13": shards whose newest version is refused, or "" */
    size_t nloaded, nrejected;
    bool changed; /* another set of versions than the previous merge's */
    struct authd_shard_refusal *refused;
    size_t nrefused;
};
/*
 * Merges the shards in name order over head (borrowed): each gives its newest version when it
 * parsed and fits with the shards before it (ids and host names once, cookie scopes as in one
 * config file), else the version merged before when that still fits, else nothing. Fills *r
 * (release it). Returns 0.
 */
int authd_shards_merge(struct authd_shards *s, const struct authd_config *head,
                       struct authd_shards_result *r);
void authd_shards_result_release(struct authd_shards_result *r);

/* ------------------------------------------------------------------------------------------ */
/* revoke.c: what the revocation list (portcullis/revocations.h) means for a session. */

#include "portcullis/revocations.h"

/* A session refused because its user was revoked after it was issued (a PC_E*-style code). */
#define AUTHD_EREVOKED (-1201)

/* The list indexed for the check path; immutable once built. */
struct authd_revocations;
/*
 * New index taking over l's entries (l is left empty). A notBefore later than now becomes now:
 * the revoking machine's clock may be ahead, and sessions issued after authd saw the entry are
 * new logins.
 */
struct authd_revocations *authd_revocations_new(struct pc_revocations *l, int64_t now);
void authd_revocations_free(struct authd_revocations *r);
/* Entries in r; 0 for NULL. */
size_t authd_revocations_count(const struct authd_revocations *r);
/*
 * The entry that ends s at host_name (a Host value: port, case and trailing dots ignored), or
 * NULL: its user is s's sub (exact) or s's email (ASCII case-insensitive, verified or not),
 * s was issued at or before its notBefore, and its hosts are empty or name host_name exactly
 * or as a "*." wildcard above it. r may be NULL. Borrowed from r.
 */
const struct pc_revocation *authd_revocations_match(const struct authd_revocations *r,
                                                    const struct authd_session *s,
                                                    const char *host_name);
/*
 * The one check every session store passes an opened session through before it is used at
 * host: 0 (use it), PC_EEXPIRED (older than the host's session.lifetime as configured now) or
 * AUTHD_EREVOKED (*hit: the entry, borrowed from r). r may be NULL (nothing revoked).
 */
int authd_session_check(const struct authd_revocations *r, const struct authd_host *host,
                        const char *host_name, const struct authd_session *s, int64_t now,
                        const struct pc_revocation **hit);
/*
 * For a session being minted at login: when r holds a revocation of its user at or after its
 * issued_at (same second), issued_at (and refreshed_at) move to one second after it, so the
 * new login is not refused by the revocation it follows.
 */
void authd_revocations_mint(const struct authd_revocations *r, struct authd_session *s);

/* ------------------------------------------------------------------------------------------ */
/* session.c */

/* Derives the keys from secrets (each >= AUTHD_MIN_SECRET bytes). Returns 0 or PC_EINVAL. */
int authd_keys_init(struct authd_keys *k, const char *const *secrets, const size_t *lens, size_t n);
void authd_keys_release(struct authd_keys *k);

/* One parsed Cookie header: name/value pairs borrowed from `buf` (owned). */
struct authd_cookie {
    const char *name;
    const char *value;
};
struct authd_cookie_jar {
    char *buf;
    struct authd_cookie v[AUTHD_MAX_COOKIES];
    size_t n;
};
/*
 * Parses a Cookie header ("a=1; b=2"); NULL/empty gives an empty jar. Pairs without "=" are
 * skipped. Returns 0, or PC_ETOOBIG over AUTHD_MAX_COOKIE_HEADER bytes / AUTHD_MAX_COOKIES
 * pairs (jar then empty). Release with authd_cookie_jar_release.
 */
int authd_cookie_jar_parse(struct authd_cookie_jar *jar, const char *header);
void authd_cookie_jar_release(struct authd_cookie_jar *jar);
/* The first value of cookie name, borrowed from jar; NULL when absent. */
const char *authd_cookie_get(const struct authd_cookie_jar *jar, const char *name);

/*
 * New Cookie header with authd's own cookies (cookie_name, cookie_name_<N>, cookie_name_csrf_*)
 * removed, for the upstream; NULL when nothing is left (or header is NULL / too big: then the
 * upstream gets no cookies rather than authd's).
 */
char *authd_cookie_strip(const char *header, const char *cookie_name);

/*
 * New session from verified ID-token claims: identity per host->oidc.claims and the host's
 * upstreamHeaders, issuer/client from host, issued_at = refreshed_at = now, expires_at =
 * now + host->session.lifetime. id_token is kept only when host->pass_id_token; both tokens
 * may be NULL. Returns 0 or PC_EINVAL (no "sub").
 */
int authd_session_from_claims(const struct authd_host *host, const json_t *claims,
                              const char *id_token, const char *refresh_token, int64_t now,
                              struct authd_session **out);
void authd_session_free(struct authd_session *s);
void authd_identity_release(struct authd_identity *id);

/*
 * Seals s into Set-Cookie header values appended to *set_cookie (new strings): one cookie
 * named cookie_name, or cookie_name_0..N when the value exceeds AUTHD_CHUNK_SIZE. Attributes:
 * Path=/; Max-Age=expires_at-now; Secure; HttpOnly; SameSite; Domain when configured.
 * cookie_header (may be NULL) is the request's Cookie header: chunks it carries that the new
 * value does not use are cleared. Returns 0, PC_ETOOBIG (sealed value over
 * AUTHD_MAX_COOKIE_HEADER - 3 KiB, so it could never come back in a Cookie header; the caller
 * should fail the login rather than loop), PC_EIO.
 */
int authd_session_seal(const struct authd_keys *keys, const struct authd_host *host,
                       const struct authd_session *s, const char *cookie_header, int64_t now,
                       struct authd_strlist *set_cookie);

/*
 * Opens the session cookie of host from a Cookie header (chunks reassembled). Every cookie
 * of that name (and up to AUTHD_MAX_CHUNK_SETS sets of chunks) is tried until one is a live
 * session of host's issuer and client. Returns 0 with *out new, or the most specific failure:
 *   PC_ENOTFOUND  no session cookie
 *   PC_ETOOBIG    header or reassembled value over its bounds
 *   PC_EAUTH      not decryptable with any key (tampered, truncated, foreign, bad version)
 *   PC_EEXPIRED   expires_at <= now
 *   PC_EINVAL     minted for another issuer+client than host's
 * A session sealed before email_verified was recorded is PC_EAUTH (the user logs in again).
 */
int authd_session_open(const struct authd_keys *keys, const struct authd_host *host,
                       const char *cookie_header, int64_t now, struct authd_session **out);

/*
 * Whether an opened session (a cookie's or one kept in Redis) may serve host now: 0, or
 * PC_EEXPIRED (expires_at <= now) or PC_EINVAL (minted for another issuer+client). Every
 * session a check uses passes here.
 */
int authd_session_accept(const struct authd_host *host, const struct authd_session *s, int64_t now);

/*
 * The session's plaintext (compact JSON, new; the caller wipes it with pc_free_secret) and
 * back: decode returns 0 with *out new or PC_EAUTH for anything that is not a session
 * authd_session_encode wrote. Both stores seal this text.
 */
char *authd_session_encode(const struct authd_session *s);
int authd_session_decode(const char *text, struct authd_session **out);
/*
 * The same session in authd's packed form (what the Redis store seals: faster to read back):
 * pack returns the bytes (new; the caller wipes them with pc_cleanse and frees them) and
 * their length; unpack returns 0 with *out new or PC_EAUTH for anything pack did not write.
 */
uint8_t *authd_session_pack(const struct authd_session *s, size_t *len);
int authd_session_unpack(const uint8_t *p, size_t len, struct authd_session **out);

/*
 * Appends Set-Cookie values for a session cookie holding value (a ticket of a Redis session):
 * the attributes of authd_session_seal, chunks the request carried cleared.
 */
void authd_session_set_value(const struct authd_host *host, const char *value, int64_t max_age,
                             const char *cookie_header, struct authd_strlist *set_cookie);

/* True when host->session.refresh > 0, s has a refresh token and now - refreshed_at >= refresh. */
bool authd_session_needs_refresh(const struct authd_host *host, const struct authd_session *s,
                                 int64_t now);

/*
 * Appends Set-Cookie values (Max-Age=0) clearing every authd cookie present in cookie_header:
 * the session (unchunked and each chunk; the unchunked name always) and, when with_state, the
 * login state cookies.
 */
void authd_session_clear(const struct authd_host *host, const char *cookie_header, bool with_state,
                         struct authd_strlist *set_cookie);

/*
 * New login state for host with fresh random id/state/nonce/PKCE verifier, redirect copied
 * (validate it first with authd_redirect_validate), expires_at = now + AUTHD_STATE_LIFETIME.
 */
struct authd_login_state *authd_login_state_new(const struct authd_host *host, const char *redirect,
                                                int64_t now);
void authd_login_state_free(struct authd_login_state *st);

/*
 * Seals st into its own cookie <cookieName>_csrf_<id> (Max-Age = expires_at - now, SameSite=Lax
 * so the IdP's redirect back carries it) appended to *set_cookie. State cookies in cookie_header
 * that are expired, unreadable, or the oldest beyond AUTHD_MAX_STATE_COOKIES - 1 are cleared in
 * the same list. Returns 0 or PC_EIO.
 */
int authd_login_state_seal(const struct authd_keys *keys, const struct authd_host *host,
                           const struct authd_login_state *st, const char *cookie_header,
                           int64_t now, struct authd_strlist *set_cookie);

/*
 * Finds and opens the state cookie matching the callback's `state` parameter. Returns 0 with
 * *out new (and a Set-Cookie clearing that cookie appended to *set_cookie), or PC_ENOTFOUND
 * (no such cookie), PC_EAUTH (undecryptable, state mismatch, other host), PC_EEXPIRED.
 */
int authd_login_state_open(const struct authd_keys *keys, const struct authd_host *host,
                           const char *cookie_header, const char *state, int64_t now,
                           struct authd_login_state **out, struct authd_strlist *set_cookie);

/* New base64url SHA-256 of verifier: the PKCE S256 code_challenge. */
char *authd_pkce_challenge(const char *verifier);

/* ------------------------------------------------------------------------------------------ */
/* ticket.c: sessions kept in Redis (session.store: redis). No I/O. */

#define AUTHD_TICKET_ID_LEN 16
#define AUTHD_TICKET_SECRET_LEN 32
#define AUTHD_MAX_REDIS_BLOB (256 * 1024) /* bytes of one sealed session in Redis */

/* What the browser holds: the session's id and the secret its key derives from. */
struct authd_ticket {
    uint8_t id[AUTHD_TICKET_ID_LEN];
    uint8_t secret[AUTHD_TICKET_SECRET_LEN];
};

/* A new random ticket. Returns 0 or PC_EIO. */
int authd_ticket_new(struct authd_ticket *t);
void authd_ticket_wipe(struct authd_ticket *t);
/* The cookie value "t1." + base64url(id || secret), new (67 characters; wipe it). */
char *authd_ticket_format(const struct authd_ticket *t);
/* Parses a cookie value (len bytes) written by authd_ticket_format: 0 or PC_EPARSE. */
int authd_ticket_parse(const char *value, size_t len, struct authd_ticket *t);
/*
 * The tickets in every cookie called name in a Cookie header, however many other cookies it
 * holds: at most max go to out (in order), *more says there were others. For sign-out, which
 * must find every ticket the browser sent.
 */
size_t authd_ticket_find_all(const char *name, const char *header, struct authd_ticket *out,
                             size_t max, bool *more);
/*
 * The Redis key of t's session, "<prefix>s:" + 24 characters of a hash of the whole ticket, and
 * of its refresh lock ("<prefix>l:..."). New.
 */
char *authd_ticket_redis_key(const char *prefix, const struct authd_ticket *t);
char *authd_ticket_lock_key(const char *prefix, const struct authd_ticket *t);
/*
 * Seals s for Redis under t with the first key: *blob new (len bytes). Returns 0, PC_EINVAL
 * (no keys), PC_ETOOBIG (over AUTHD_MAX_REDIS_BLOB) or PC_EIO.
 */
int authd_ticket_seal(const struct authd_keys *k, const struct authd_host *host,
                      const struct authd_ticket *t, const struct authd_session *s, uint8_t **blob,
                      size_t *len);
/*
 * Opens a value read from Redis for t with any key and accepts it for host
 * (authd_session_accept). Returns 0 with *out new, PC_ETOOBIG, PC_EAUTH (another ticket's,
 * tampered, not authd's), PC_EPARSE (authd's, but of another version or not a session: the
 * user's, refused), PC_EEXPIRED or PC_EINVAL.
 */
int authd_ticket_open(const struct authd_keys *k, const struct authd_host *host,
                      const struct authd_ticket *t, const void *blob, size_t len, int64_t now,
                      struct authd_session **out);

/* ------------------------------------------------------------------------------------------ */
/* jwt.c */

enum authd_key_type { AUTHD_KEY_RSA, AUTHD_KEY_EC_P256, AUTHD_KEY_EC_P384 };

struct authd_jwk {
    char *kid; /* may be NULL in the document; such keys are never selected */
    char *alg; /* the JWK's own "alg", NULL when absent; narrows the allowed algs */
    enum authd_key_type type;
    char *pem;  /* SubjectPublicKeyInfo PEM (for diagnostics) */
    void *pkey; /* the same key as an OpenSSL EVP_PKEY, owned; verification uses it */
};
struct authd_jwks {
    struct authd_jwk *keys;
    size_t n;
};

/*
 * Parses a JWKS document ({"keys": [...]}). RSA (n, e) and EC P-256/P-384 (crv, x, y) keys
 * become PEM; "use": "enc" keys, other kty/crv, weak keys (RSA under 2048 bits or with e < 3,
 * EC points off the curve) and malformed single keys are skipped.
 * Returns 0 with *out new (possibly with no keys), PC_EPARSE when the document is not a JWKS,
 * PC_ETOOBIG over 1 MiB.
 */
int authd_jwks_parse(const char *json, size_t len, struct authd_jwks **out);
void authd_jwks_free(struct authd_jwks *ks);
/* The key with kid, borrowed; NULL when absent. */
const struct authd_jwk *authd_jwks_find(const struct authd_jwks *ks, const char *kid);

/* What a token must satisfy. */
struct authd_jwt_expect {
    const char *issuer;    /* exact match of "iss" */
    const char *client_id; /* ID tokens: "aud" contains it, "azp" (if present) equals it */
    const struct authd_strlist *audiences; /* non-NULL: bearer-token mode: "aud" intersects
                                              audiences (contains client_id when the list is
                                              empty) and "azp" is not checked */
    const char *nonce;                     /* non-NULL: "nonce" must equal it */
    int64_t now;
    int64_t leeway; /* seconds for exp/nbf/iat; 0 means AUTHD_JWT_LEEWAY */
};

/*
 * Verifies a compact JWS against ks and expect. Header "alg" must match the key's type (RSA:
 * RS256/384/512, PS256/384/512; P-256: ES256; P-384: ES384) and the JWK's "alg" if set;
 * "none" and HS* are always rejected. The signature is checked with OpenSSL (EVP_DigestVerify)
 * on the key chosen by kid: libjwt 1.10.2 would also refuse any "typ" but JWT (RFC 9068
 * "at+jwt" access tokens) and lacks PS*. Duplicate JSON keys are refused. Returns 0 with
 * *claims new (json_decref), or:
 *   PC_ETOOBIG    over AUTHD_MAX_TOKEN
 *   PC_EPARSE     not a compact JWS / bad header or payload
 *   PC_ENOTFOUND  no "kid" or kid not in ks (caller may refetch the JWKS, rate-limited)
 *   PC_EAUTH      alg not allowed for the key, or signature invalid
 *   PC_EEXPIRED   exp + leeway <= now
 *   PC_EINVAL     iss/aud/azp/nonce mismatch, nbf or iat in the future, exp missing
 * *why (optional) gets a static reason for logs ("unknown kid", "aud mismatch", ...).
 */
int authd_jwt_verify(const struct authd_jwks *ks, const char *token,
                     const struct authd_jwt_expect *expect, json_t **claims, const char **why);

/*
 * Fills id (released first by the caller) from verified claims: sub, email, username and
 * groups per host->oidc.claims (groups as an array of strings or one string), plus every
 * upstreamHeaders claim that is not one of those four: a scalar as a string (numbers and
 * bools rendered), an array as its string items. email_verified is true only when the token's
 * email_verified claim is the boolean true (or the string "true", as some IdPs send it).
 * Returns 0 or PC_EINVAL when "sub" is missing.
 */
int authd_identity_from_claims(const struct authd_host *host, const json_t *claims,
                               struct authd_identity *id);

/* ------------------------------------------------------------------------------------------ */
/* decide.c */

enum authd_door { AUTHD_DOOR_ENVOY, AUTHD_DOOR_NGINX };

/* The request as a front door saw it; all borrowed, NULL when absent. */
struct authd_request {
    enum authd_door door;
    const char *method;
    const char *host; /* Host (Envoy) or authd_origin_nginx's host (nginx) */
    const char *path; /* original path+query: Envoy after authd_envoy_original_path,
                         nginx authd_origin_nginx's path */
    const char *accept;
    const char *x_requested_with;
    const char *sec_fetch_mode;
    const char *authorization;
    const char *cookie;
    const char *x_forwarded_proto;
};

enum authd_verdict {
    AUTHD_ALLOW,          /* authenticated and permitted */
    AUTHD_SKIP,           /* paths.skip: allowed without identity */
    AUTHD_LOGIN_REDIRECT, /* browser without session: server builds the IdP URL (302) */
    AUTHD_UNAUTHORIZED,   /* 401 + WWW-Authenticate */
    AUTHD_FORBIDDEN,      /* 403: authenticated, not in the access lists */
    AUTHD_UNKNOWN_HOST,   /* 403: no policy for this host */
    AUTHD_CALLBACK,       /* path is the host's callbackPath: server handles it (status 0) */
    AUTHD_SIGN_OUT,       /* path is the host's signOutPath: server handles it (status 0) */
};

struct authd_header {
    char *name;
    char *value;
};

struct authd_decide_input {
    const struct authd_request *req;
    const struct authd_host *host;       /* authd_config_match_host result, NULL when unknown */
    int session_rc;                      /* authd_session_open result */
    const struct authd_session *session; /* when session_rc == 0 */
    int bearer_rc; /* PC_ENOTFOUND: no bearer token presented/verified; 0: verified */
    const struct authd_identity *bearer; /* when bearer_rc == 0 */
    int64_t now;
    const struct authd_pages *pages; /* 401/403 pages; NULL: the built-in ones */
    const char *request_id;          /* shown on those pages; may be NULL */
};

/*
 * The outcome. verdict is what the rules decided; status is what the door answers (Envoy:
 * 200/302/401/403, nginx: 202/401/403; LOGIN_REDIRECT reports 302 but the server builds the
 * Location). In ReportOnly mode (report_only) a non-allow verdict still has status 200/202 and
 * the identity headers when known. All strings new, released with authd_decision_release.
 */
struct authd_decision {
    enum authd_verdict verdict;
    int status;
    bool report_only;
    const char *reason;           /* static, for logs and metric labels: "session", "no-session",
                                     "expired", "forbidden-groups", "unknown-host", ... */
    struct authd_header *headers; /* on allow: every upstreamHeader (empty value when the claim
                                     is absent), Authorization when passIDToken, Cookie
                                     stripped of authd's cookies (value "" when none left) */
    size_t nheaders;
    char *content_type; /* 401/403 body type, NULL otherwise */
    char *body;
    char *www_authenticate; /* 401 */
    char *original_url;     /* LOGIN_REDIRECT: scheme://host/path of the request (scheme from
                               X-Forwarded-Proto, default https), for the state's redirect */
    bool refresh_due;       /* allowed from a session that authd_session_needs_refresh */
};

/*
 * Decides. Order: unknown host; callback / sign-out path; paths.skip; a presented bearer token
 * (when bearerTokens.enabled): verified -> access rules, otherwise 401; the session: valid ->
 * access rules, otherwise login (browser) or 401 (API path, Accept: application/json without
 * text/html, X-Requested-With: XMLHttpRequest, Sec-Fetch-Mode present and not "navigate",
 * non-GET/HEAD methods, and always at the nginx door).
 * Access rules (authd_access_allows): any-of across all non-empty lists.
 * Returns 0 (out filled; release it) or PC_EINVAL for a NULL request.
 */
int authd_decide(const struct authd_decide_input *in, struct authd_decision *out);
void authd_decision_release(struct authd_decision *d);

/*
 * True when a client wants JSON rather than a page: Accept names application/json and not
 * text/html, or X-Requested-With: XMLHttpRequest. Either may be NULL.
 */
bool authd_wants_json(const char *accept, const char *x_requested_with);

/*
 * Access rules. allowedGroups, allowedEmailDomains and allowedEmails are each any-of; when
 * several are non-empty the user passes if ANY list matches (a union, like oauth2-proxy's
 * email-domain OR group). All empty: any authenticated user. Emails and domains compare
 * case-insensitively; groups exactly. A domain entry matches "user@domain" only (no
 * subdomains). *why gets a static reason on refusal.
 */
bool authd_access_allows(const struct authd_host *host, const struct authd_identity *id,
                         const char **why);

/*
 * The email of id that host may act on: id->email when the IdP verified it, or when host sets
 * access.allowUnverifiedEmail; NULL otherwise. Email rules and the "email" identity header
 * use only this. Borrowed from id.
 */
const char *authd_identity_email(const struct authd_host *host, const struct authd_identity *id);

/*
 * Path lists (paths.skip, paths.api): an entry matches the request path (query stripped)
 * exactly, or as a prefix when it ends with "/" or "*" ("/api/" matches "/api/" and
 * "/api/x"; "/static*" matches "/static.css"; the "*" itself is not matched literally).
 */
bool authd_path_matches(const struct authd_strlist *list, const char *path);

/*
 * The original path+query of an Envoy check request: path with prefix removed ("/ext-authz/x"
 * -> "/x", "/ext-authz" -> "/"); NULL when path does not start with prefix at a "/" boundary.
 * Borrowed from path (or a static "/").
 */
const char *authd_envoy_original_path(const char *prefix, const char *path);

/*
 * The token of an "Authorization: Bearer <token>" header value (scheme case-insensitive), new;
 * NULL when absent, another scheme, empty, containing spaces, or over AUTHD_MAX_TOKEN.
 */
char *authd_bearer_from_header(const char *authorization);

/*
 * New string with the upstream value of claim for id ("sub", "email", "preferred_username",
 * "groups" joined with ",", or an extra claim); "" when absent. Header-safe: control
 * characters, bytes over 0x7e, "%" and a leading or trailing space are percent-encoded
 * ("Zo\xc3\xab" -> "Zo%C3%AB"), and so is "," inside a group name ("readers,admins" ->
 * "readers%2Cadmins"); other printable ASCII is unchanged. The caller frees it.
 */
char *authd_identity_claim(const struct authd_identity *id, const char *claim);

/* ------------------------------------------------------------------------------------------ */
/* redirect.c */

/*
 * Validates a redirect target (the rd parameter, a state's return URL). Allowed: a relative
 * path starting with exactly one "/" (not "//", not "/\"), or an absolute http/https URL whose
 * host (port ignored, case-insensitive) is `host_name` itself, matches any configured host of
 * cfg (exact or wildcard), or is inside a configured cookieDomain. Rejected: other schemes,
 * userinfo ("@" in the authority), backslashes, whitespace and control characters, encoded
 * control characters (%00-%1f, %7f), values over AUTHD_MAX_REDIRECT. cfg and host_name may be
 * NULL. Returns 0 with *out new (the target, scheme and host lowercased for absolute URLs),
 * PC_EINVAL or PC_ETOOBIG.
 */
int authd_redirect_validate(const struct authd_config *cfg, const char *host_name,
                            const char *target, char **out);

/* ------------------------------------------------------------------------------------------ */
/* pages.c: the pages people see (forbidden, errors, signed out), their JSON twin, operator
 * templates and request ids. No I/O. */

#define AUTHD_REQUEST_ID_LEN 10        /* characters of a request id */
#define AUTHD_MAX_TEMPLATE (32 * 1024) /* bytes of one operator template */
#define AUTHD_MAX_PAGE_VALUE 512       /* bytes of one value on a page; longer ones are cut */
#define AUTHD_MAX_PAGE (64 * 1024)     /* bytes of a rendered page */

enum authd_page {
    AUTHD_PAGE_FORBIDDEN,  /* 403: signed in, not allowed (forbidden.html) */
    AUTHD_PAGE_ERROR,      /* failed logins, unknown hosts, bad requests (error.html) */
    AUTHD_PAGE_SIGNED_OUT, /* sign-out with nowhere else to go (signed_out.html) */
    AUTHD_PAGE_COUNT
};

/* The template file name of each page kind, inside the templates directory. */
extern const char *const authd_page_files[AUTHD_PAGE_COUNT];

/* What a page shows; all borrowed, NULL (or "") when there is nothing to show. */
struct authd_page_fields {
    int status;               /* {{status}}, JSON "status" */
    const char *error;        /* {{error}}, JSON "error": a short code ("forbidden", ...) */
    const char *title;        /* {{title}} */
    const char *message;      /* {{message}}, JSON "message": what happened, in plain words */
    const char *email;        /* {{email}}: the signed-in account (email, else username/sub) */
    const char *host;         /* {{host}}: the site as the browser named it */
    const char *request_id;   /* {{request_id}}: also in authd's log line for the request */
    const char *sign_out_url; /* {{sign_out_url}}: the host's sign-out path */
    const char *sign_in_url;  /* {{sign_in_url}}: where a new login starts */
    /* The two links are dropped (empty) unless they are a "/path" (not "//", "/\\") or an
     * http(s) URL. */
};

/*
 * What the door knows about the request that every page rendered for it shows: its id, the
 * host, whether the client wants JSON, and the templates. Set once per request; json is set by
 * the door only when a page may follow (authd_wants_json scans the Accept header, which an
 * allowed check never needs).
 */
struct authd_page_ctx {
    char request_id[AUTHD_REQUEST_ID_LEN + 1];
    char host[AUTHD_MAX_HOST + 1];   /* truncated: it is only shown */
    const struct authd_pages *pages; /* borrowed from the config serving the request */
    bool json;
};

/* A new, unique-per-process, URL-safe request id ([0-9a-z] without i, l, o, u). */
void authd_request_id(char out[AUTHD_REQUEST_ID_LEN + 1]);
/* Fills c with a new request id, pages and the host (NULL: none); json false. */
void authd_page_ctx_init(struct authd_page_ctx *c, const struct authd_pages *pages,
                         const char *host);
/* Replaces the host c shows. */
void authd_page_ctx_host(struct authd_page_ctx *c, const char *host);

struct pc_buf;

/*
 * Checks a template: placeholders {{status}}, {{error}}, {{title}}, {{message}}, {{email}},
 * {{host}}, {{request_id}}, {{sign_out_url}}, {{sign_in_url}} (spaces inside the braces
 * allowed), sections {{#name}}..{{/name}} (kept when the value is non-empty) and
 * {{^name}}..{{/name}} (kept when it is empty), nested at most 8 deep. Returns 0, PC_EPARSE
 * (unknown name, "{{{", unterminated tag, unbalanced section, NUL byte) or PC_ETOOBIG (over
 * AUTHD_MAX_TEMPLATE); diag gets line:col and the problem.
 */
int authd_template_check(const char *text, size_t len, struct pc_diag *diag);

/*
 * A set of templates; each kind without one renders the built-in page. Reference-counted and
 * immutable once loaded: configs merged from one head share it. new gives refs 1; put drops
 * one (the last frees; NULL is a no-op); get adds one and returns p (NULL stays NULL).
 */
struct authd_pages *authd_pages_new(void);
struct authd_pages *authd_pages_get(struct authd_pages *p);
void authd_pages_put(struct authd_pages *p);
/* Checks text (authd_template_check) and, when it passes, makes it kind's template (copied). */
int authd_pages_set(struct authd_pages *p, enum authd_page kind, const char *text, size_t len,
                    struct pc_diag *diag);
/* True when p has an operator template for kind. */
bool authd_pages_custom(const struct authd_pages *p, enum authd_page kind);
/*
 * Reads dir/forbidden.html, dir/error.html and dir/signed_out.html through rd; a missing one
 * (-ENOENT) keeps the built-in page, but at least one must exist. Returns 0 with *out new, or
 * an error with diag->file the file's name (static), line:col inside it and the problem:
 * authd_template_check's codes, rd's, PC_ENOTFOUND when none of the files exists.
 */
int authd_pages_load(const char *dir, authd_read_file_fn rd, void *ud, struct authd_pages **out,
                     struct pc_diag *diag);

/*
 * Renders kind for f into out (emptied first): p's template or the built-in one (p may be
 * NULL), every value HTML-escaped; or, when json, the JSON twin
 * {"error","status","message","host","email","request_id"} (null for absent values). Values
 * are cut at AUTHD_MAX_PAGE_VALUE bytes, invalid UTF-8 becomes U+FFFD. An operator page that
 * does not fit out falls back to the built-in one. Returns 0 or PC_ETOOBIG.
 */
int authd_page_render(const struct authd_pages *p, enum authd_page kind,
                      const struct authd_page_fields *f, bool json, struct pc_buf *out);
/* The Content-Type of a rendered page. */
const char *authd_page_type(bool json);
/* A short error code for a status without a more specific one ("bad_request", ...). */
const char *authd_page_error_code(int status);
/* The built-in template of kind (static), for tests and docs. */
const char *authd_page_builtin(enum authd_page kind);
/*
 * Appends s (NULL: nothing) HTML-escaped: & < > " ' ` = as entities, control characters other
 * than tab/CR/LF and invalid UTF-8 as U+FFFD, cut like page values. Returns 0 or PC_ETOOBIG.
 */
int authd_html_escape(struct pc_buf *b, const char *s);

/* ------------------------------------------------------------------------------------------ */
/* origin.c: the app request behind an nginx or direct request, as the proxy asserts it. */

struct authd_http;

struct authd_origin {
    char host[AUTHD_MAX_HOST + 1]; /* as sent, port kept: decides the policy, builds URLs */
    const char *path;              /* original path+query, borrowed from the request; "/" */
    char why[128];                 /* on PC_EINVAL / PC_ETOOBIG: which headers, for the 400 */
};

/*
 * nginx auth_request (GET /oauth2/auth). Host claims: X-Original-URL's authority, X-Forwarded-
 * Host, and Host when it names a protected host (ingress-nginx sends authd's own Service name).
 * Path claims: X-Original-URL's path, X-Original-URI. Every claim present must agree (hosts by
 * authd_host_same, paths byte for byte); the first of X-Original-URL, X-Forwarded-Host, Host
 * gives the value. No host claim: Host as sent (no policy: 403 later). No path claim: "/".
 * Returns 0, PC_EINVAL (claims disagree, X-Original-URL not http(s)://authority[/path]) or
 * PC_ETOOBIG (host over AUTHD_MAX_HOST); the caller answers 400.
 */
int authd_origin_nginx(const struct authd_config *cfg, const struct authd_http *h,
                       struct authd_origin *o);
/* Direct endpoints (/oauth2/start, callback, sign_out, userinfo): the same host rule without
 * X-Original-URL; the path is the request's own. */
int authd_origin_direct(const struct authd_config *cfg, const struct authd_http *h,
                        struct authd_origin *o);

/* ------------------------------------------------------------------------------------------ */
/* server side: sections below are added by the I/O files (main.c, server.c, ...). */

#include <stdatomic.h>

#include "portcullis/buf.h"

struct lws_context;
struct authd_server;

/* ------------------------------------------------------------------------------------------ */
/* work.c: a small worker pool for blocking work (IdP HTTP calls), with a completion queue
 * drained on the lws service thread, and the scheduler that decides which queued job runs. */

/*
 * Limits of the IdP worker pool. One issuer runs at most AUTHD_IDP_RUNNING_PER_ISSUER calls at
 * once and queues at most AUTHD_IDP_QUEUED_PER_ISSUER more; all issuers together queue at most
 * AUTHD_IDP_QUEUED. A call beyond them is refused at once. So an issuer that hangs holds at
 * most its share of the workers, and the jobs of other issuers are taken ahead of its queue.
 */
#define AUTHD_IDP_WORKERS 8
#define AUTHD_IDP_RUNNING_PER_ISSUER 2
#define AUTHD_IDP_QUEUED_PER_ISSUER 16
#define AUTHD_IDP_QUEUED 128

/*
 * A unit of work, embedded in a larger struct (container_of style). run() executes on a worker
 * thread (NULL: the job is posted already complete); done() executes later on the lws thread
 * and owns the job from then on (frees it).
 */
struct authd_job {
    void (*run)(struct authd_job *job);
    void (*done)(struct authd_job *job);
    struct authd_job *next;
    /* Set by the submitter. */
    const char *key;     /* scheduling class (the issuer URL), borrowed from the job; NULL: "" */
    int64_t deadline_us; /* authd_mono_us() after which the job is never started; 0: none */
    /* Set by the pool before done(): 0 it ran; PC_EEXPIRED its deadline passed while it was
     * queued (run skipped); -ECANCELED the pool stopped before it ran (run skipped). */
    int status;
};

/* The limits a scheduler enforces; each must be >= 1. */
struct authd_sched_limits {
    int running_per_key; /* jobs of one key handed out and not finished */
    int queued_per_key;  /* jobs of one key waiting */
    int queued;          /* jobs waiting, all keys together */
};

/*
 * The pool's queue, pure (no threads, no clock: now is a parameter), so it can be tested on its
 * own. Jobs wait in submission order; the next job handed out is the oldest one whose key runs
 * fewer than running_per_key jobs, so a saturated key never holds up the others.
 */
struct authd_sched;

struct authd_sched *authd_sched_new(const struct authd_sched_limits *lim);
/* Frees the scheduler; jobs still queued are not touched (take them with authd_sched_take). */
void authd_sched_free(struct authd_sched *s);
/* Queues job. Returns 0, or -EAGAIN when its key's or the global queue is full (not queued). */
int authd_sched_push(struct authd_sched *s, struct authd_job *job);
/*
 * The next job for a worker: first any queued job whose deadline is <= now_us (status set to
 * PC_EEXPIRED: complete it without running), else the oldest runnable job (status 0, counted as
 * running until authd_sched_finish). NULL when no queued job may start now.
 */
struct authd_job *authd_sched_next(struct authd_sched *s, int64_t now_us);
/* Only the expired part of authd_sched_next. */
struct authd_job *authd_sched_expired(struct authd_sched *s, int64_t now_us);
/* A job handed out with status 0 finished running: its key may run another. */
void authd_sched_finish(struct authd_sched *s, const struct authd_job *job);
/* Removes and returns the oldest queued job whatever its key or deadline; NULL when empty. */
struct authd_job *authd_sched_take(struct authd_sched *s);
/* The earliest deadline among queued jobs, 0 when none has one. */
int64_t authd_sched_wake_at(const struct authd_sched *s);
/* Jobs queued and running now. */
void authd_sched_counts(const struct authd_sched *s, int *queued, int *running);

struct authd_pool;

/*
 * New pool of nthreads workers (plus one thread that completes queued jobs whose deadline
 * passed while every worker was busy); wake is called (from any thread) when completions wait.
 * The scheduling limits are the AUTHD_IDP_* ones, running_per_key at most nthreads / 2 (>= 1).
 */
struct authd_pool *authd_pool_new(int nthreads, void (*wake)(void *ud), void *ud);
/* Stops the workers (queued jobs not started are completed with run skipped) and frees. */
void authd_pool_free(struct authd_pool *p);
/*
 * Queues job for a worker. Any thread. Returns 0, or -EAGAIN when the queue of its key or the
 * whole queue is full: then the job was not queued and the caller still owns it.
 */
int authd_pool_submit(struct authd_pool *p, struct authd_job *job);
/* Posts a finished job to the completion queue. Any thread. */
void authd_pool_complete(struct authd_pool *p, struct authd_job *job);
/* Runs done() of every completed job. lws thread only. Returns how many ran. */
int authd_pool_drain(struct authd_pool *p);
/* Jobs submitted whose done() has not run yet. */
int authd_pool_inflight(struct authd_pool *p);
/* Jobs waiting for a worker and jobs running now. Any thread. */
void authd_pool_counts(struct authd_pool *p, int *queued, int *running);

/* ------------------------------------------------------------------------------------------ */
/* redis.c: the connection to Redis (hiredis' protocol over TCP or TLS): a thread of its own
 * connects; the lws thread then writes the commands and reads the replies on its loop. */

enum authd_redis_type {
    AUTHD_REDIS_NIL,
    AUTHD_REDIS_STRING, /* a bulk string: str/len */
    AUTHD_REDIS_STATUS, /* +OK: str/len */
    AUTHD_REDIS_ERROR,  /* -ERR ...: str/len */
    AUTHD_REDIS_INTEGER,
    AUTHD_REDIS_ARRAY, /* elem/nelem, at most 8 */
};
struct authd_redis_reply {
    enum authd_redis_type type;
    long long integer;
    char *str; /* NUL-terminated; len bytes before the NUL (may hold NULs) */
    size_t len;
    struct authd_redis_reply **elem;
    size_t nelem;
};
void authd_redis_reply_free(struct authd_redis_reply *rep);

/*
 * A command's end, on the lws thread, exactly once: rc 0 with the reply (borrowed for the
 * call; an error reply is rc 0 with type AUTHD_REDIS_ERROR), PC_EEXPIRED (no reply within
 * commandTimeout) or PC_EIO (the connection went down first).
 */
typedef void (*authd_redis_done_fn)(void *ud, int rc, const struct authd_redis_reply *reply);

struct authd_redis;
struct lws_vhost; /* its protocols list AUTHD_REDIS_PROTOCOL (redis_lws.h) */
/*
 * Starts the thread that connects (and reconnects) to cfg's Redis (copied); each connection is
 * then served on vh's loop. Completions of commands no reply ended, and the thread's messages
 * to the lws thread, go to pool. Returns 0 with *out new, PC_EINVAL (TLS CA unusable, logged)
 * or -errno. This and everything below but authd_redis_up: the lws thread only, and never
 * from a command's done.
 */
int authd_redis_new(const struct authd_redis_config *cfg, struct authd_pool *pool,
                    struct lws_vhost *vh, struct authd_redis **out);
/* Closes the connection and stops the thread; commands not answered complete with PC_EIO
 * (drain the pool after). */
void authd_redis_stop(struct authd_redis *r);
void authd_redis_free(struct authd_redis *r);
/*
 * Stops r without waiting for its thread (which may be in a getaddrinfo): its commands not
 * answered complete with PC_EIO, then released(ud) runs on the lws thread, through the pool,
 * as the thread's last completion; free r there (authd_redis_free then waits for nothing).
 * Until then authd_redis_stop may still be called: it waits (at shutdown, before the pool is
 * drained, so that the release is not lost).
 */
void authd_redis_retire(struct authd_redis *r, void (*released)(void *ud), void *ud);
/*
 * rep is an error reply saying the server cannot answer now rather than refusing the command:
 * LOADING, BUSY, TRYAGAIN, CLUSTERDOWN, READONLY, MASTERDOWN, NOAUTH. The last three also drop
 * the connection (a replica, or authentication lost): the next one resolves the address and
 * authenticates again.
 */
bool authd_redis_unavailable(const struct authd_redis_reply *rep);
/* Connected and authenticated. Any thread. */
bool authd_redis_up(const struct authd_redis *r);
/*
 * Submits a command (argv[i] of lens[i] bytes; lens NULL: C strings): written at the loop's
 * next pass with the others submitted meanwhile. Returns 0 (done runs later: from the read of
 * its reply, or through the pool when none came), or at once, with done never called: PC_EIO
 * (not connected), PC_ETOOBIG (4096 commands pending), PC_EINVAL.
 */
int authd_redis_command(struct authd_redis *r, int argc, const char *const *argv,
                        const size_t *lens, authd_redis_done_fn done, void *ud);
/*
 * Parses RESP bytes as a connection's reader does (the same reply objects and bounds), fed
 * in two parts (the first split bytes, then the rest; 0: at once): each whole reply goes to
 * each(ud, rep), borrowed. 0, or -1 when the bytes break the protocol or a bound. For the
 * fuzzer and tests.
 */
int authd_redis_parse(const char *buf, size_t len, size_t split,
                      void (*each)(void *ud, const struct authd_redis_reply *rep), void *ud);
/* A done for a command whose reply does not matter (a lock let go). */
void authd_redis_ignore(void *ud, int rc, const struct authd_redis_reply *rep);
struct authd_redis_stats {
    bool up;
    unsigned long long connects, disconnects, ok, errors, timeouts, refused;
};
void authd_redis_stats(const struct authd_redis *r, struct authd_redis_stats *st);

/* ------------------------------------------------------------------------------------------ */
/* store.c: the sessions of session.store: redis hosts on the I/O side: held sessions, reads,
 * the write at login, the delete at sign-out, refresh across replicas. lws thread only. */

struct authd_store;
struct authd_store *authd_store_new(struct authd_server *srv);
/* Makes the Redis connection match cfg->redis: started, restarted with new settings, stopped. */
void authd_store_sync(struct authd_store *st, const struct authd_config *cfg);
/*
 * Stops the connection's thread and waits for those of connections a reload let go (their
 * commands and releases complete through the pool: drain it after).
 */
void authd_store_stop(struct authd_store *st);
/* After the pool is freed (its last drain releases the connections a reload let go). */
void authd_store_free(struct authd_store *st);
/* Redis is configured and connected. */
bool authd_store_up(const struct authd_store *st);

/*
 * The session of a check at a redis-store host, without waiting: 0 with *s borrowed (until
 * control returns to the loop) when held and fresh, or held within grace while Redis is down;
 * PC_EMORE when Redis must be asked (authd_store_fetch); PC_ENOTFOUND (no ticket cookie);
 * PC_EIO (Redis down, nothing held within grace). Never touches the network.
 */
int authd_store_lookup(struct authd_store *st, const struct authd_host *host,
                       const char *cookie_header, int64_t now, const struct authd_session **s);
/* How a Redis read ends, on the lws thread: rc 0 with s borrowed for the call, or why not. */
typedef void (*authd_store_cont_fn)(void *ud, int rc, const struct authd_session *s);
/*
 * Reads the request's tickets (at most 4, in the Cookie header's order) from Redis, one GET
 * at a time: the first that opens for host is the session, one Redis does not know ends the
 * read, one that does not open for host is skipped; the checks asking for the same tickets at
 * once share the reads. cont gets 0 and the session; PC_EIO when Redis did not answer (nothing held
 * within grace) or refused a read with an error reply; else why the last ticket did not open
 * (PC_ENOTFOUND: none is in Redis). Returns 0 (cont runs later, exactly once), or at once,
 * cont never called: PC_ENOTFOUND, PC_EIO, PC_ETOOBIG (too many reads in flight).
 */
int authd_store_fetch(struct authd_store *st, const struct authd_host *host,
                      const char *cookie_header, authd_store_cont_fn cont, void *ud);

/* How a login's write ends: rc 0 with the held session and the ticket's Set-Cookie values. */
typedef void (*authd_store_saved_fn)(void *ud, int rc, const struct authd_session *s,
                                     const struct authd_strlist *set_cookie);
/*
 * Writes the new session s (taken) to Redis under a new ticket for the rest of its life.
 * Returns 0 (done runs later, exactly once) or an error at once (done never called).
 */
int authd_store_save(struct authd_store *st, const struct authd_host *host, struct authd_session *s,
                     const char *cookie_header, authd_store_saved_fn done, void *ud);

typedef void (*authd_store_dropped_fn)(void *ud, int rc);
/*
 * Deletes the sessions of the request's tickets from Redis: every ticket cookie of the host's
 * name in the header, wherever it sits and however many other cookies there are (at most 32:
 * more are PC_ETOOBIG, nothing deleted). *held gets the session held for one of them
 * (borrowed until done runs), NULL when none. Returns 0 (done runs later: rc 0 only for DEL's
 * integer reply, PC_EIO for no answer or an error reply), or PC_ENOTFOUND (no ticket) /
 * PC_EIO (Redis down) / PC_ETOOBIG (too many tickets, or the queue full) at once. Call
 * authd_store_forget after.
 */
int authd_store_sign_out(struct authd_store *st, const struct authd_host *host,
                         const char *cookie_header, const struct authd_session **held,
                         authd_store_dropped_fn done, void *ud);
/* Drops what this replica holds for the request's tickets. */
void authd_store_forget(struct authd_store *st, const struct authd_host *host,
                        const char *cookie_header);
/*
 * Called on the check path when the held session of the request is due for refresh. Never
 * waits: takes the refresh lock in Redis and, when this replica got it, refreshes at the IdP
 * and writes the session back; the ticket (the cookie) stays as it is.
 */
void authd_store_refresh(struct authd_store *st, const struct authd_host *host,
                         const char *cookie_header);
/* Appends the portcullis_authd_redis_* series (nothing when Redis is not configured). */
void authd_store_metrics(const struct authd_store *st, struct pc_buf *out);

/* ------------------------------------------------------------------------------------------ */
/* reload.c: reference-counted configs and the config file watcher. */

/* A loaded config shared by the lws thread and work in flight; freed with its last ref. */
struct authd_cfgref {
    struct authd_config *cfg;
    atomic_int refs;
    uint64_t generation;
};

/* New reference (refs = 1) owning cfg. */
struct authd_cfgref *authd_cfgref_new(struct authd_config *cfg);
struct authd_cfgref *authd_cfgref_get(struct authd_cfgref *r);
/* Drops one reference; the last frees the config. NULL is a no-op. */
void authd_cfgref_put(struct authd_cfgref *r);

struct authd_watch;

/*
 * Watches the config file (inotify on its directory, which covers Kubernetes ConfigMap/Secret
 * "..data" symlink swaps, plus a stat/content check every interval_ms) and the cookie secret
 * files. Parsing happens on the watcher thread; each changed file yields one completion posted
 * to pool whose done() calls authd_server_config_loaded (lws thread).
 * initial_digest: SHA-256 of what the running config was loaded from (see authd_config_digest).
 */
int authd_watch_start(struct authd_server *srv, const char *path, int interval_ms,
                      struct authd_watch **out);
void authd_watch_stop(struct authd_watch *w);
/*
 * SHA-256 over the config file's bytes (none when path is NULL) and the stat identity (inode,
 * size, mtime) of every secret file the config names. Returns 0 or -errno (file unreadable).
 */
int authd_config_digest(const char *path, const struct authd_config *cfg, uint8_t out[32]);

/* ------------------------------------------------------------------------------------------ */
/* kube.c: --watch-config, the hosts from the config Secret shards through the Kubernetes API. */

struct authd_kube_opts {
    const char *kubeconfig; /* NULL: $KUBECONFIG, in-cluster, ~/.kube/config */
    const char *namespace;  /* NULL: the service account's in a pod, else portcullis-system */
    const char *head_path;  /* --config FILE (its hosts empty), NULL: the flags alone */
    const char *identity;   /* NULL: $POD_NAME, else the host name */
    /* --config-secret: only this shard (sidecar mode), watched with a field selector on its
     * name, so a Role can grant it by resourceNames; NULL: every shard by label. */
    const char *config_secret;
};
struct authd_kube;
/*
 * Starts watching (its own threads; see kube.c) and keeping the replica's Lease. Each merged
 * config reaches the lws thread as a completion of srv->pool calling
 * authd_server_config_loaded. Returns 0, or a negative code (logged): no API server config,
 * a bad head.
 */
int authd_kube_start(struct authd_server *srv, const struct authd_kube_opts *o,
                     struct authd_kube **out);
/* Stops the threads and deletes the Lease; completions still queued touch it no more. */
void authd_kube_stop(struct authd_kube *k);
/* The revocation list is in force (lws thread): the Lease may report the config loaded. */
void authd_kube_revocations_ready(struct authd_kube *k);
/* Frees (after the pool that may hold its completions). Stops first when needed. NULL: no-op. */
void authd_kube_free(struct authd_kube *k);

/* ------------------------------------------------------------------------------------------ */
/* revwatch.c: the revocation list's source (the Secret portcullis-revocations, or
 * --revocations FILE) and the audit line of a refused session. */

struct authd_revoke;
struct k8s_client;
struct k8s_watch;
/*
 * New source: file (--revocations, read once now and then every second when it changed), or
 * with watched the Secret (authd_revoke_watch), or neither (nothing is ever revoked). Never
 * NULL. Call before the server serves.
 */
struct authd_revoke *authd_revoke_new(struct authd_server *srv, const char *file, bool watched);
/* Starts the Secret's list+watch in ns on kc (kube.c's client); NULL when rv reads a file. */
struct k8s_watch *authd_revoke_watch(struct authd_revoke *rv, struct k8s_client *kc,
                                     const char *ns);
/* Stops the file poller (the watch is kube.c's to stop). */
void authd_revoke_stop(struct authd_revoke *rv);
/* Frees, after the pool whose completions may name it. NULL is a no-op. */
void authd_revoke_free(struct authd_revoke *rv);
/* False until a first list is in force (then checks are 503, /readyz says why). */
bool authd_revoke_ready(const struct authd_revoke *rv);
/*
 * authd_session_check against the list in force, for the session s opened for host at
 * host_name; a revoked one is logged (the audit line: user, sub, host, policy, replica,
 * request id, times; never the cookie) and counted. Returns what authd_session_check does.
 * lws thread.
 */
int authd_revoke_session(struct authd_server *srv, const struct authd_host *host,
                         const char *host_name, const struct authd_session *s, int64_t now,
                         const char *request_id);
/* authd_revocations_mint with the list in force, for a session minted at login. lws thread. */
void authd_revoke_login(struct authd_server *srv, struct authd_session *s);
/* The replica's name: given, else $POD_NAME, else the host name. New. (kube.c) */
char *authd_replica_name(const char *given);

/* ------------------------------------------------------------------------------------------ */
/* sesscache.c: opened sessions of the check path, keyed by the exact Cookie header, the host
 * policy and the config generation; expiry checked on every hit. lws thread only. */

/* A fast non-cryptographic hash of n bytes, to pick a slot (entries are compared in full). */
uint64_t authd_hash_bytes(const char *p, size_t n);
struct authd_sesscache;
struct authd_sesscache *authd_sesscache_new(size_t n);
void authd_sesscache_free(struct authd_sesscache *c);
/* The cached session (borrowed until the next put) or NULL. Expired entries are dropped. */
const struct authd_session *authd_sesscache_get(struct authd_sesscache *c, uint64_t generation,
                                                const struct authd_host *host, const char *cookie,
                                                int64_t now);
/*
 * Caches s under the key. Returns s (now owned by the cache, borrowed by the caller) or NULL
 * when not cacheable (refresh-enabled host, no/oversized cookie): the caller keeps s.
 */
const struct authd_session *authd_sesscache_put(struct authd_sesscache *c, uint64_t generation,
                                                const struct authd_host *host, const char *cookie,
                                                struct authd_session *s);

/* ------------------------------------------------------------------------------------------ */
/* replay.c: login states already exchanged at the callback, refused when replayed. Bounded;
 * no clock (now is a parameter); lws thread only. */

/* The capacity of the server's set: about 13 logins a second for AUTHD_STATE_LIFETIME. */
#define AUTHD_REPLAY_STATES 8192

struct authd_replay;
/* New set remembering up to cap states. */
struct authd_replay *authd_replay_new(size_t cap);
void authd_replay_free(struct authd_replay *r);
/*
 * Records state as exchanged until expires_at (the state's own expiry). Returns 0, or
 * -EALREADY when it was recorded before and has not expired: a replay, to refuse. A full set
 * drops its oldest entry first (counted by authd_replay_evicted).
 */
int authd_replay_claim(struct authd_replay *r, const char *state, int64_t expires_at, int64_t now);
/* Forgets a claimed state whose code exchange never started (so the callback may be retried). */
void authd_replay_release(struct authd_replay *r, const char *state, int64_t now);
/* Entries dropped because the set was full. */
uint64_t authd_replay_evicted(const struct authd_replay *r);

/* ------------------------------------------------------------------------------------------ */
/* metrics.c: Prometheus counters. Updated on the lws thread only. */

struct authd_metrics;

struct authd_metrics *authd_metrics_new(void);
void authd_metrics_free(struct authd_metrics *m);
/* decisions_total{host,door,outcome} += 1 and the check duration histogram. Labels copied. */
void authd_metrics_decision(struct authd_metrics *m, const char *host, const char *door,
                            const char *outcome, int64_t duration_us);
/*
 * idp_requests_total{issuer,kind,result} += 1. kind: discovery|jwks|token|refresh; result:
 * ok|http_error|error|timeout, rejected (the issuer's queue was full: never sent), expired
 * (its deadline passed while it waited for a worker: never sent).
 */
void authd_metrics_idp(struct authd_metrics *m, const char *issuer, const char *kind,
                       const char *result);
/* config_reloads_total{result="success"|"failure"} += 1; a success is a load (below). */
void authd_metrics_reload(struct authd_metrics *m, bool ok);
/* login_state_replays_total += 1: a callback whose state was already exchanged. */
void authd_metrics_state_replay(struct authd_metrics *m);
/* Values read from the worker pool and the replay set just before /metrics is rendered. */
struct authd_metrics_gauges {
    int idp_queued;          /* IdP calls waiting for a worker */
    int idp_running;         /* IdP calls running */
    uint64_t states_evicted; /* authd_replay_evicted */
};
void authd_metrics_set_gauges(struct authd_metrics *m, const struct authd_metrics_gauges *g);
/* config_last_load_timestamp_seconds = now: the config being served was loaded. */
void authd_metrics_loaded(struct authd_metrics *m);
/* --watch-config: config_shards{state="loaded"|"rejected"} = loaded, rejected. */
void authd_metrics_shards(struct authd_metrics *m, size_t loaded, size_t rejected);
/* config_shard_rejections_total{shard="0a"} += 1 (shard 0..255; anything else is "other"). */
void authd_metrics_shard_rejected(struct authd_metrics *m, int shard);
/* Appends the Prometheus text exposition (format 0.0.4). Returns 0 or PC_ETOOBIG. */
/* A revocation list version loaded (entries in force) or refused (loaded false). */
void authd_metrics_revocations(struct authd_metrics *m, bool loaded, size_t entries);
/* A check refused because its session was revoked. */
void authd_metrics_revoked(struct authd_metrics *m);
int authd_metrics_render(const struct authd_metrics *m, struct pc_buf *out);

/* ------------------------------------------------------------------------------------------ */
/* server.c: the lws context, both listeners, request reading, replies, deferred replies. */

/* One request as read off the wire; all borrowed until the handler returns. */
struct authd_http {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* decoded, normalised path (lws) */
    const char *query;  /* re-encoded query without "?", "" when none */
    const char *uri;    /* path + "?" + query */
    const char *host;
    const char *cookie;
    const char *authorization;
    const char *accept;
    const char *x_requested_with;
    const char *sec_fetch_mode;
    const char *x_forwarded_proto;
    const char *x_forwarded_host;
    const char *x_original_uri;
    const char *x_original_url; /* ingress-nginx: scheme://host/path?query */
    bool head;
};

/* A response under construction. Header lines and body are bounded buffers. */
struct authd_reply {
    int status;
    struct pc_buf headers; /* "name: value\r\n" lines */
    struct pc_buf body;
    char content_type[96]; /* "" : none */
    bool close;            /* Connection: close after this reply */
    /*
     * The browser's request was plain http (X-Forwarded-Proto: http): Set-Cookie headers drop
     * their Secure attribute, which browsers would otherwise refuse outside localhost. Without
     * the header, or with https, cookies stay Secure.
     */
    bool plain_http;
    struct authd_page_ctx page; /* what pages rendered into it show; cleared by reset */
};

void authd_reply_init(struct authd_reply *r);
void authd_reply_reset(struct authd_reply *r);
void authd_reply_release(struct authd_reply *r);
/* Adds one header line; values with CR/LF are refused (PC_EINVAL). Set-Cookie values lose
 * "; Secure" when r->plain_http. */
int authd_reply_header(struct authd_reply *r, const char *name, const char *value);
/* Sets the Content-Type (copied; truncated to fit). */
void authd_reply_type(struct authd_reply *r, const char *type);
/* The error page (or its JSON twin, per r->page) with status, title and message. */
void authd_reply_page(struct authd_reply *r, int status, const char *title, const char *msg);
/*
 * Page kind for f, from r->page's templates, as HTML or JSON per r->page.json; f's request id
 * and host default to r->page's. Sets status and Content-Type, adds Cache-Control: no-store.
 */
void authd_reply_render(struct authd_reply *r, enum authd_page kind,
                        const struct authd_page_fields *f);
/* A JSON body. */
void authd_reply_json(struct authd_reply *r, int status, const char *json);

/* A reply that will be completed later (after IdP work); the connection waits. */
struct authd_pending;
/* Creates the pending handle for the current request (one per request). */
struct authd_pending *authd_pending_new(void *conn);
/* Completes the pending request with r (copied) and drops the caller's handle. lws thread. */
void authd_pending_finish(struct authd_pending *p, const struct authd_reply *r);

/* The daemon: everything the lws thread owns. */
struct authd_server {
    struct lws_context *lws;
    struct lws_vhost *loop_vh; /* authd's own connections (Redis) are watched here */
    const struct authd_overrides *overrides; /* applied to every reload */
    struct authd_cfgref *cfg;                /* current config, swapped on reload */
    struct authd_metrics *metrics;
    struct authd_pool *pool;
    struct authd_oidc *oidc;
    struct authd_refresh *refresh;
    struct authd_sesscache *sessions;
    struct authd_store *store;   /* sessions of redis-store hosts */
    struct authd_replay *replay; /* login states already exchanged */
    struct authd_watch *watch;
    struct authd_kube *kube;     /* --watch-config, else NULL */
    struct authd_revoke *revoke; /* the revocation list in force and its source */
    const char *config_path;
    const char *event_loop; /* "epoll" or "poll" */
    atomic_int stopping; /* set by the signal handler */
    bool draining;
    bool debug_logs; /* allowed checks are logged (at debug level) */
    bool no_config;  /* serving authd_config_placeholder: checks get 503 */
    int64_t started_at;
    struct authd_reply scratch; /* reused for every synchronous reply */
};

struct authd_server_opts {
    const char *config_path;
    const struct authd_overrides *overrides; /* borrowed for the server's life; may be NULL */
    struct authd_config *cfg;                /* taken over */
    int workers;                             /* default AUTHD_IDP_WORKERS */
    int reload_interval_ms;                  /* stat fallback, default 2000 */
    bool debug_logs;                         /* --log-level debug */
    bool no_config;                     /* cfg is authd_config_placeholder (the file is missing) */
    const struct authd_kube_opts *kube; /* --watch-config (then config_path is NULL), or NULL */
    const char *revocations_file;       /* --revocations FILE, or NULL */
};

/* Creates the context and both listeners. Returns 0 or a negative code (logged). */
int authd_server_new(const struct authd_server_opts *opts, struct authd_server **out);
/* Serves until authd_server_stop; then drains (stop accepting, finish deferred replies). */
int authd_server_run(struct authd_server *srv);
/* Async-signal-safe: asks run() to return. */
void authd_server_stop(struct authd_server *srv);
void authd_server_free(struct authd_server *srv);
/* Swaps in a new config (takes the reference) or counts a failed reload. lws thread. */
void authd_server_config_loaded(struct authd_server *srv, struct authd_cfgref *ref,
                                const struct pc_diag *diag, int rc);
/* The current time in Unix seconds and monotonic microseconds. */
int64_t authd_now(void);
int64_t authd_mono_us(void);

/* ------------------------------------------------------------------------------------------ */
/* admin.c: the admin port (/healthz, /readyz, /metrics). */

/* Fills r for one admin request. Returns 0. */
int authd_admin_handle(struct authd_server *srv, const struct authd_http *h, struct authd_reply *r);

/* ------------------------------------------------------------------------------------------ */
/* door.c: the front doors on the auth port (Envoy ext_authz, nginx auth_request, direct). */

/*
 * Handles one request of the auth port. Returns 0 when r holds the reply, 1 when the reply was
 * deferred (conn given to authd_pending_new).
 */
int authd_door_handle(struct authd_server *srv, const struct authd_http *h, void *conn,
                      struct authd_reply *r);
/*
 * Envoy treats any 5xx from the authorizer as an error and answers statusOnError with an
 * empty body, so the user would never see authd's page. Replies through the Envoy door that
 * would be 5xx become 401 (still not logged in) with Retry-After; the page stays.
 */
void authd_envoy_safe_reply(struct authd_reply *r);
/* A token exchange answering through Envoy must finish within the mesh provider's 2 s. */
#define AUTHD_ENVOY_IDP_TIMEOUT_MS 1500
/* "https" or the X-Forwarded-Proto value ("http"/"https" only). */
const char *authd_door_scheme(const struct authd_http *h);

/* ------------------------------------------------------------------------------------------ */
/* login.c: /oauth2/start, the callback, sign-out, userinfo, and background session refresh. */

/*
 * 302 to the IdP's authorization endpoint with a new state cookie; target is the validated
 * return URL. 503 page when the issuer's discovery is not loaded yet.
 */
void authd_login_start(struct authd_server *srv, const struct authd_host *host,
                       const struct authd_http *h, const char *host_name, const char *target,
                       struct authd_reply *r);
/* The callback (query holds code/state or error). Returns like authd_door_handle. */
int authd_login_callback(struct authd_server *srv, const struct authd_host *host,
                         const struct authd_http *h, const char *host_name, const char *query,
                         void *conn, struct authd_reply *r);
/*
 * Clears every authd cookie and redirects (IdP end_session_endpoint when known). For a
 * redis-store host the session is deleted in Redis first. Returns like authd_door_handle.
 */
int authd_login_sign_out(struct authd_server *srv, const struct authd_host *host,
                         const struct authd_http *h, const char *host_name, const char *query,
                         void *conn, struct authd_reply *r);

struct authd_refresh;
struct authd_refresh *authd_refresh_new(void);
void authd_refresh_free(struct authd_refresh *t);
/*
 * Called on the check path for a session due for refresh. Never waits: starts one background
 * refresh per session (single-flight, keyed by a hash of the refresh token) and returns:
 *   0              keep using the session; *set_cookie gets the refreshed cookies once ready
 *   PC_EEXPIRED    the IdP revoked the session (invalid_grant): treat as logged out
 * Takes *s when it starts a refresh (then *s is NULL).
 */
int authd_refresh_check(struct authd_server *srv, const struct authd_host *host,
                        struct authd_session **s, const char *cookie_header,
                        struct authd_strlist *set_cookie);
/* Drops finished entries older than their retention. */
void authd_refresh_expire(struct authd_refresh *t, int64_t now);
/*
 * The session a refresh grant yields (new; both stores): from the verified claims of the new
 * ID token (idt, NULL: the old one is kept) with the old login time and expiry, refused
 * (PC_EAUTH) when its sub differs; or, with claims NULL, the old session with refresh token rt
 * (NULL: the old one). refreshed_at = now. Returns 0 or the error.
 */
int authd_session_refreshed(const struct authd_host *host, const struct authd_session *old,
                            const json_t *claims, const char *idt, const char *rt, int64_t now,
                            struct authd_session **out);

/* ------------------------------------------------------------------------------------------ */
/* oidc.c: discovery, JWKS cache and token endpoint calls, all on the worker pool. */

/* What discovery told us about an issuer; NULL strings when absent. */
struct authd_issuer {
    char *url;
    char *authorization_endpoint;
    char *token_endpoint;
    char *end_session_endpoint;
    char *jwks_uri;
    bool token_auth_basic; /* client_secret_basic supported (default when list absent) */
    bool discovered;
    struct authd_jwks *jwks; /* NULL until fetched */
    int64_t jwks_fetched_at;
    int64_t jwks_refetch_at; /* last unknown-kid refetch (rate limit) */
    int64_t retry_at;        /* next discovery/JWKS retry */
    int failures;
    bool busy; /* a discovery or JWKS fetch is in flight */
    bool used; /* referenced by the current config */
};

struct authd_oidc;

struct authd_oidc *authd_oidc_new(struct authd_server *srv);
void authd_oidc_free(struct authd_oidc *o);
/* Makes the registry match cfg's issuers and starts missing fetches. lws thread. */
void authd_oidc_sync(struct authd_oidc *o, const struct authd_config *cfg);
/* Retries failed fetches whose backoff elapsed; periodic JWKS refresh. lws thread. */
void authd_oidc_tick(struct authd_oidc *o, int64_t now);
/* Borrowed issuer state, NULL when url is not registered. */
struct authd_issuer *authd_oidc_issuer(struct authd_oidc *o, const char *url);
/* True when every issuer of cfg has discovery and JWKS. */
bool authd_oidc_ready(struct authd_oidc *o, const struct authd_config *cfg);

/* Completion of a token endpoint call (lws thread); resp is the HTTP result. */
struct authd_token_call;
typedef void (*authd_token_done_fn)(void *ud, int rc, long status, json_t *body, const char *error);
struct authd_token_opts {
    const struct authd_host *host; /* client id/secret; borrowed during the call setup */
    const struct authd_issuer *issuer;
    const char *grant_type; /* authorization_code | refresh_token */
    const char *code;
    const char *redirect_uri;
    const char *code_verifier;
    const char *refresh_token;
    const char *kind; /* metric label: token | refresh */
    long timeout_ms;  /* whole call; 0: the default (5 s) */
    authd_token_done_fn done;
    void *ud;
};
/* Starts a token endpoint call. done runs later on the lws thread (rc 0 + body JSON or error). */
int authd_oidc_token(struct authd_oidc *o, const struct authd_token_opts *opts);
/*
 * Verifies an ID token against the issuer's JWKS. On an unknown kid, refetches the JWKS once
 * (at most one refetch per issuer per 30 s) and verifies again; done then runs later. Returns
 * 1 when deferred; otherwise 0/negative with *claims set like authd_jwt_verify.
 */
typedef void (*authd_verify_done_fn)(void *ud, int rc, json_t *claims, const char *why);
int authd_oidc_verify(struct authd_oidc *o, const char *issuer_url, const char *token,
                      const struct authd_jwt_expect *expect, authd_verify_done_fn done, void *ud);
/*
 * Starts a background JWKS refetch for an unknown kid (at most once per issuer per 30 s) and
 * returns at once: the check path never waits for it.
 */
void authd_oidc_jwks_refetch(struct authd_oidc *o, const char *issuer_url);

/* ------------------------------------------------------------------------------------------ */
/* http1.c: request heads of the auth port, parsed raw (no I/O; fuzzed). */

#define AUTHD_MAX_HEAD (64 * 1024)  /* bytes of a request line plus header fields */
#define AUTHD_MAX_TARGET (8 * 1024) /* bytes of the request target (path + query) */
#define AUTHD_MAX_FIELDS 128        /* header fields of one request */

/*
 * One parsed request head. h's strings point into the parsed buffer (or into cookies, when
 * several Cookie fields were joined) and live as long as both; h->path is the target up to
 * "?", h->query what follows it ("" when none), h->uri the whole target: all exactly as
 * received, never decoded or normalised.
 */
struct authd_http1_req {
    struct authd_http h;
    char path[AUTHD_MAX_TARGET + 1];
    struct pc_buf cookies;        /* joined Cookie fields when there were several */
    size_t head_len;              /* bytes of the head, final CRLF CRLF included */
    int64_t content_length;       /* -1 when absent */
    bool chunked;                 /* Transfer-Encoding: chunked: the body cannot be skipped */
    bool keep_alive;              /* the connection may carry another request */
    bool close, keep_alive_asked; /* Connection: close / keep-alive seen */
    bool http11;                  /* HTTP/1.1 (else 1.0) */
};

/*
 * How far one request head has been searched, kept by the caller between reads so a head that
 * arrives in many pieces is searched once: every byte is looked at a bounded number of times,
 * whatever the segmentation. Zero it for each new head (after the previous one was consumed).
 */
struct authd_http1_scan {
    size_t scanned;  /* bytes from the start of the head already searched for its end */
    size_t examined; /* bytes looked at by all calls for this head (what the tests bound) */
};

/*
 * Parses the request head at the start of buf (len bytes), writing NULs into buf. Returns 0
 * with *req filled (release it), PC_EMORE while the head is incomplete, PC_EPARSE for a head
 * to answer with 400 (malformed, ambiguous, duplicate single-valued field, HTTP/1.1 without
 * Host, Transfer-Encoding other than a lone chunked), PC_EINVAL for a Transfer-Encoding that
 * lists codings before chunked (501), PC_ETOOBIG for one over AUTHD_MAX_HEAD /
 * AUTHD_MAX_TARGET / AUTHD_MAX_FIELDS (431). *req must be released whatever the result.
 */
int authd_http1_parse(char *buf, size_t len, struct authd_http1_req *req);
/*
 * The same for a head read in pieces: buf holds every byte received so far for this head (the
 * bytes of earlier calls unchanged, new ones appended) and scan what the earlier calls found.
 * After any result but PC_EMORE the head is done: zero scan before the next head.
 */
int authd_http1_parse_resume(struct authd_http1_scan *scan, char *buf, size_t len,
                             struct authd_http1_req *req);
void authd_http1_req_release(struct authd_http1_req *req);
/* The value of query parameter name (decoded, "+" as space, new) or NULL. */
char *authd_query_param(const char *query, const char *name);

#endif
