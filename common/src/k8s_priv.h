/*
 * k8s_priv.h - what the k8s_*.c files share and nobody else uses.
 */
#ifndef PORTCULLIS_K8S_PRIV_H
#define PORTCULLIS_K8S_PRIV_H

#include "portcullis/k8s.h"

/* Internal to k8s*.c: one HTTP exchange on a pooled keep-alive handle. */
struct k8s_xfer {
    const char *method; /* default GET */
    const char *path;   /* path and query, appended to the server URL */
    const char *body;   /* may be NULL */
    size_t body_len;
    const char *content_type;                          /* of body, default application/json */
    const char *accept;                                /* default application/json */
    long timeout_ms;                                   /* whole exchange; 0 = none (watches) */
    long low_speed_secs;                               /* abort below 1 byte/s this long; 0 = off */
    int (*on_data)(void *ud, const char *p, size_t n); /* streams 2xx bodies; non-zero aborts */
    void *ud;
    const atomic_bool *stop; /* aborts within about a second once true (-ECANCELED) */
    long status;             /* out: HTTP status, 0 when none arrived */
    struct pc_buf resp;      /* out: the body (non-2xx only when streaming); release it */
};
/* The Accept value asking for PartialObjectMetadata (list: a PartialObjectMetadataList). */
#define K8S_ACCEPT_METADATA "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
#define K8S_ACCEPT_METADATA_LIST "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
/* Returns 0 when an answer arrived (any status), PC_EIO, PC_ETOOBIG, -ECANCELED, or on_data's. */
int k8s_xfer_do(struct k8s_client *c, struct k8s_xfer *x, struct pc_diag *diag);

/* The component given to k8s_client_new, borrowed for the client's lifetime. */
const char *k8s_client_component(const struct k8s_client *c);

#endif
