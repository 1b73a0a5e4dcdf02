"""Replicas of one model behind :class:`~cerbero_hf.stages.generate.backends.endpoint.EndpointBackend`: which one
takes the next attempt, and which are paused.

``url`` may list several servers of one model (``"http://a:8080,http://b:8080"``). Each attempt goes to the
replica with the fewest requests in flight (ties: the one sent fewest), the backend's ``concurrency`` bounding all
of them together. A retry goes to a replica this request has not tried yet when one is up, so a replica answering
5xx or timing out does not keep its requests. A replica that refuses a connection, or fails
:data:`REPLICA_FAILURES` attempts in a row in a way a retry could mend (5xx, 408, 429, timeouts, dropped
connections, malformed answers), is paused: it gets no new request for :data:`REPLICA_PAUSE_S` seconds, doubled
each time it is paused again without having answered in between, up to :data:`REPLICA_PAUSE_MAX_S`. When its pause
ends it gets one trial request at a time: an answer puts it back in the rotation, a failure pauses it again. Each
pause that grows, and each return, is one warning on the ``cerbero_hf.generate`` logger; :meth:`Replicas.describe`
counts the pauses (``replica_pauses``). A replica is only paused while another is in the run; when every replica is
paused, requests go to all of them again. A replica where nothing answers the start-up probe is left out of the run
(:meth:`Replicas.skip`, one warning; ``replicas_skipped``) as long as another answers.
"""

from __future__ import annotations

import logging
import time

REPLICA_FAILURES = 3  # attempts failing in a row (transient faults) that pause a replica; a refused connection: 1
REPLICA_PAUSE_S = 10.0  # the first pause of a replica, in seconds (while another is up)
REPLICA_PAUSE_MAX_S = 300.0  # a replica paused again without answering in between waits twice as long, up to this

log = logging.getLogger("cerbero_hf.generate")


def split_urls(url) -> list[str]:
    """The replica URLs of ``url``: a comma-separated string or a list (each stripped, no trailing ``/``)."""
    parts = url.split(",") if isinstance(url, str) else list(url)
    return [u.strip().rstrip("/") for u in parts]


def refused(err: BaseException) -> bool:
    """A connection that could not be opened (refused, unreachable), anywhere in the error chain."""
    import httpx2

    from cerbero_hf.retry import _chain

    return any(isinstance(e, (httpx2.ConnectError, ConnectionRefusedError)) for e in _chain(err))


