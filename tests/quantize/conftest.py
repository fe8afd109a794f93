"""A plain-mode `onboard serve` app on loopback with the real SmolLM2 GGUF (no index: fast)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def plain_server(smollm, tmp_path_factory):
    """(base url, ServerState) of a server of its own for the module: tests may change its limits."""
    from assistant.settings import Settings
    from quantize.serve import ServerState, create_app, run_in_thread

    settings = Settings(home=tmp_path_factory.mktemp("serve_plain_home"), n_threads=2, max_tokens=16)
    state = ServerState(model=smollm, model_id="smol", settings=settings, mode="plain")
    smollm.chat([{"role": "user", "content": "Say hi."}], max_tokens=2)  # warm: timings below are per token
    srv, url = run_in_thread(create_app(state))
    yield url, state
    srv.should_exit = True
