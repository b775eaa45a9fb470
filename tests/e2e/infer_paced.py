# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Paced requests for test_infer.InferHostile2 (found by a review):

usage: infer_paced.py HOST PORT LOG KEY PREFIX N EVERY START_AT [ABORT_S]

N requests GET /work, the i-th at wall time START_AT + i*EVERY, each on a
fresh connection and its own thread, X-Req-Id PREFIX-i, baggage
sd-routing-key=KEY unless KEY is "-". With ABORT_S: the request is sent on
a raw socket which is closed with a reset (SO_LINGER 0) ABORT_S seconds
later, as a client that gave up (its ground truth is still logged).
"""
import http.client
import json
import socket
import struct
import sys
import threading
import time


def main():
    host, port, log_path, key, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    n, every, start_at = int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
    abort = float(sys.argv[9]) if len(sys.argv) > 9 else None
    key = None if key == "-" else key
    lock = threading.Lock()
    log = open(log_path, "a")

    def record(rid):
        with lock:
            log.write(json.dumps({"rid": rid, "key": key}) + "\n")
            log.flush()

    def one(rid):
        record(rid)  # ground truth first: an aborted request has no answer
        if abort is not None:
            s = socket.create_connection((host, port))
            req = "GET /work HTTP/1.1\r\nHost: x\r\nX-Req-Id: %s\r\n" % rid
            if key:
                req += "baggage: sd-routing-key=%s\r\n" % key
            s.sendall((req + "\r\n").encode())
            time.sleep(abort)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            return
        c = http.client.HTTPConnection(host, port, timeout=10)
        h = {"X-Req-Id": rid}
        if key:
            h["baggage"] = "sd-routing-key=" + key
        try:
            c.request("GET", "/work", headers=h)
            c.getresponse().read()
        finally:
            c.close()

    threads = []
    for i in range(n):
        time.sleep(max(0.0, start_at + i * every - time.time()))
        t = threading.Thread(target=one, args=("%s-%d" % (prefix, i),))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    time.sleep(0.5)


if __name__ == "__main__":
    main()
