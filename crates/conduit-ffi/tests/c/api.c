/*
 * The C API from C, in one process: NULL pointers, zero, destroyed and
 * wrong-kind handles get error codes (never a crash); a loan/send/
 * receive/release round trip; events with a small id buffer; error
 * messages. Run by tests/c.rs as `api DOMAIN`; prints "N passed, 0
 * failed" and exits 0, or names the failed check and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conduit.h"

static int passed = 0;

#define EXPECT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s (last detail: %s)\n", __FILE__,    \
                    __LINE__, #cond, conduit_last_error_detail());                     \
            exit(1);                                                                   \
        }                                                                              \
        passed++;                                                                      \
    } while (0)

#define OK(call) EXPECT((call) == CONDUIT_OK)

static void null_and_invalid_handles(conduit_node_t node) {
    conduit_node_t zero_node = {0};
    conduit_pubsub_t zero_service = {0};
    conduit_publisher_t zero_publisher = {0};
    conduit_subscriber_t zero_subscriber = {0};
    conduit_event_t zero_event = {0};
    conduit_notifier_t zero_notifier = {0};
    conduit_listener_t zero_listener = {0};
    conduit_pubsub_t service;
    conduit_publisher_t publisher;
    conduit_subscriber_t subscriber;
    conduit_loan_t loan;
    conduit_sample_t sample;
    uint64_t id;
    size_t ids[2], n;
    int fd;

    /* NULL pointers. */
    EXPECT(conduit_node_create("x", NULL, NULL) == CONDUIT_ERROR_NULL_POINTER);
    EXPECT(conduit_node_create(NULL, NULL, &zero_node) == CONDUIT_ERROR_NULL_POINTER);
    EXPECT(zero_node.id == 0); /* not written on failure */
    EXPECT(conduit_pubsub_open(node, NULL, NULL, CONDUIT_OPEN_OR_CREATE, &service) ==
           CONDUIT_ERROR_NULL_POINTER);
    EXPECT(conduit_pubsub_open(node, "api/null", NULL, CONDUIT_OPEN_OR_CREATE, NULL) ==
           CONDUIT_ERROR_NULL_POINTER);
    EXPECT(conduit_node_id(node, NULL) == CONDUIT_ERROR_NULL_POINTER);
    EXPECT(strstr(conduit_last_error_detail(), "id_out") != NULL);
    EXPECT(conduit_loan_send(NULL, NULL) == CONDUIT_ERROR_NULL_POINTER);
    EXPECT(conduit_loan_release(NULL) == CONDUIT_ERROR_NULL_POINTER);
    EXPECT(conduit_sample_release(NULL) == CONDUIT_ERROR_NULL_POINTER);
    EXPECT(conduit_domain_cleanup(NULL, NULL) == CONDUIT_ERROR_NULL_POINTER);

    /* Zero handles, for every kind. */
    EXPECT(conduit_node_id(zero_node, &id) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_node_destroy(zero_node) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_pubsub_open(zero_node, "api/x", NULL, CONDUIT_OPEN_OR_CREATE, &service) ==
           CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_pubsub_destroy(zero_service) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_publisher_create(zero_service, NULL, &publisher) ==
           CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_subscriber_create(zero_service, &subscriber) ==
           CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_publisher_loan(zero_publisher, 8, &loan) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_publisher_send_copy(zero_publisher, "x", 1, NULL) ==
           CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_publisher_destroy(zero_publisher) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_subscriber_receive(zero_subscriber, 0, &sample) ==
           CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_subscriber_fd(zero_subscriber, &fd) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_subscriber_destroy(zero_subscriber) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_event_destroy(zero_event) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_notifier_notify(zero_notifier, 1, NULL) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_listener_wait(zero_listener, 0, ids, 2, &n) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_listener_fd(zero_listener, &fd) == CONDUIT_ERROR_INVALID_HANDLE);

    /* A zeroed loan or sample. */
    memset(&loan, 0, sizeof loan);
    memset(&sample, 0, sizeof sample);
    EXPECT(conduit_loan_send(&loan, NULL) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_sample_release(&sample) == CONDUIT_ERROR_INVALID_HANDLE);

    /* Garbage ids. */
    conduit_publisher_t garbage = {0xdeadbeefcafef00dULL};
    EXPECT(conduit_publisher_loan(garbage, 8, &loan) == CONDUIT_ERROR_INVALID_HANDLE);

    /* A handle of another kind: the node's id passed as a service. */
    conduit_pubsub_t node_as_service = {node.id};
    EXPECT(conduit_publisher_create(node_as_service, NULL, &publisher) ==
           CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(strstr(conduit_last_error_detail(), "publish/subscribe service") != NULL);

    /* Destroyed handles, and destroying twice. */
    OK(conduit_pubsub_open(node, "api/destroyed", NULL, CONDUIT_OPEN_OR_CREATE, &service));
    OK(conduit_publisher_create(service, NULL, &publisher));
    OK(conduit_publisher_destroy(publisher));
    EXPECT(conduit_publisher_destroy(publisher) == CONDUIT_ERROR_INVALID_HANDLE);
    EXPECT(conduit_publisher_loan(publisher, 8, &loan) == CONDUIT_ERROR_INVALID_HANDLE);
    OK(conduit_pubsub_destroy(service));
    EXPECT(conduit_subscriber_create(service, &subscriber) == CONDUIT_ERROR_INVALID_HANDLE);

    /* Bad arguments. */
    EXPECT(conduit_pubsub_open(node, "bad name!", NULL, CONDUIT_OPEN_OR_CREATE, &service) ==
           CONDUIT_ERROR_INVALID_ARGUMENT);
    EXPECT(conduit_pubsub_open(node, "api/mode", NULL, 99, &service) ==
           CONDUIT_ERROR_INVALID_ARGUMENT);
    conduit_pubsub_options_t bad = {0};
    bad.overflow = 42;
    EXPECT(conduit_pubsub_open(node, "api/overflow", &bad, CONDUIT_OPEN_OR_CREATE, &service) ==
           CONDUIT_ERROR_INVALID_ARGUMENT);
    EXPECT(conduit_pubsub_open(node, "api/missing", NULL, CONDUIT_OPEN, &service) ==
           CONDUIT_ERROR_NOT_FOUND);
}

