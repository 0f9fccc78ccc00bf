/*
 * Request/response from C, against a Rust peer (tests/c.rs).
 *
 *   reqres server DOMAIN COUNT   answers COUNT requests of "c/upper" with a
 *                                stream of two responses (the request in
 *                                upper case, then its length in decimal),
 *                                then ends the stream; prints "ready" first
 *                                and "served N" at the end
 *   reqres client DOMAIN         sends "hello" to "c/upper" and checks the
 *                                stream ["HELLO", "5"] and its end, then the
 *                                error codes; prints "client ok"
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conduit.h"

static void check(conduit_error_t rc, const char *what) {
    if (rc != CONDUIT_OK) {
        fprintf(stderr, "reqres: %s: %s (%s)\n", what, conduit_error_message(rc),
                conduit_last_error_detail());
        exit(1);
    }
}

static void expect(conduit_error_t rc, conduit_error_t want, const char *what) {
    if (rc != want) {
        fprintf(stderr, "reqres: %s: got %s, want %s (%s)\n", what, conduit_error_message(rc),
                conduit_error_message(want), conduit_last_error_detail());
        exit(1);
    }
}

static int server(const char *domain, int count) {
    conduit_node_t node;
    check(conduit_node_create("c-server", domain, &node), "create node");
    conduit_reqres_t service;
    check(conduit_reqres_open(node, "c/upper", NULL, CONDUIT_OPEN_OR_CREATE, &service), "open");
    conduit_server_t srv;
    check(conduit_server_create(service, 4096, &srv), "create server");
    printf("ready\n");
    fflush(stdout);
    int served = 0;
    while (served < count) {
        conduit_request_t request;
        check(conduit_server_receive(srv, 10LL * 1000 * 1000 * 1000, &request), "receive");
        char upper[4096];
        size_t n = request.len < sizeof upper ? request.len : sizeof upper;
        for (size_t i = 0; i < n; i++) upper[i] = (char)toupper(((const char *)request.data)[i]);
        if (!request.wants_response) {
            expect(conduit_request_respond_copy(&request, upper, n), CONDUIT_ERROR_DISCONNECTED,
                   "respond to a request that wants none");
        } else {
            check(conduit_request_respond_copy(&request, upper, n), "respond");
            char len[32];
            int m = snprintf(len, sizeof len, "%zu", request.len);
            check(conduit_request_respond_copy(&request, len, (size_t)m), "respond length");
        }
        check(conduit_request_end(&request), "end");
        expect(conduit_request_end(&request), CONDUIT_ERROR_INVALID_HANDLE, "end twice");
        served++;
    }
    printf("served %d\n", served);
    check(conduit_server_destroy(srv), "destroy server");
    check(conduit_reqres_destroy(service), "destroy service");
    check(conduit_node_destroy(node), "destroy node");
    return 0;
}

static int client(const char *domain) {
    conduit_node_t node;
    check(conduit_node_create("c-client", domain, &node), "create node");
    conduit_reqres_t service;
    check(conduit_reqres_open(node, "c/upper", NULL, CONDUIT_OPEN_OR_CREATE, &service), "open");
    conduit_client_t cli;
    check(conduit_client_create(service, 0, &cli), "create client");
    size_t servers = 0;
    for (int i = 0; i < 1000 && servers == 0; i++) {
        check(conduit_client_servers(cli, &servers), "servers");
        struct timespec ms = {0, 10 * 1000 * 1000};
        if (servers == 0) nanosleep(&ms, NULL);
    }
    if (servers == 0) {
        fprintf(stderr, "reqres: no server within 10 s\n");
        return 1;
    }
    /* A request with no pending response (fire and forget) first: it
     * lives in this client's memory, so it must be taken before the
     * client goes; the server takes requests in order, so the responses
     * to "hello" below prove it was. */
    check(conduit_client_send_copy(cli, "fire", 4, NULL), "send without a response");
    conduit_pending_t pending;
    check(conduit_client_send_copy(cli, "hello", 5, &pending), "send");
    const char *want[] = {"HELLO", "5"};
    for (int i = 0; i < 2; i++) {
        conduit_response_t response;
        check(conduit_pending_receive(&pending, CONDUIT_WAIT_FOREVER, &response), "receive");
        if (response.len != strlen(want[i]) || memcmp(response.data, want[i], response.len) != 0) {
            fprintf(stderr, "reqres: response %d is %.*s, want %s\n", i, (int)response.len,
                    (const char *)response.data, want[i]);
            return 1;
        }
        check(conduit_response_release(&response), "release response");
        expect(conduit_response_release(&response), CONDUIT_ERROR_INVALID_HANDLE,
               "release a response twice");
    }
    conduit_response_t after;
    expect(conduit_pending_receive(&pending, 5LL * 1000 * 1000 * 1000, &after),
           CONDUIT_ERROR_END_OF_STREAM, "receive after the end of the stream");
    check(conduit_pending_release(&pending), "release pending");
    expect(conduit_pending_receive(&pending, 0, &after), CONDUIT_ERROR_INVALID_HANDLE,
           "receive from a released pending response");
    expect(conduit_pending_receive(NULL, 0, &after), CONDUIT_ERROR_NULL_POINTER, "NULL pending");
    expect(conduit_client_send_copy(cli, NULL, 3, NULL), CONDUIT_ERROR_NULL_POINTER,
           "NULL data with a length");
    conduit_client_t bogus = {0};
    expect(conduit_client_send_copy(bogus, "x", 1, &pending), CONDUIT_ERROR_INVALID_HANDLE,
           "zero client handle");
    /* No server on another service: DISCONNECTED. */
    conduit_reqres_t lonely;
    check(conduit_reqres_open(node, "c/nobody", NULL, CONDUIT_OPEN_OR_CREATE, &lonely), "open");
    conduit_client_t alone;
    check(conduit_client_create(lonely, 0, &alone), "create lonely client");
    expect(conduit_client_send_copy(alone, "anyone?", 7, &pending), CONDUIT_ERROR_DISCONNECTED,
           "send with no server");
    check(conduit_client_destroy(alone), "destroy lonely client");
    check(conduit_reqres_destroy(lonely), "destroy lonely service");
    check(conduit_client_destroy(cli), "destroy client");
    check(conduit_reqres_destroy(service), "destroy service");
    check(conduit_node_destroy(node), "destroy node");
    printf("client ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "server") == 0) return server(argv[2], atoi(argv[3]));
    if (argc >= 3 && strcmp(argv[1], "client") == 0) return client(argv[2]);
    fprintf(stderr, "usage: %s server DOMAIN COUNT | client DOMAIN\n", argv[0]);
    return 2;
}
