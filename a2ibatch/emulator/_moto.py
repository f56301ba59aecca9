"""moto's S3 backend, in this process, as each emulator's own S3.

Requests are handed to the handlers moto's own server routes S3 to (`moto.s3.urls`), with a
request moto builds from a WSGI environ (`moto.core.request.Request`), in one worker thread
shared by every emulator of the process: moto is not thread-safe, and one thread also makes
each request atomic, so a conditional write (``If-None-Match: *``) is decided exactly once.
This needs only ``moto[s3]`` (no Flask), and it is about twice as fast as moto's Flask
application and three times as fast as proxying to a ThreadedMotoServer.

moto keeps its state per account id, but S3 bucket names are global across accounts
(`s3_backends.bucket_accounts`), as in AWS, and every test process may hold several
emulators and a moto server besides.  So each emulator gets

* an account id of its own (`ACCOUNT_BASE` + a counter), which `S3Store.dispatch` makes
  the account of every request it hands to moto, whatever the environment says; and
* a bucket namespace of its own: moto's global name map is replaced, once, by a mapping
  that reads and writes the namespace of the emulator whose request this thread is
  running, and moto's own (shared) map in any other thread, e.g. a ThreadedMotoServer's.

Nothing is imported from moto until the first S3 request (in the worker thread).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

#: emulator S3 accounts are ACCOUNT_BASE + 1, + 2, ... (12 digits, never a real account)
ACCOUNT_BASE: Final = 900_000_000_000
INSTALL_HINT: Final = (
    "The emulator's S3 needs moto's S3 backend: pip install 'a2ibatch[emulator]' "
    "(or moto[s3]>=5.1,<6)."
)

Owner = tuple[str, str]  # (partition, account id), as moto keeps it per bucket name
Answer = tuple[int, dict[str, str], bytes]

_current = threading.local()
_accounts = itertools.count(1)
_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


class MotoMissing(Exception):
    """moto (or its S3 backend) cannot be imported."""


def executor() -> ThreadPoolExecutor:
    """The one thread every emulator of this process runs moto in."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emulator-s3")
        return _executor


class _Namespaces(MutableMapping[str, Owner]):
    """moto's bucket-name map, read and written per emulator (see the module docstring)."""

    def __init__(self, shared: MutableMapping[str, Owner]) -> None:
        self.shared = shared

    def _map(self) -> MutableMapping[str, Owner]:
        namespace: MutableMapping[str, Owner] | None = getattr(_current, "namespace", None)
        return self.shared if namespace is None else namespace

    def __getitem__(self, name: str) -> Owner:
        return self._map()[name]

    def __setitem__(self, name: str, owner: Owner) -> None:
        self._map()[name] = owner

    def __delitem__(self, name: str) -> None:
        del self._map()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._map()))

    def __len__(self) -> int:
        return len(self._map())


class _Moto:
    """What the emulator uses of moto, imported once (in the worker thread)."""

    def __init__(self) -> None:
        try:
            from moto.core.request import Request
            from moto.s3 import urls
            from moto.s3.models import s3_backends
            from moto.s3.responses import S3Response
            from werkzeug.exceptions import HTTPException  # what moto raises for errors
        except ImportError as exc:
            raise MotoMissing(INSTALL_HINT) from exc

        class Response(S3Response):
            """moto's S3 answers, on the account of the emulator being served."""

            def get_current_account(self) -> str:
                account: str = _current.account
                return account

        self.request = Request.from_primitives
        self.http_error = HTTPException
        self.backends = s3_backends
        self.routes: list[tuple[re.Pattern[str], Callable[..., Any]]] = [
            (re.compile(path.format(base)), getattr(Response, handler.__name__))
            for base in urls.url_bases
            for path, handler in urls.url_paths.items()
        ]
        if not isinstance(s3_backends.bucket_accounts, _Namespaces):
            # moto declares a dict; any mapping does (it only gets, sets, pops and tests)
            s3_backends.bucket_accounts = _Namespaces(s3_backends.bucket_accounts)  # type: ignore[assignment]


_moto: _Moto | None = None


def _load() -> _Moto:
    global _moto
    if _moto is None:
        _moto = _Moto()
    return _moto


class S3Store:
    """One emulator's S3: its moto account and bucket namespace.

    `dispatch`, `put_objects` and `close` run in the worker thread (`executor`);
    `bucket_region` may be called from any thread.
    """

    def __init__(self) -> None:
        self.account = f"{ACCOUNT_BASE + next(_accounts):012d}"
        self.namespace: dict[str, Owner] = {}
        self.touched = False  # whether moto ever held state of this store

    def _enter(self) -> _Moto:
        self.touched = True
        moto = _load()
        _current.namespace, _current.account = self.namespace, self.account
        return moto

    @staticmethod
    def _leave() -> None:
        _current.namespace = _current.account = None

    def _backend(self, moto: _Moto) -> Any:
        return moto.backends[self.account]["aws"]

    def dispatch(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Answer:
        """One S3 request, given with an AWS URL (``https://s3.REGION.amazonaws.com/...``)."""
        moto = self._enter()
        try:
            request = moto.request(method, url, headers, body)
            path = url.split("?", 1)[0]
            for pattern, handler in moto.routes:
                if pattern.match(path):
                    try:
                        status, answer_headers, content = handler(
                            request, request.raw_url, request.headers
                        )
                    except moto.http_error as error:
                        status, content = error.code, error.get_body()
                        answer_headers = dict(error.get_headers())
                    return int(status), _text_headers(answer_headers), _bytes(content)
            return 404, {}, b""
        finally:
            self._leave()

    def put_objects(self, objects: Iterable[tuple[str, str, str, bytes]]) -> int:
        """Write (bucket, region, key, body) objects, creating a missing bucket in `region`."""
        moto = self._enter()
        written = 0
        try:
            backend = self._backend(moto)
            for bucket, region, key, body in objects:
                if bucket not in self.namespace:
                    backend.create_bucket(bucket, region)
                stored = backend.put_object(bucket, key, body)
                stored.set_metadata({"Content-Type": "application/json"})
                written += 1
            return written
        finally:
            self._leave()

    def bucket_region(self, bucket: str) -> str | None:
        """The region of a bucket of this emulator's S3 (None: it has no such bucket)."""
        if bucket not in self.namespace or _moto is None:
            return None
        found = self._backend(_moto).buckets.get(bucket)
        return None if found is None else str(found.region_name)

    def close(self) -> None:
        """Forget every bucket and object (their temporary files too)."""
        if _moto is None or self.account not in _moto.backends:
            return
        self._enter()
        try:
            self.namespace.clear()  # first: `bucket_region` (any thread) then finds nothing
            for backend in _moto.backends[self.account].values():
                for bucket in list(backend.buckets.values()):
                    for key in bucket.keys.values():
                        dispose = getattr(key, "dispose", None)
                        if dispose is not None:
                            dispose()
                    for part in bucket.multiparts.values():
                        part.dispose()
            del _moto.backends[self.account]
        finally:
            self._leave()


def _text_headers(headers: Any) -> dict[str, str]:
    return {str(name): str(value) for name, value in dict(headers).items()}


def _bytes(content: Any) -> bytes:
    if content is None:
        return b""
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    if isinstance(content, bytearray | memoryview):
        return bytes(content)
    return b"".join(part if isinstance(part, bytes) else str(part).encode() for part in content)
