/*
 * A C subscriber on a conduit publish/subscribe service of byte payloads,
 * waiting with poll(2) on the subscriber's descriptor.
 *
 *   subscriber DOMAIN SERVICE COUNT
 *
 * Subscribes to SERVICE, prints "ready", then reads COUNT samples
 * (zero-copy views of the publisher's shared memory), printing each as
 * "received <seq> <text>". Then it notifies event id 1 on the event
 * service SERVICE.done, so the publisher knows it may leave, and exits.
 * Gives up after 10 s without a sample.
 *
 * Build (from the workspace root, after `cargo build -p conduit-ffi`):
 *   cc -Icrates/conduit-ffi/include crates/conduit-ffi/examples/subscriber.c \
 *      -Ltarget/debug -lconduit_ffi -Wl,-rpath,$PWD/target/debug -o subscriber
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "conduit.h"

static void check(conduit_error_t rc, const char *what) {
    if (rc != CONDUIT_OK) {
        fprintf(stderr, "subscriber: %s: %s (%s)\n", what, conduit_error_message(rc),
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
    check(conduit_node_create("c-subscriber", domain, &node), "create node");
    conduit_pubsub_t service;
    check(conduit_pubsub_open(node, service_name, NULL, CONDUIT_OPEN_OR_CREATE, &service),
          "open service");
    conduit_subscriber_t subscriber;
    check(conduit_subscriber_create(service, &subscriber), "create subscriber");
    conduit_event_t done;
    check(conduit_event_open(node, done_name, NULL, CONDUIT_OPEN_OR_CREATE, &done),
          "open event service");
    conduit_notifier_t notifier;
    check(conduit_notifier_create(done, &notifier), "create notifier");

    int fd = -1;
    check(conduit_subscriber_fd(subscriber, &fd), "wake-up descriptor");
    printf("ready\n");
    fflush(stdout);

    int received = 0;
    while (received < count) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, 10000);
        if (ready < 0) {
            perror("poll");
            return 1;
        }
        if (ready == 0) {
            fprintf(stderr, "subscriber: no sample within 10 s\n");
            return 1;
        }
        /* Drain: receive with timeout 0 until TIMEOUT, which re-arms fd. */
        for (;;) {
            conduit_sample_t sample;
            conduit_error_t rc = conduit_subscriber_receive(subscriber, 0, &sample);
            if (rc == CONDUIT_ERROR_TIMEOUT) break;
            check(rc, "receive");
            printf("received %llu %.*s\n", (unsigned long long)sample.sequence,
                   (int)sample.len, (const char *)sample.data);
            check(conduit_sample_release(&sample), "release");
            received++;
        }
    }
    fflush(stdout);

    check(conduit_notifier_notify(notifier, 1, NULL), "notify");
    check(conduit_notifier_destroy(notifier), "destroy notifier");
    check(conduit_event_destroy(done), "destroy event service");
    check(conduit_subscriber_destroy(subscriber), "destroy subscriber");
    check(conduit_pubsub_destroy(service), "destroy service");
    check(conduit_node_destroy(node), "destroy node");
    return 0;
}
