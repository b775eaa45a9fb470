// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Tunnels: a connection that is not HTTP, or an exchange that switched
 * protocols, carries bytes unchanged both ways until both sides are done.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <llhttp.h>
#include "kernel/bpf.h"
#include "state/dstguard.h"
#include "core/hmap.h"
#include "proxy/http.h"
#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/pool.h"
#include "proxy/reqstats.h"
#include "proxy/route.h"
#include "state/store.h"
#include "core/util.h"
#include "proxy/proxy_int.h"

/* Not HTTP: a tunnel to the original destination, bytes unchanged. */
void start_tunnel(struct conn *c)
{
	char a[ADDR_STR_LEN];

	c->state = C_TUNNEL;
	c->s.dst = c->orig;
	infer_inbound_tunnel(c);
	c->p->st.tunnels++;
	if (attach_upstream(c, true))
		return;
	if (errno == EDST_REFUSED)
		pr_warn("tunnel to %s refused: it is %s", format_addr_port(&c->s.dst, a, sizeof(a)),
			dst_class_text(dstguard_check(&c->p->snap->guard, &c->s.dst)));
	client_close(c);
}

/* A tunnel whose server is done: once the client is too, close. True
 * when c closed. */
bool tunnel_ended(struct conn *c, struct upstream *u)
{
	if (!u->eof || u->in.start != u->in.end)
		return false;
	shutdown(c->fd, SHUT_WR);
	if (c->eof || c->shut_wr_up) {
		client_close(c);
		return true;
	}
	return false;
}
