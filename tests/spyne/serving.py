"""Serving a spyne application for the e2e tests: on 127.0.0.1 only, threaded, quiet,
stopping cleanly on SIGTERM or SIGINT, and announcing the port it bound.
"""
import logging
import signal
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from spyne.server.wsgi import WsgiApplication


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    # One stalled client (e.g. a test that aborts mid-request) must not block
    # every other test talking to this server; daemon threads don't delay exit.
    daemon_threads = True
    # socketserver's listen backlog is 5: a burst of connections from a gateway (queued
    # deliveries starting at once) overflowed it, and the dropped SYNs became connect
    # timeouts that opened the circuit breaker. ERP web servers accept a few hundred.
    request_queue_size = 256


class QuietHandler(WSGIRequestHandler):
    # Per-request access lines only add noise to cargo test output.
    def log_message(self, *args):
        pass


def serve(application, port):
    """Serves `application` on 127.0.0.1:`port` (0: any free port) until signalled."""
    # spyne logs client Faults with tracebacks; keep stderr for unexpected
    # errors only.
    logging.basicConfig(level=logging.CRITICAL)

    server = make_server("127.0.0.1", port, WsgiApplication(application),
                         server_class=ThreadingWSGIServer,
                         handler_class=QuietHandler)
    # A client hanging up mid-response (BrokenPipe/ConnectionReset) must not
    # print a traceback or take the server down; swallow it per request.
    server.handle_error = lambda request, client_address: None

    # Install both handlers explicitly: a parent that started us in the
    # background may have left SIGINT ignored (then Python never raises
    # KeyboardInterrupt), and SIGTERM has no Python handler by default.
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # Lets a harness started with --port 0 learn the real port, and marks
    # the socket as already listening (no connect-retry loop needed).
    print("LISTENING 127.0.0.1:%d" % server.server_port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
