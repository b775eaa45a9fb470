/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The control-socket protocol between shuntctl and shuntd.
 *
 * Request: one line, fields separated by TAB, ending in LF:
 *   route-add  SERVICE KEY TO TTL_SECONDS FALLBACK(baseline|error)
 *   route-del  SERVICE KEY
 *   route-list FORMAT(text|json)
 *   status     FORMAT(text|json)
 * Response: a first line "ok" or "error N" (N = the exit code shuntctl
 * should use), then the text to print (stdout for ok, stderr for error).
 * The server closes the connection after the response.
 */
#ifndef SHUNT_CTL_PROTO_H
#define SHUNT_CTL_PROTO_H

#define CTL_MAX_REQUEST	 4096
#define CTL_DEFAULT_PATH "/run/shunt/shunt.sock"

/* shuntctl exit codes */
#define CTL_EXIT_OK	     0
#define CTL_EXIT_FAILED	     1 /* the daemon refused the operation */
#define CTL_EXIT_USAGE	     2 /* bad command line */
#define CTL_EXIT_UNREACHABLE 3 /* no daemon on the control socket */

#endif /* SHUNT_CTL_PROTO_H */
