/*
 * Typed publish/subscribe from C: a C struct meets the Rust type
 *
 *   #[derive(ShmSafe)] #[repr(C)] struct Pose { x: f64, y: f64, seq: u64 }
 *
 * on one service (run by tests/c.rs):
 *
 *   typed fingerprint                      prints POSE_FINGERPRINT
 *   typed pub DOMAIN SERVICE COUNT         publishes COUNT poses, prints
 *                                          "sent", stays until stdin closes
 *   typed sub DOMAIN SERVICE COUNT         prints "ready", receives COUNT
 *                                          poses and checks them
 *   typed mismatch DOMAIN SERVICE U64_FP   each wrong description of Pose
 *                                          is refused with the type error
 *
 * The fingerprint of a derived Rust struct covers its fields, so C keeps
 * the Rust side's value as a constant (tests/c.rs checks that it is
 * Pose::LAYOUT.fingerprint).
 */
#include <inttypes.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conduit.h"

struct pose {
    double x;
    double y;
    uint64_t seq;
};

#define POSE_FINGERPRINT UINT64_C(0xb943d0a94fa7e034)

static const conduit_type_t POSE = {
    .name = "Pose",
    .size = sizeof(struct pose),
    .align = alignof(struct pose),
    .fingerprint = POSE_FINGERPRINT,
};

static void check(conduit_error_t rc, const char *what) {
    if (rc != CONDUIT_OK) {
        fprintf(stderr, "typed: %s: %s (%s)\n", what, conduit_error_message(rc),
                conduit_last_error_detail());
        exit(1);
    }
}

static void expect(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "typed: FAILED: %s (last detail: %s)\n", what,
                conduit_last_error_detail());
        exit(1);
    }
}

static int publish(conduit_node_t node, const char *name, int count) {
    conduit_pubsub_t service;
    check(conduit_pubsub_open_typed(node, name, &POSE, NULL, CONDUIT_OPEN_OR_CREATE, &service),
          "open typed service");
    conduit_publisher_t publisher;
    check(conduit_publisher_create(service, NULL, &publisher), "create publisher");
    for (int i = 1; i <= count; i++) {
        conduit_loan_t loan;
        check(conduit_publisher_loan(publisher, sizeof(struct pose), &loan), "loan");
        expect(loan.len == sizeof(struct pose), "the loan is one pose");
        expect((uintptr_t)loan.data % alignof(struct pose) == 0, "the loan is aligned");
        /* Written in place, as the struct. */
        struct pose *p = loan.data;
        p->x = i;
        p->y = -i;
        p->seq = (uint64_t)i;
        check(conduit_loan_send(&loan, NULL), "send");
    }
    /* The last one as a copy. */
    struct pose last = {.x = count + 1, .y = -(count + 1), .seq = (uint64_t)count + 1};
    check(conduit_publisher_send_copy(publisher, &last, sizeof last, NULL), "send copy");
    printf("sent\n");
    fflush(stdout);
    /* Stay (the samples live in this process's memory) until the reader
     * has read them and closes our stdin. */
    while (getchar() != EOF) {
    }
    check(conduit_publisher_destroy(publisher), "destroy publisher");
    check(conduit_pubsub_destroy(service), "destroy service");
    return 0;
}

static int subscribe(conduit_node_t node, const char *name, int count) {
    conduit_pubsub_t service;
    check(conduit_pubsub_open_typed(node, name, &POSE, NULL, CONDUIT_OPEN, &service),
          "open typed service");
    conduit_subscriber_t subscriber;
    check(conduit_subscriber_create(service, &subscriber), "create subscriber");
    printf("ready\n");
    fflush(stdout);
    for (int i = 1; i <= count; i++) {
        conduit_sample_t sample;
        check(conduit_subscriber_receive(subscriber, 10LL * 1000 * 1000 * 1000, &sample),
              "receive");
        expect(sample.len == sizeof(struct pose), "the sample is one pose");
        expect((uintptr_t)sample.data % alignof(struct pose) == 0, "the sample is aligned");
        /* Read in place, as the struct. */
        const struct pose *p = sample.data;
        if (p->x != i || p->y != -i || p->seq != (uint64_t)i) {
            fprintf(stderr, "typed: pose %d is {%f, %f, %" PRIu64 "}\n", i, p->x, p->y, p->seq);
            return 1;
        }
        check(conduit_sample_release(&sample), "release");
    }
    printf("received %d\n", count);
    check(conduit_subscriber_destroy(subscriber), "destroy subscriber");
    check(conduit_pubsub_destroy(service), "destroy service");
    return 0;
}

/* Opens SERVICE (a Rust Pose service) with `t`: the type error, whose
 * detail names both types. */
