/*
 * main.c - portcullis-authd: options, config, logging, the server loop, shutdown.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/http.h"
#include "portcullis/log.h"

static struct authd_server *running;

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: portcullis-authd --config FILE [--check-config] [--log-level LEVEL]\n"
            "       portcullis-authd --watch-config [--config-namespace NS] [--config FILE]\n"
            "\n"
            "  -c, --config FILE      the authd config (YAML), reloaded when it changes\n"
            "      --watch-config     take the hosts from the config Secrets\n"
            "                         portcullis-authd-config-<xx> through the Kubernetes API;\n"
            "                         --config then holds the rest only (its hosts empty)\n"
            "      --config-namespace NS  where those Secrets are (default: the pod's\n"
            "                         namespace, else portcullis-system)\n"
            "      --config-secret NAME  only that one of them (sidecar mode: a Role can\n"
            "                         grant it by name)\n"
            "      --kubeconfig FILE  outside a pod: the API server and credentials\n"
            "                         (default $KUBECONFIG, ~/.kube/config)\n"
            "      --allow-insecure-issuers  accept http:// issuers (tests only)\n"
            "      --revocations FILE  the revocation list (YAML), re-read when it changes;\n"
            "                         with --watch-config instead of the Secret\n"
            "                         portcullis-revocations\n"
            "      --check-config     validate the config, print problems, exit 1 or 0\n"
            "  -l, --log-level LEVEL  debug, info (default), warn, error\n"
            "      --listen ADDR      host:port of the auth port (overrides the file's listen)\n"
            "      --admin-listen ADDR  host:port of the admin port (overrides adminListen)\n"
            "      --cookie-secret-file FILE  repeatable; replaces cookieSecretFiles\n"
            "      --templates-dir DIR  forbidden.html, error.html, signed_out.html (overrides\n"
            "                         templatesDir)\n"
            "      --redis-url URL    redis://host[:port][/db] or rediss://: the session store of\n"
            "                         session.store: redis hosts (replaces the file's redis)\n"
            "      --redis-username USER  --redis-password-file FILE  --redis-ca-file FILE\n"
            "                         its ACL user, password and (rediss://) CA bundle\n"
            "  -V, --version          print the version\n"
            "  -h, --help             this help\n");
}

static void
on_signal(int sig)
{
    (void)sig;
    if (running)
        authd_server_stop(running);
}

static struct authd_overrides overrides;

/* Loads the config. Returns 0, or the load error (printed as file:line:col: message). */
static int
load(const char *path, struct authd_config **cfg, bool quiet_ok)
{
    struct pc_diag diag = {0};
    char msg[700];
    int rc = authd_config_load_with(path, &overrides, cfg, &diag);

    if (rc) {
        if (!diag.file)
            diag.file = path;
        pc_diag_format(&diag, msg, sizeof(msg));
        fprintf(stderr, "%s\n", msg);
        return rc;
    }
    if (!quiet_ok)
        printf("config ok\n");
    return 0;
}

static struct authd_kube_opts kube;
static const char *revocations; /* --revocations FILE */

