"""A real PowerDNS creates the key, and its answer is lost on the way back (an HTTP proxy
in front of the API forwards the ``POST .../cryptokeys`` and then never answers, so the
client's read times out): the controller adopts the key that appeared instead of posting
again, and the zone ends up with exactly one new key."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr
from rollover.rollkit import LAB, running_lab

from core.config import ProviderConfig
from core.observation import ApiKey
from multisigner_lab import Lab
from providers.powerdns import PowerDNSProvider

pytestmark = LAB

ZONE = "lost.test."


class LosingProxy:
    """Relays API requests to ``upstream``; a POST to a cryptokeys URL is relayed, then
    its answer is held back for ``hold`` seconds and the connection closed unanswered."""

    def __init__(self, upstream: str, hold: float) -> None:
        self.posts = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("x-api-key", "content-type", "accept")}
                with httpx.Client(trust_env=False, timeout=30) as client:
                    answer = client.request(self.command, upstream + self.path,
                                            content=body, headers=headers)
                if self.command == "POST" and self.path.endswith("/cryptokeys"):
                    proxy.posts += 1
                    time.sleep(hold)  # the key exists now; the client hears nothing
                    self.close_connection = True
                    return
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", ""))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LosingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "lost-answer", providers=1, zones=[ZONE],
                     scanner=False, unbound=False) as running:
        yield running


def test_a_key_whose_creation_answer_was_lost_is_adopted_once(lab: Lab) -> None:
    p0 = lab.server("p0")
    before = {k.id for k in lab.keys("p0", ZONE)}
    with LosingProxy(p0.api_url, hold=3.0) as proxy:
        config = ProviderConfig(name="p0", type="powerdns", api_url=proxy.url,
                                api_key=SecretStr(p0.api_key), nameservers=["127.0.0.1:53"],
                                timeout="1s")

        async def run() -> ApiKey:
            provider = PowerDNSProvider(config)
            try:
                return await provider.create_key(ZONE, "zsk", "ECDSAP256SHA256", active=False,
                                                 published=True)
            finally:
                await provider.aclose()

        key = asyncio.run(run())
        assert proxy.posts == 1, "the POST was repeated after its answer was lost"
    after = lab.keys("p0", ZONE)
    new = [k for k in after if k.id not in before]
    assert len(new) == 1, f"want one new key, PowerDNS has {after}"
    assert (key.key_id, key.key.flags, key.active) == (str(new[0].id), 256, False)
    assert not new[0].active and new[0].published
