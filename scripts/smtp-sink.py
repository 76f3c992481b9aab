#!/usr/bin/python3
"""An SMTP server for driftwatch's email tests (Debian python3-aiosmtpd 1.4.3; run it with
/usr/bin/python3, which sees Debian's packages).

Every accepted message is written to OUT/<n>.json with its envelope, its text, whether the
connection was encrypted and which user authenticated:
    {"from": ..., "to": [...], "data": "...", "tls": true, "tls_version": "TLSv1.3", "user": "driftwatch"}

Modes:
    plain     no TLS, no AUTH
    starttls  STARTTLS required before MAIL; AUTH PLAIN/LOGIN required (after STARTTLS)
    tls       implicit TLS from the first byte; AUTH PLAIN/LOGIN required

    /usr/bin/python3 scripts/smtp-sink.py --port 2525 --mode starttls \
        --cert server.pem --key server.key --user driftwatch --password secret --out DIR

Prints "ready <port>" once it accepts connections; stops on SIGTERM or SIGINT.
"""

import argparse
import json
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out):
        self.out = out
        self.count = len([f for f in os.listdir(out) if f.endswith(".json")])
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            user = session.auth_data.login.decode("utf-8", "replace")
        record = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": ssl_object is not None,
            "tls_version": ssl_object.version() if ssl_object is not None else None,
            "user": user,
        }
        with self.lock:
            self.count += 1
            path = os.path.join(self.out, "%06d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        ):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    return check


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user", default="driftwatch")
    p.add_argument("--password", default="secret")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)

    kwargs = {}
    if a.mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
        kwargs.update(authenticator=authenticator(a.user, a.password), auth_required=True)
        if a.mode == "starttls":
            kwargs.update(tls_context=context, require_starttls=True, auth_require_tls=True)
        else:
            # aiosmtpd 1.4.3 offers no AUTH on an implicit-TLS listener with auth_require_tls.
            kwargs.update(ssl_context=context, auth_require_tls=False)
    controller = Controller(Handler(a.out), hostname="127.0.0.1", port=a.port, **kwargs)
    controller.start()
    print("ready %d" % a.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
