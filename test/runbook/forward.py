#!/usr/bin/python3
"""A stand-in for "kubectl port-forward" in test/check-runbook.sh: listens on
127.0.0.1:LOCAL for each LOCAL:TARGET argument and copies bytes both ways to
127.0.0.1:TARGET, until it is killed (as a port-forward dies with its pod)."""
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listener, target):
    while True:
        conn, _ = listener.accept()
        try:
            up = socket.create_connection(("127.0.0.1", target))
        except OSError:
            conn.close()
            continue
        threading.Thread(target=pump, args=(conn, up), daemon=True).start()
        threading.Thread(target=pump, args=(up, conn), daemon=True).start()


def main():
    threads = []
    for arg in sys.argv[1:]:
        local, target = (int(x) for x in arg.split(":"))
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", local))
        ls.listen(64)
        print(f"Forwarding from 127.0.0.1:{local} -> {target}", flush=True)
        t = threading.Thread(target=serve, args=(ls, target), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