static void round_trip(conduit_node_t node) {
    conduit_pubsub_options_t qos = {0};
    qos.max_loans = 2;
    qos.max_borrowed = 2;
    conduit_pubsub_t service, again;
    OK(conduit_pubsub_open(node, "api/round-trip", &qos, CONDUIT_CREATE, &service));
    EXPECT(conduit_pubsub_open(node, "api/round-trip", NULL, CONDUIT_CREATE, &again) ==
           CONDUIT_ERROR_ALREADY_EXISTS);
    conduit_pubsub_options_t in_force;
    OK(conduit_pubsub_options(service, &in_force));
    EXPECT(in_force.max_loans == 2 && in_force.max_publishers == 2);
    EXPECT(in_force.overflow == CONDUIT_OVERFLOW_DROP_OLDEST);

    conduit_publisher_options_t options = {0};
    options.max_len = 16;
    conduit_publisher_t publisher;
    conduit_subscriber_t subscriber;
    OK(conduit_publisher_create(service, &options, &publisher));
    OK(conduit_subscriber_create(service, &subscriber));

    conduit_sample_t sample;
    EXPECT(conduit_subscriber_receive(subscriber, 0, &sample) == CONDUIT_ERROR_TIMEOUT);
    EXPECT(conduit_subscriber_receive(subscriber, 1000000, &sample) == CONDUIT_ERROR_TIMEOUT);

    conduit_loan_t loan, second, third;
    EXPECT(conduit_publisher_loan(publisher, 17, &loan) == CONDUIT_ERROR_TOO_LONG);
    OK(conduit_publisher_loan(publisher, 5, &loan));
    EXPECT(loan.data != NULL && loan.len == 5 && ((uintptr_t)loan.data % 8) == 0);
    OK(conduit_publisher_loan(publisher, 1, &second));
    EXPECT(conduit_publisher_loan(publisher, 1, &third) == CONDUIT_ERROR_EXCEEDS_MAX_LOANS);
    OK(conduit_loan_release(&second));
    EXPECT(second.key == 0 && second.data == NULL);
    EXPECT(conduit_loan_release(&second) == CONDUIT_ERROR_INVALID_HANDLE);

    memcpy(loan.data, "hello", 5);
    conduit_loan_t copy = loan;
    size_t reached = 0;
    OK(conduit_loan_send(&loan, &reached));
    EXPECT(reached == 1);
    EXPECT(conduit_loan_send(&copy, NULL) == CONDUIT_ERROR_INVALID_HANDLE); /* used up */

    OK(conduit_subscriber_receive(subscriber, CONDUIT_WAIT_FOREVER, &sample));
    EXPECT(sample.len == 5 && memcmp(sample.data, "hello", 5) == 0);
    EXPECT(sample.sequence == 1);
    uint64_t publisher_id;
    OK(conduit_publisher_id(publisher, &publisher_id));
    EXPECT(sample.publisher_id == publisher_id);

    OK(conduit_publisher_send_copy(publisher, "world", 5, &reached));
    conduit_sample_t second_sample, third_sample;
    OK(conduit_subscriber_receive(subscriber, 1000000000, &second_sample));
    EXPECT(memcmp(second_sample.data, "world", 5) == 0 && second_sample.sequence == 2);
    OK(conduit_publisher_send_copy(publisher, "third", 5, NULL));
    EXPECT(conduit_subscriber_receive(subscriber, 0, &third_sample) ==
           CONDUIT_ERROR_EXCEEDS_MAX_BORROWED);

    conduit_sample_t sample_copy = sample;
    OK(conduit_sample_release(&sample));
    EXPECT(sample.data == NULL);
    EXPECT(conduit_sample_release(&sample_copy) == CONDUIT_ERROR_INVALID_HANDLE);
    OK(conduit_subscriber_receive(subscriber, 0, &third_sample));
    EXPECT(memcmp(third_sample.data, "third", 5) == 0);

    /* The descriptor exists and is stable. */
    int fd = -1, fd2 = -2;
    OK(conduit_subscriber_fd(subscriber, &fd));
    OK(conduit_subscriber_fd(subscriber, &fd2));
    EXPECT(fd >= 0 && fd == fd2);

    /* Destroying a port with samples or loans outstanding releases them,
     * and their copies turn invalid. */
    OK(conduit_publisher_loan(publisher, 3, &loan));
    OK(conduit_subscriber_destroy(subscriber));
    EXPECT(conduit_sample_release(&second_sample) == CONDUIT_ERROR_INVALID_HANDLE);
    OK(conduit_pubsub_destroy(service));
    OK(conduit_publisher_destroy(publisher));
    EXPECT(conduit_loan_send(&loan, NULL) == CONDUIT_ERROR_INVALID_HANDLE);
}

