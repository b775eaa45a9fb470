/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The small connection server under the control socket and the metrics
 * and probe endpoints: accept the whole backlog (edge-triggered), ask
 * the owner whether a peer may have a slot (else it refuses the socket
 * its own way), keep the connections on a list with a deadline on the
 * loop's timer heap, and close them in one place. What is said on a
 * connection is the owner's: its event function reads and answers.
 *
 * An owner's connection struct starts with a struct srv_conn; ops says
 * how big it is.
 */
#ifndef SHUNT_OPS_SERVER_H
#define SHUNT_OPS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shunt/shunt.h>

#include "core/loop.h"
#include "core/timer.h"

struct srv;

struct srv_conn {
	struct ev_handler h;
	struct srv *srv;
	struct srv_conn *prev, *next;
	struct shunt_addr peer; /* port 0; family 0: not an IP peer */
	struct timer deadline;	/* ops->timeout_ms after accept */
	int fd;
};

struct srv_ops {
	const char *name; /* in logs */
	size_t conn_size; /* the owner's struct, starting with a struct srv_conn */
	uint64_t timeout_ms;
	uint32_t events; /* epoll events of a connection (EPOLLET is added) */
	/* May peer have a slot? false: refuse(s, fd) answers and closes it. */
	bool (*admit)(struct srv *s, const struct shunt_addr *peer);
	void (*refuse)(struct srv *s, int fd);
	/* A new connection, before it is on the loop: 0, or it is dropped. */
	int (*init)(struct srv_conn *c);
	void (*event)(struct srv_conn *c, uint32_t events);
	/* The deadline passed (srv_close follows); may be NULL. */
	void (*expired)(struct srv_conn *c);
	/* Just before the socket closes: the owner lets go of its parts. */
	void (*fini)(struct srv_conn *c);
};

struct srv {
	struct ev_handler h;
	const char *name; /* in logs: ops->name unless the owner sets it */
	struct loop *loop;
	const struct srv_ops *ops;
	void *owner;
	int fd; /* the listening socket, -1 before srv_start */
	unsigned int nconns;
	struct srv_conn *conns; /* newest first */
};

/* Serve the listening socket fd (the server owns it from now on, also on
 * failure): 0 or -errno. */
int srv_start(struct srv *s, struct loop *l, int fd, const struct srv_ops *ops, void *owner);
/* Close every connection and the listening socket. */
void srv_stop(struct srv *s);
void srv_close(struct srv_conn *c);
/* Connections open from peer's address. */
unsigned int srv_conns_from(const struct srv *s, const struct shunt_addr *peer);
/* Read and drop what a client sent beyond its request (bounded), so that
 * closing with unread bytes does not reset the connection and lose the
 * answer. */
void srv_drain_input(int fd);

#endif /* SHUNT_OPS_SERVER_H */
