# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Load shapes that defeat a naive inference rule (test_infer.InferHostile),
found by a review of the first version; each writes a ground-truth log
like inferapp.py's load role ({"rid", "key"} per request) and waits for
the file TRIGGER (the test turns inference on first; 'preexisting'
creates TRIGGER.ready once its connection is open):

  preexisting  a keep-alive connection opened BEFORE inference began (it
               never passes through shunt) carries keyless requests that
               overlap dev-a requests on fresh connections;
  post         keyless and dev-a requests alternate every 25 ms: the pod
               is never idle, and each response's delayed fire-and-forget
               call overlaps the next request;
  stream       dev-a requests every 25 ms, back to back, while the middle's
               background timer calls.

usage: infer_hostile.py MODE HOST PORT LOG TRIGGER
"""
import http.client
import json
import os
import sys
import threading
import time


class Driver:
    def __init__(self, host, port, log_path):
        self.host, self.port = host, port
        self.lock = threading.Lock()
        self.log = open(log_path, "a")

    def record(self, rid, key):
        with self.lock:
            self.log.write(json.dumps({"rid": rid, "key": key}) + "\n")
            self.log.flush()

    def send(self, conn, rid, key):
        headers = {"X-Req-Id": rid}
        if key:
            headers["baggage"] = "sd-routing-key=" + key
        conn.request("GET", "/work", headers=headers)
        conn.getresponse().read()
        self.record(rid, key)

    def fresh(self, rid, key):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            self.send(conn, rid, key)
        finally:
            conn.close()

    def paced(self, n, every, key_of):
        """n requests, one every `every` seconds, each on its own thread."""
        threads = []
        t0 = time.monotonic()
        for i in range(n):
            time.sleep(max(0.0, t0 + i * every - time.monotonic()))
            t = threading.Thread(target=self.fresh, args=("h-%d" % i, key_of(i)))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.05)


def main():
    mode, host, port, log_path, trigger = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    d = Driver(host, port, log_path)
    if mode == "preexisting":
        old = http.client.HTTPConnection(host, port, timeout=10)
        d.send(old, "w-0", None)
        open(trigger + ".ready", "w").close()  # open: inference may begin
        wait_for(trigger)
        time.sleep(0.2)
        for i in range(20):
            a = threading.Thread(target=d.fresh, args=("a-%d" % i, "dev-a"))
            a.start()
            time.sleep(0.005)
            u = threading.Thread(target=d.send, args=(old, "u-%d" % i, None))
            u.start()
            time.sleep(0.005)
            b = threading.Thread(target=d.fresh, args=("b-%d" % i, "dev-a"))
            b.start()
            for t in (a, u, b):
                t.join()
            time.sleep(0.03)
        old.close()
    elif mode == "post":
        wait_for(trigger)
        d.paced(80, 0.025, lambda i: "dev-a" if i % 2 else None)
    elif mode == "stream":
        wait_for(trigger)
        d.paced(80, 0.025, lambda i: "dev-a")
    else:
        sys.exit("infer_hostile: unknown mode " + mode)
    time.sleep(0.3)  # the last post-response calls


if __name__ == "__main__":
    main()