static void events(conduit_node_t node) {
    conduit_event_options_t options = {0};
    options.max_event_id = 63;
    conduit_event_t service;
    OK(conduit_event_open(node, "api/events", &options, CONDUIT_OPEN_OR_CREATE, &service));
    conduit_notifier_t notifier;
    conduit_listener_t listener;
    OK(conduit_notifier_create(service, &notifier));
    OK(conduit_listener_create(service, &listener));

    size_t ids[2] = {0, 0}, n = 99, reached = 0;
    EXPECT(conduit_listener_wait(listener, 0, ids, 2, &n) == CONDUIT_ERROR_TIMEOUT);
    EXPECT(conduit_listener_wait(listener, 1000000, ids, 2, &n) == CONDUIT_ERROR_TIMEOUT);
    EXPECT(conduit_listener_wait(listener, 0, ids, 0, &n) == CONDUIT_ERROR_INVALID_ARGUMENT);
    EXPECT(conduit_notifier_notify(notifier, 64, NULL) == CONDUIT_ERROR_INVALID_EVENT_ID);

    OK(conduit_notifier_notify(notifier, 7, &reached));
    EXPECT(reached == 1);
    OK(conduit_notifier_notify(notifier, 3, NULL));
    OK(conduit_notifier_notify(notifier, 3, NULL)); /* reported once */
    OK(conduit_notifier_notify(notifier, 60, NULL));
    /* Three ids, room for two: the third comes with the next call. */
    OK(conduit_listener_wait(listener, CONDUIT_WAIT_FOREVER, ids, 2, &n));
    EXPECT(n == 2 && ids[0] == 3 && ids[1] == 7);
    OK(conduit_listener_wait(listener, 0, ids, 2, &n));
    EXPECT(n == 1 && ids[0] == 60);
    EXPECT(conduit_listener_wait(listener, 0, ids, 2, &n) == CONDUIT_ERROR_TIMEOUT);

    int fd = -1;
    OK(conduit_listener_fd(listener, &fd));
    EXPECT(fd >= 0);

    OK(conduit_notifier_destroy(notifier));
    OK(conduit_listener_destroy(listener));
    OK(conduit_event_destroy(service));
}

static void messages(void) {
    for (int code = 0; code <= CONDUIT_ERROR_INTERNAL; code++) {
        const char *m = conduit_error_message(code);
        EXPECT(m != NULL && m[0] != '\0' && strcmp(m, "unknown error code") != 0);
    }
    EXPECT(strcmp(conduit_error_message(-1), "unknown error code") == 0);
    EXPECT(strcmp(conduit_error_message(1000), "unknown error code") == 0);
    EXPECT(conduit_version() != NULL && strchr(conduit_version(), '.') != NULL);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DOMAIN\n", argv[0]);
        return 2;
    }
    conduit_node_t node;
    OK(conduit_node_create("c-api-test", argv[1], &node));
    uint64_t id = 0;
    OK(conduit_node_id(node, &id));
    EXPECT(id != 0);

    null_and_invalid_handles(node);
    round_trip(node);
    events(node);
    messages();

    OK(conduit_node_destroy(node));
    EXPECT(conduit_node_destroy(node) == CONDUIT_ERROR_INVALID_HANDLE);
    size_t removed = 0;
    OK(conduit_domain_cleanup(argv[1], &removed));
    printf("%d passed, 0 failed\n", passed);
    return 0;
}