static int
serve(const char *path, struct authd_config *cfg, bool no_config, bool watch, bool debug)
{
    struct authd_server *srv = NULL;
    struct authd_server_opts opts = {.config_path = watch ? NULL : path,
                                     .overrides = &overrides,
                                     .cfg = cfg,
                                     .debug_logs = debug,
                                     .no_config = no_config,
                                     .kube = watch ? &kube : NULL,
                                     .revocations_file = revocations};
    struct sigaction sa = {.sa_handler = on_signal};
    char n[24];
    int rc;

    if (pc_http_global_init()) {
        authd_config_free(cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (authd_server_new(&opts, &srv))
        return 1;
    running = srv;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    snprintf(n, sizeof(n), "%zu", cfg->nhosts);
    pc_log(PC_LOG_INFO, "start", "version", PORTCULLIS_VERSION, "listen", cfg->listen, "admin",
           cfg->admin_listen, "hosts", n, "event_loop", srv->event_loop, NULL);
    if (no_config && !watch)
        pc_log(PC_LOG_WARN, "start", "error",
               "config file does not exist; not ready until it "
               "appears",
               "config", path, NULL);
    rc = authd_server_run(srv);
    running = NULL;
    authd_server_free(srv);
    pc_log(PC_LOG_INFO, "shutdown", "phase", "done", NULL);
    return rc ? 1 : 0;
}

/*
 * --watch-config: the head (listen addresses, cookie secrets) from --config or the flags; the
 * hosts follow once the config Secrets are listed (not ready until then).
 */
static int
watch_config(const char *path, bool check_only, bool debug)
{
    struct pc_diag diag = {0};
    struct authd_config *head = NULL;
    char msg[700];

    kube.head_path = path;
    if (authd_config_load_head(path, &overrides, &head, &diag) != 0) {
        pc_diag_format(&diag, msg, sizeof(msg));
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    if (check_only) {
        printf("config ok\n");
        authd_config_free(head);
        return 0;
    }
    return serve(path, head, true, true, debug);
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"log-level", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"listen", required_argument, NULL, 'L'},
        {"admin-listen", required_argument, NULL, 'A'},
        {"cookie-secret-file", required_argument, NULL, 'S'},
        {"watch-config", no_argument, NULL, 'W'},
        {"config-namespace", required_argument, NULL, 'N'},
        {"config-secret", required_argument, NULL, 'Q'},
        {"kubeconfig", required_argument, NULL, 'K'},
        {"allow-insecure-issuers", no_argument, NULL, 'I'},
        {"templates-dir", required_argument, NULL, 'T'},
        {"revocations", required_argument, NULL, 'v'},
        {"redis-url", required_argument, NULL, 'R'},
        {"redis-username", required_argument, NULL, 'U'},
        {"redis-password-file", required_argument, NULL, 'P'},
        {"redis-ca-file", required_argument, NULL, 'C'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool check_only = false, watch = false;
    enum pc_log_level level = PC_LOG_INFO;
    struct authd_config *cfg = NULL;
    int c, rc;

    while ((c = getopt_long(argc, argv, "c:l:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'l':
            if (pc_log_parse_level(optarg, &level)) {
                fprintf(stderr, "invalid log level \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'L':
            overrides.listen = optarg;
            break;
        case 'A':
            overrides.admin_listen = optarg;
            break;
        case 'S':
            if (overrides.nsecret_files == AUTHD_MAX_SECRETS) {
                fprintf(stderr, "too many --cookie-secret-file flags (at most %d)\n",
                        AUTHD_MAX_SECRETS);
                return 2;
            }
            overrides.secret_files[overrides.nsecret_files++] = optarg;
            break;
        case 'W':
            watch = true;
            break;
        case 'N':
            kube.namespace = optarg;
            break;
        case 'Q':
            if (strncmp(optarg, "portcullis-authd-config-", 24) != 0 || strlen(optarg) != 26 ||
                strspn(optarg + 24, "0123456789abcdef") != 2) {
                fprintf(stderr, "--config-secret \"%s\": expected portcullis-authd-config-<xx>\n",
                        optarg);
                return 2;
            }
            kube.config_secret = optarg;
            break;
        case 'K':
            kube.kubeconfig = optarg;
            break;
        case 'I':
            overrides.allow_insecure_issuers = true;
            break;
        case 'T':
            overrides.templates_dir = optarg;
            break;
        case 'v':
            revocations = optarg;
            break;
        case 'R':
            overrides.redis_url = optarg;
            break;
        case 'U':
            overrides.redis_username = optarg;
            break;
        case 'P':
            overrides.redis_password_file = optarg;
            break;
        case 'C':
            overrides.redis_ca_file = optarg;
            break;
        case 'V':
            printf("portcullis-authd %s\n", PORTCULLIS_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if ((!path && !watch) || optind != argc) {
        usage(stderr);
        return 2;
    }
    pc_log_set_level(level);
    if (watch)
        return watch_config(path, check_only, level == PC_LOG_DEBUG);
    rc = load(path, &cfg, !check_only);
    /*
     * A missing file is what a first boot looks like when the config is a Secret mounted
     * optional: serve (not ready) until it appears. Anything else wrong with it stops here.
     */
    if (rc == -ENOENT && !check_only)
        return serve(path, authd_config_placeholder(&overrides), true, false,
                     level == PC_LOG_DEBUG);
    if (rc)
        return 1;
    if (check_only) {
        authd_config_free(cfg);
        return 0;
    }
    return serve(path, cfg, false, false, level == PC_LOG_DEBUG);
}