class Replicas:
    """The replicas of one run and their health (see the module docstring).

    ``sent_to`` (attempts per URL), ``pauses`` (pauses per URL) and ``skipped`` (URLs left out) are the run's
    record; the health (in flight, paused until, failures in a row, last pause) is this process's own: a pickled
    copy (a Ray worker) starts it afresh.
    """

    def __init__(self, urls: list[str], failures: int = REPLICA_FAILURES, pause: float = REPLICA_PAUSE_S,
                 pause_max: float = REPLICA_PAUSE_MAX_S):
        self.urls = list(urls)
        self.failures, self.pause, self.pause_max = failures, pause, max(pause, pause_max)
        self.sent_to = dict.fromkeys(self.urls, 0)
        self.pauses = dict.fromkeys(self.urls, 0)
        self.skipped: list[str] = []
        self.live = list(range(len(self.urls)))  # the replicas in the run (all but the skipped ones)
        self._reset()

    def _reset(self) -> None:
        n = len(self.urls)
        self.inflight, self.paused, self.streak, self.pause_s = [0] * n, [0.0] * n, [0] * n, [0.0] * n

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        n = len(self.urls)
        state.update(inflight=[0] * n, paused=[0.0] * n, streak=[0] * n, pause_s=[0.0] * n)
        return state

    def describe(self) -> dict:
        """``replicas_skipped`` and ``replica_pauses`` when there are any (for the card)."""
        out: dict = {}
        if self.skipped:
            out["replicas_skipped"] = list(self.skipped)
        if any(self.pauses.values()):
            out["replica_pauses"] = {url: n for url, n in self.pauses.items() if n}
        return out

    def pick(self, tried=()) -> int:
        """The replica for the next attempt of a request that already went to ``tried``: fewest in flight, then
        fewest sent, among the replicas that are up (not paused; one on trial only while it has nothing in
        flight) and not tried; else among those up; when every replica is paused, among all of the run."""
        now = time.monotonic()
        up = [i for i in self.live if self.paused[i] <= now and (not self.pause_s[i] or not self.inflight[i])]
        pool = [i for i in up if i not in tried] or up or [i for i in self.live if i not in tried] or self.live
        return min(pool, key=lambda i: (self.inflight[i], self.sent_to[self.urls[i]]))

    def sending(self, i: int) -> None:
        self.inflight[i] += 1
        self.sent_to[self.urls[i]] += 1

    def returned(self, i: int) -> None:
        self.inflight[i] -= 1

    def answered(self, i: int) -> None:
        self.streak[i] = 0
        if self.pause_s[i]:
            self.pause_s[i] = 0.0
            log.warning("endpoint replica %s answers again: back in the rotation", self.urls[i])

    def failed(self, i: int, err: BaseException, verdict) -> None:
        """Count a failed attempt against replica ``i`` (``verdict``: the retry policy's); pause it when it keeps
        failing."""
        if len(self.live) < 2 or not verdict.retry:  # nowhere else to go, or the request's fault, not the server's
            return
        self.streak[i] += 1
        now = time.monotonic()
        if self.paused[i] > now:  # already paused (this attempt was in flight): one pause per episode
            return
        was_refused = refused(err)
        if not (was_refused or self.pause_s[i] or self.streak[i] >= self.failures):
            return
        length = min(self.pause_max, self.pause_s[i] * 2) if self.pause_s[i] else self.pause
        grew = length != self.pause_s[i]
        self.pause_s[i], self.paused[i] = length, now + length
        self.pauses[self.urls[i]] += 1
        if grew:  # at the longest pause, further ones are counted (describe), not logged
            why = "it refused a connection" if was_refused else f"{self.streak[i]} failures in a row"
            others = any(self.paused[j] <= now for j in self.live if j != i)
            where = ("its requests go to the other replicas" if others
                     else "every replica of the run is paused, so requests go to all of them")
            log.warning("endpoint replica %s paused for %g s after %s (%s): %s", self.urls[i], length, why,
                        verdict.reason, where)

    def probe(self, retrying, timeout: float) -> None:
        """GET each replica's URL (any HTTP status counts) through ``retrying(once)`` (the backend's retry policy);
        skip the silent ones while another answers (:meth:`skip`). Raises ``GenerationError`` (``url``: the
        replica, or every replica joined by ``", "``) when none answers, or at once for a URL no request can reach.
        """
        import httpx2

        from cerbero_hf.retry import classify
        from cerbero_hf.stages.generate.backends.base import GenerationError

        dead: dict = {}
        for url in self.urls:
            tries = 0

            def once(url=url) -> None:
                nonlocal tries
                tries += 1
                with httpx2.Client(timeout=timeout) as client:
                    client.get(url)

            try:
                retrying(once)
            except Exception as err:  # noqa: BLE001 - judged by the retry policy
                verdict = classify(err)
                error = GenerationError(verdict.reason, tries, transient=verdict.retry)
                error.url = url
                if not verdict.retry:  # not a server that is down: a URL no request can be sent to
                    raise error from None
                dead[url] = error
        if len(dead) == len(self.urls):
            error = next(iter(dead.values()))
            error.url = ", ".join(dead)
            raise error from None
        self.skip(dead)

    def skip(self, dead: dict) -> None:
        """Leave the replicas of ``dead`` (URL -> error) out of the run, one warning each."""
        self.skipped = list(dead)
        self.live = [i for i, url in enumerate(self.urls) if url not in dead]
        live = ", ".join(self.urls[i] for i in self.live)
        for url, error in dead.items():
            log.warning("nothing answers at endpoint replica %s (%s): skipped for this run, generating with %s",
                        url, error, live)
