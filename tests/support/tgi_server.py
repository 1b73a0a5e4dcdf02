"""A TGI-protocol test server over a real tiny transformers model, with injectable faults.

Routes: ``GET /health``, ``GET /info``, ``GET /v1/models``, ``POST /`` (list answer, what
``AsyncInferenceClient.text_generation`` sends), ``POST /generate`` (object answer) and
``POST /v1/chat/completions``. Generation runs ``model.generate`` (sampling, ``stop_strings``) under a
lock; answers carry TGI ``details`` (``finish_reason``, ``generated_tokens``) or OpenAI ``usage``.

Faults: ``server.faults`` is a list consumed one per generation request, front first; each entry is
``"ok"``, an HTTP status such as ``"500"``, ``"503"`` or ``"400"``, ``"429"`` (with ``Retry-After: 0``),
``"delay:<s>"`` (sleep ``s`` seconds, then answer normally), ``"gate:<n>"`` (answer once ``n`` requests
are in flight, 20 s at most), ``"timeout"`` (sleep
``server.slow_s`` before answering), ``"reset"`` (close the connection without an answer),
``"malformed"`` (200 with invalid JSON), ``"empty"`` (200 with an empty generated text) or
``"text:<s>"`` (200 with ``<s>`` as the generated text). ``server.fault_fn(n)`` may instead return a
fault for request number ``n``; ``server.text_fn(body)`` may return the text to answer a request (its JSON
body) instead of generating one (``None``: no say). ``server.log`` records every generation request (route, fault,
Authorization header); ``server.max_inflight`` is the most requests handled at once.

Run standalone: ``python tests/support/tgi_server.py MODEL_DIR --port 8080``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TGIServer:
    def __init__(self, model_dir: str, host: str = "127.0.0.1", port: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        self.model_dir = str(model_dir)
        self.tok = AutoTokenizer.from_pretrained(self.model_dir)
        self.lm = AutoModelForCausalLM.from_pretrained(self.model_dir).eval()
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)  # woken whenever a request comes in
        self.faults: list[str] = []
        self.fault_fn = None
        self.text_fn = None
        self.slow_s = 3.0
        self.log: list[dict] = []
        self.inflight = self.max_inflight = 0
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # injected resets are expected
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = None

    def start(self) -> "TGIServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self.lock:
            self.faults, self.fault_fn, self.text_fn, self.log = [], None, None, []
            self.inflight = self.max_inflight = 0

    def next_fault(self, route: str, auth: str | None = None, body: dict | None = None) -> str:
        with self.lock:
            n = len(self.log)
            fault = self.fault_fn(n) if self.fault_fn else (self.faults.pop(0) if self.faults else "ok")
            text = self.text_fn(body or {}) if self.text_fn and fault == "ok" else None
            fault = fault if text is None else f"text:{text}"
            self.log.append({"route": route, "fault": fault, "auth": auth})
            return fault

    def generate(self, prompt: str, params: dict) -> dict:
        import torch

        enc = self.tok(prompt, return_tensors="pt", add_special_tokens=False)
        max_new = int(params.get("max_new_tokens") or 20)
        temp = float(params.get("temperature") or 0)
        kwargs = {"max_new_tokens": max_new, "pad_token_id": self.tok.pad_token_id, "do_sample": temp > 0}
        if temp > 0:
            kwargs.update(temperature=temp, top_p=float(params.get("top_p") or 1.0))
        if params.get("stop"):
            kwargs.update(stop_strings=list(params["stop"]), tokenizer=self.tok)
        with self.lock:
            if params.get("seed") is not None:
                torch.manual_seed(int(params["seed"]))
            with torch.no_grad():
                out = self.lm.generate(**enc, **kwargs)
        gen = out[0, enc["input_ids"].shape[1]:].tolist()
        text = self.tok.decode(gen, skip_special_tokens=True)
        hit = [text.find(s) for s in params.get("stop") or [] if s in text]
        ended = bool(hit) or (gen and gen[-1] == self.tok.eos_token_id) or len(gen) < max_new
        reason = "stop_sequence" if hit else ("eos_token" if ended else "length")
        return {"text": text, "finish_reason": reason, "tokens_in": enc["input_ids"].shape[1],
                "tokens_out": len(gen)}


def _handler(server: TGIServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body, headers: dict | None = None) -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            if self.path == "/health":
                return self._send(200, {"status": "ok"})
            if self.path == "/info":
                return self._send(200, {"model_id": server.model_dir, "model_dtype": "float32",
                                        "max_input_tokens": 1024, "max_total_tokens": 2048, "version": "test"})
            if self.path == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": server.model_dir, "object": "model"}]})
            return self._send(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path not in ("/", "/generate", "/v1/chat/completions"):
                return self._send(404, {"error": "not found"})
            fault = server.next_fault(self.path, self.headers.get("Authorization"), body)
            with server.lock:
                server.inflight += 1
                server.max_inflight = max(server.max_inflight, server.inflight)
                server.arrived.notify_all()
            try:
                return self._answer(body, fault)
            finally:
                with server.lock:
                    server.inflight -= 1

        def _answer(self, body: dict, fault: str):
            if fault.isdigit() and fault != "429":
                return self._send(int(fault), {"error": "injected", "error_type": "overloaded"})
            if fault == "429":
                return self._send(429, {"error": "rate limited"}, {"Retry-After": "0"})
            if fault == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return None
            if fault == "timeout":
                time.sleep(server.slow_s)
            if fault.startswith("delay:"):
                time.sleep(float(fault[6:]))
            if fault.startswith("gate:"):  # hold the answer until this many requests are in flight (20 s at most)
                with server.arrived:
                    server.arrived.wait_for(lambda: server.inflight >= int(fault[5:]), timeout=20)
            if fault == "malformed":
                return self._send(200, b'{"generated_text": "unterminated')
            if self.path == "/v1/chat/completions":
                return self._chat(body, fault)
            params = body.get("parameters") or {}
            g = {"text": "", "finish_reason": "eos_token", "tokens_in": 0, "tokens_out": 0}
            if fault == "empty":
                pass
            elif fault.startswith("text:"):
                g.update(text=fault[5:], tokens_out=1)
            else:
                g = server.generate(body.get("inputs", ""), params)
            out = {"generated_text": g["text"]}
            if params.get("details"):
                out["details"] = {"finish_reason": g["finish_reason"], "generated_tokens": g["tokens_out"],
                                  "seed": params.get("seed"), "prefill": [], "tokens": []}
            # like TGI's router (server.rs generate_internal): token counts in headers, prefill only on request
            tokens = {"x-prompt-tokens": str(g["tokens_in"]), "x-generated-tokens": str(g["tokens_out"])}
            return self._send(200, [out] if self.path == "/" else out, tokens)

        def _chat(self, body: dict, fault: str):
            if fault == "empty":
                g = {"text": "", "finish_reason": "stop", "tokens_in": 0, "tokens_out": 0}
            elif fault.startswith("text:"):
                g = {"text": fault[5:], "finish_reason": "stop", "tokens_in": 0, "tokens_out": 1}
            else:
                prompt = server.tok.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
                g = server.generate(prompt, {"max_new_tokens": body.get("max_tokens"), "stop": body.get("stop"),
                                             "temperature": body.get("temperature"), "top_p": body.get("top_p"),
                                             "seed": body.get("seed")})
            reason = "length" if g["finish_reason"] == "length" else "stop"
            return self._send(200, {
                "id": "cmpl-test", "object": "chat.completion", "created": int(time.time()), "model": server.model_dir,
                "system_fingerprint": "test",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": g["text"]},
                             "logprobs": None, "finish_reason": reason}],
                "usage": {"prompt_tokens": g["tokens_in"], "completion_tokens": g["tokens_out"],
                          "total_tokens": g["tokens_in"] + g["tokens_out"]}})

    return Handler


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    a = ap.parse_args()
    s = TGIServer(a.model_dir, a.host, a.port)
    print(s.url, flush=True)
    s.httpd.serve_forever()