static void refused(conduit_node_t node, const char *name, conduit_type_t t, const char *what) {
    conduit_pubsub_t service = {0};
    conduit_error_t rc = conduit_pubsub_open_typed(node, name, &t, NULL, CONDUIT_OPEN, &service);
    if (rc != CONDUIT_ERROR_INCOMPATIBLE) {
        fprintf(stderr, "typed: wrong %s: got %d, not CONDUIT_ERROR_INCOMPATIBLE\n", what, rc);
        exit(1);
    }
    const char *detail = conduit_last_error_detail();
    if (strstr(detail, "Pose (size 24, align 8") == NULL || strstr(detail, t.name) == NULL) {
        fprintf(stderr, "typed: wrong %s: detail %s\n", what, detail);
        exit(1);
    }
    expect(service.id == 0, "nothing written on failure");
}

static int mismatch(conduit_node_t node, const char *name, uint64_t u64_fingerprint) {
    conduit_type_t t = POSE;
    t.name = "Pose2";
    refused(node, name, t, "name");
    t = POSE;
    t.size = 32;
    refused(node, name, t, "size");
    t = POSE;
    t.align = 4;
    refused(node, name, t, "align");
    t = POSE;
    t.fingerprint ^= 1;
    refused(node, name, t, "fingerprint");
    /* A byte service is another type too. */
    conduit_pubsub_t service = {0};
    expect(conduit_pubsub_open(node, name, NULL, CONDUIT_OPEN, &service) ==
               CONDUIT_ERROR_INCOMPATIBLE,
           "a byte opener of a typed service");

    /* Descriptions no compiler makes, and bad pointers. */
    t = POSE;
    t.align = 3;
    expect(conduit_pubsub_open_typed(node, name, &t, NULL, CONDUIT_OPEN, &service) ==
               CONDUIT_ERROR_INVALID_ARGUMENT,
           "alignment 3");
    t = POSE;
    t.size = 20;
    expect(conduit_pubsub_open_typed(node, name, &t, NULL, CONDUIT_OPEN, &service) ==
               CONDUIT_ERROR_INVALID_ARGUMENT,
           "size not a multiple of the alignment");
    t = POSE;
    t.name = NULL;
    expect(conduit_pubsub_open_typed(node, name, &t, NULL, CONDUIT_OPEN, &service) ==
               CONDUIT_ERROR_NULL_POINTER,
           "NULL type name");
    expect(conduit_pubsub_open_typed(node, name, NULL, NULL, CONDUIT_OPEN, &service) ==
               CONDUIT_ERROR_NULL_POINTER,
           "NULL type");

    /* The right description opens it; loans are exactly one pose. */
    check(conduit_pubsub_open_typed(node, name, &POSE, NULL, CONDUIT_OPEN, &service),
          "open with the right type");
    conduit_publisher_t publisher;
    check(conduit_publisher_create(service, NULL, &publisher), "create publisher");
    conduit_loan_t loan;
    expect(conduit_publisher_loan(publisher, 16, &loan) == CONDUIT_ERROR_INVALID_ARGUMENT,
           "a loan shorter than the type");
    expect(conduit_publisher_send_copy(publisher, &POSE, 8, NULL) ==
               CONDUIT_ERROR_INVALID_ARGUMENT,
           "a copy shorter than the type");
    check(conduit_publisher_destroy(publisher), "destroy publisher");
    check(conduit_pubsub_destroy(service), "destroy service");

    /* The leaf fingerprint is the Rust one (u64's, given by the test). */
    uint64_t fp = 0;
    check(conduit_type_leaf_fingerprint("u64", 8, 8, &fp), "leaf fingerprint");
    expect(fp == u64_fingerprint, "u64's leaf fingerprint");
    expect(conduit_type_leaf_fingerprint(NULL, 8, 8, &fp) == CONDUIT_ERROR_NULL_POINTER,
           "NULL name");
    printf("mismatches refused\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "fingerprint") == 0) {
        printf("%016" PRIx64 "\n", POSE_FINGERPRINT);
        return 0;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: %s pub|sub|mismatch DOMAIN SERVICE ARG\n", argv[0]);
        return 2;
    }
    conduit_node_t node;
    check(conduit_node_create("c-typed", argv[2], &node), "create node");
    int rc;
    if (strcmp(argv[1], "pub") == 0) {
        rc = publish(node, argv[3], atoi(argv[4]));
    } else if (strcmp(argv[1], "sub") == 0) {
        rc = subscribe(node, argv[3], atoi(argv[4]));
    } else {
        rc = mismatch(node, argv[3], strtoull(argv[4], NULL, 16));
    }
    check(conduit_node_destroy(node), "destroy node");
    return rc;
}
