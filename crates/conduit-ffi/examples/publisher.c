/*
 * A C publisher on a conduit publish/subscribe service of byte payloads.
 *
 *   publisher DOMAIN SERVICE COUNT
 *
 * Publishes COUNT samples "sample 1", "sample 2", ... on SERVICE (loan,
 * write in place, send: no copy), then waits up to 10 s for event id 1
 * on the event service SERVICE.done, which the subscriber notifies once
 * it has read them all, and leaves. Any program that opens SERVICE as
 * `publish_subscribe::<[u8]>()` (Rust) or with conduit_pubsub_open (C)
 * receives the samples, if its subscriber exists before the first send.
 *
 * Build (from the workspace root, after `cargo build -p conduit-ffi`):
 *   cc -Icrates/conduit-ffi/include crates/conduit-ffi/examples/publisher.c \
 *      target/debug/libconduit_ffi.a -lpthread -ldl -lm -o publisher
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conduit.h"

/* Prints what failed and why, and exits. */
static void check(conduit_error_t rc, const char *what) {
    if (rc != CONDUIT_OK) {
        fprintf(stderr, "publisher: %s: %s (%s)\n", what, conduit_error_message(rc),
                conduit_last_error_detail());
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DOMAIN SERVICE COUNT\n", argv[0]);
        return 2;
    }
    const char *domain = argv[1];
    const char *service_name = argv[2];
    int count = atoi(argv[3]);
    char done_name[300];
    snprintf(done_name, sizeof done_name, "%s.done", service_name);

    conduit_node_t node;
    check(conduit_node_create("c-publisher", domain, &node), "create node");

    conduit_pubsub_t service;
    check(conduit_pubsub_open(node, service_name, NULL, CONDUIT_OPEN_OR_CREATE, &service),
          "open service");
    conduit_publisher_options_t options = {0};
    options.max_len = 64; /* bytes per sample at most */
    conduit_publisher_t publisher;
    check(conduit_publisher_create(service, &options, &publisher), "create publisher");

    conduit_event_t done;
    check(conduit_event_open(node, done_name, NULL, CONDUIT_OPEN_OR_CREATE, &done),
          "open event service");
    conduit_listener_t listener;
    check(conduit_listener_create(done, &listener), "create listener");

    for (int i = 1; i <= count; i++) {
        conduit_loan_t loan;
        check(conduit_publisher_loan(publisher, 32, &loan), "loan");
        /* Write the payload in place, in shared memory. */
        memset(loan.data, 0, loan.len);
        snprintf((char *)loan.data, loan.len, "sample %d", i);
        size_t reached = 0;
        check(conduit_loan_send(&loan, &reached), "send");
        printf("sent sample %d to %zu subscriber(s)\n", i, reached);
    }
    fflush(stdout);

    /* Stay until the subscriber has read everything. */
    size_t ids[4];
    size_t n = 0;
    check(conduit_listener_wait(listener, 10LL * 1000 * 1000 * 1000, ids, 4, &n),
          "wait for the subscriber");
    printf("subscriber done (event %zu)\n", ids[0]);

    check(conduit_listener_destroy(listener), "destroy listener");
    check(conduit_event_destroy(done), "destroy event service");
    check(conduit_publisher_destroy(publisher), "destroy publisher");
    check(conduit_pubsub_destroy(service), "destroy service");
    check(conduit_node_destroy(node), "destroy node");
    return 0;
}
