"""pgproxy — a TCP proxy between flashsale nodes and PostgreSQL that the test controls.

It forwards whole PostgreSQL protocol messages (v3, unencrypted: give the nodes
sslmode=disable&gssencmode=disable) and can break the link the ways a network does:

    partition()          RST every connection, and RST every new one, until heal()
    hold_at_commit()     at the next COMMIT (simple Query "COMMIT"), before it is sent
                         on: stop moving bytes on every link, and stop accepting, as a
                         cut that drops packets does (TCP keeps them for later)
    heal()               forward again (held bytes too)
    swallow_commits(n)   the next n COMMITs (simple Query "COMMIT") reach the server
                         and are answered there, but the answer never reaches the
                         node: its connection is reset once the server said
                         ReadyForQuery.  The node cannot know whether it committed.

One thread runs a selector loop; the test's calls are handed to it, so no socket
is touched by two threads.  Counters: swallowed (COMMIT answers eaten, by tag),
resets (connections reset), accepted.
"""
import queue
import selectors
import socket
import struct
import threading
import time

SSL_REQUEST, GSS_REQUEST = 80877103, 80877104


def _rst(sock):
    """Closes with RST (linger 0), as a crashed host or a middlebox does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Pair:
    def __init__(self, c, s):
        self.c, self.s = c, s
        self.to_c, self.to_s = bytearray(), bytearray()
        self.c_in, self.s_in = bytearray(), bytearray()  # unparsed bytes from each side
        self.c_startup = True  # the client's next message is untyped (startup, SSL/GSS request)
        self.s_raw = 0         # one-byte answers the server owes (to SSL/GSS requests)
        self.swallow = False   # a COMMIT went through; eat the answer, then reset
        self.tag = None


class PgProxy:
    def __init__(self, target_port, host="127.0.0.1"):
        self.target = (host, target_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(512)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.calls = queue.Queue()
        self.pairs = {}  # socket -> _Pair
        self.down = False
        self.armed = 0
        self.hold_armed = False
        self.held = False
        self.swallowed = {}
        self.resets = 0
        self.accepted = 0
        self.stopping = False
        self.sel.register(self.lsock, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    # ---- the test's side: each call runs on the loop thread ------------------------

    def _call(self, fn):
        done, box = threading.Event(), []
        self.calls.put((fn, done, box))
        self.wake_w.send(b"x")
        if not done.wait(30):
            raise AssertionError("pgproxy: the loop did not answer")
        return box[0] if box else None

    def partition(self):
        def go():
            self.down = True
            for p in list({id(p): p for p in self.pairs.values()}.values()):
                self._kill(p)
        self._call(go)

    def heal(self):
        def go():
            self.down = False
            if self.held:
                self.held = False
                self.sel.register(self.lsock, selectors.EVENT_READ, "accept")
                for sock, p in self.pairs.items():
                    self.sel.register(sock, selectors.EVENT_READ, p)
                    self._want(p, sock)
        self._call(go)

    def hold_at_commit(self):
        self._call(lambda: setattr(self, "hold_armed", True))

    def _hold(self):
        self.held = True
        self.sel.unregister(self.lsock)
        for sock in self.pairs:
            self.sel.unregister(sock)

    def swallow_commits(self, n):
        self._call(lambda: setattr(self, "armed", n))

    def stats(self):
        return self._call(lambda: {"swallowed": dict(self.swallowed), "resets": self.resets,
                                   "accepted": self.accepted, "armed": self.armed, "held": self.held,
                                   "open": len(self.pairs) // 2})

    def close(self):
        def go():
            self.stopping = True
            for p in list({id(p): p for p in self.pairs.values()}.values()):
                self._kill(p)
        self._call(go)
        self.thread.join(10)
        self.lsock.close()

    # ---- the loop ---------------------------------------------------------------------

    def _loop(self):
        while not self.stopping:
            for key, ev in self.sel.select(0.5):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    try:
                        self.wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                    while not self.calls.empty():
                        fn, done, box = self.calls.get()
                        box.append(fn())
                        done.set()
                else:
                    p = key.data
                    if key.fileobj not in self.pairs or self.held:
                        continue  # killed or held earlier in this round
                    if ev & selectors.EVENT_READ:
                        self._read(p, key.fileobj)
                    if key.fileobj in self.pairs and ev & selectors.EVENT_WRITE:
                        self._flush(p, key.fileobj)

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except BlockingIOError:
                return
            self.accepted += 1
            if self.down:
                self.resets += 1
                _rst(c)
                continue
            try:
                s = socket.create_connection(self.target, timeout=2)
            except OSError:
                _rst(c)  # the database is not there: the node sees a refused link
                continue
            c.setblocking(False)
            s.setblocking(False)
            p = _Pair(c, s)
            self.pairs[c] = self.pairs[s] = p
            self.sel.register(c, selectors.EVENT_READ, p)
            self.sel.register(s, selectors.EVENT_READ, p)

    def _kill(self, p):
        for sock in (p.c, p.s):
            if sock in self.pairs:
                del self.pairs[sock]
                self.sel.unregister(sock)
                _rst(sock)
        self.resets += 1

    def _want(self, p, sock):
        out = p.to_c if sock is p.c else p.to_s
        self.sel.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0), p)

    def _flush(self, p, sock):
        out = p.to_c if sock is p.c else p.to_s
        try:
            n = sock.send(out)
            del out[:n]
        except BlockingIOError:
            pass
        except OSError:
            return self._kill(p)
        self._want(p, sock)

    def _send(self, p, sock, data):
        (p.to_c if sock is p.c else p.to_s).extend(data)
        self._flush(p, sock)

    def _read(self, p, sock):
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return self._kill(p)
        if sock is p.c:
            self._from_client(p, data)
        else:
            self._from_server(p, data)

    def _from_client(self, p, data):
        if p.swallow:
            return  # the node's link is about to die; what it says now is lost
        buf = p.c_in
        buf.extend(data)
        out = bytearray()
        while True:
            if p.c_startup:
                if len(buf) < 8:
                    break
                n = struct.unpack("!I", buf[:4])[0]
                if len(buf) < n:
                    break
                code = struct.unpack("!I", buf[4:8])[0]
                if code in (SSL_REQUEST, GSS_REQUEST):
                    p.s_raw += 1
                else:
                    p.c_startup = False
                out += buf[:n]
                del buf[:n]
                continue
            if len(buf) < 5:
                break
            n = 1 + struct.unpack("!I", buf[1:5])[0]
            if len(buf) < n:
                break
            msg = bytes(buf[:n])
            del buf[:n]
            if self.hold_armed and msg[:1] == b"Q" and msg[5:].upper().startswith(b"COMMIT"):
                self.hold_armed = False
                p.to_s.extend(out + msg)  # sent on at heal()
                return self._hold()
            out += msg
            if self.armed and msg[:1] == b"Q" and msg[5:].upper().startswith(b"COMMIT"):
                self.armed -= 1
                p.swallow = True
                buf.clear()
                break
        if out:
            self._send(p, p.s, out)

    def _from_server(self, p, data):
        buf = p.s_in
        buf.extend(data)
        out = bytearray()
        while True:
            if p.s_raw:
                if not buf:
                    break
                out += buf[:1]
                del buf[:1]
                p.s_raw -= 1
                continue
            if len(buf) < 5:
                break
            n = 1 + struct.unpack("!I", buf[1:5])[0]
            if len(buf) < n:
                break
            msg = bytes(buf[:n])
            del buf[:n]
            if not p.swallow:
                out += msg
                continue
            if msg[:1] == b"C":
                p.tag = msg[5:-1].decode(errors="replace")
            elif msg[:1] == b"E":
                p.tag = "error"
            elif msg[:1] == b"Z":  # the server is done with the COMMIT: cut the node off
                self.swallowed[p.tag] = self.swallowed.get(p.tag, 0) + 1
                if out:
                    self._send(p, p.c, out)
                return self._kill(p)
        if out:
            self._send(p, p.c, out)


if __name__ == "__main__":  # a manual check: python3 tests/pgproxy.py PGPORT
    import sys
    px = PgProxy(int(sys.argv[1]))
    print("listening on", px.port, flush=True)
    while True:
        time.sleep(60)
