"""The emulator's S3 (moto's S3 backend behind the one endpoint), through real aioboto3 clients."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
from aiobotocore.config import AioConfig

from a2ibatch.emulator import EmulatorConfig, serve
from test_emulator import A2I, client, error_of, get, post, start_args

pytestmark = pytest.mark.anyio

EU = "eu-west-1"
CORS = {
    "CORSRules": [
        {
            "AllowedMethods": ["GET"],
            "AllowedOrigins": ["https://workers.example"],
            "AllowedHeaders": ["*"],
            "MaxAgeSeconds": 3000,
        }
    ]
}


class _LocalhostResolver(aiohttp.abc.AbstractResolver):
    """Resolves ``*.localhost`` to 127.0.0.1, as systemd-resolved does (glibc does not)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@asynccontextmanager
async def s3_client(
    url: str, style: str | None = None, region: str = "us-east-1"
) -> AsyncIterator[Any]:
    """An S3 client of the emulator: the default config, or one addressing style."""
    if style is None:
        async with client(url, "s3", region=region) as s3:
            yield s3
        return
    config = AioConfig(
        s3={"addressing_style": style},
        retries={"total_max_attempts": 1, "mode": "standard"},
        connector_args={"resolver": _LocalhostResolver()} if style == "virtual" else None,
    )
    import aioboto3

    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    endpoint = url.replace("127.0.0.1", "localhost") if style == "virtual" else url
    async with session.client("s3", endpoint_url=endpoint, config=config) as s3:
        yield s3


async def body(s3: Any, bucket: str, key: str) -> bytes:
    answer = await s3.get_object(Bucket=bucket, Key=key)
    data: bytes = await answer["Body"].read()
    return data


# -- addressing -------------------------------------------------------------------------------


@pytest.mark.parametrize("style", [None, "path", "virtual"], ids=["default", "path", "virtual"])
async def test_bucket_and_object_calls_in_each_addressing_style(
    emulator: Any, style: str | None
) -> None:
    sent: list[str] = []
    async with s3_client(emulator.url, style) as s3:
        s3.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))
        await s3.create_bucket(Bucket="style-bucket")
        await s3.head_bucket(Bucket="style-bucket")
        await s3.put_object(Bucket="style-bucket", Key="dir/a.json", Body=b'{"a": 1}')
        assert await body(s3, "style-bucket", "dir/a.json") == b'{"a": 1}'
        listed = await s3.list_objects_v2(Bucket="style-bucket", Prefix="dir/")
        assert [o["Key"] for o in listed["Contents"]] == ["dir/a.json"]
        buckets = await s3.list_buckets()
        assert [b["Name"] for b in buckets["Buckets"]] == ["style-bucket"]
        await s3.delete_object(Bucket="style-bucket", Key="dir/a.json")
        await s3.delete_bucket(Bucket="style-bucket")
    virtual = "//style-bucket.localhost:" in sent[0]
    assert virtual is (style == "virtual"), sent[0]
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["s3_requests"] == len(sent) and stats["calls"] == {}


# -- buckets, regions and CORS ----------------------------------------------------------------


async def test_buckets_have_regions(emulator: Any) -> None:
    async with s3_client(emulator.url) as east, s3_client(emulator.url, region=EU) as eu:
        await east.create_bucket(Bucket="east-bucket")
        await eu.create_bucket(
            Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": EU}
        )
        assert (await east.get_bucket_location(Bucket="east-bucket"))["LocationConstraint"] is None
        assert (await east.get_bucket_location(Bucket="eu-bucket"))["LocationConstraint"] == EU
        with pytest.raises(
            east.exceptions.ClientError
        ) as caught:  # no constraint outside us-east-1
            await eu.create_bucket(Bucket="eu-bucket-2")
        assert error_of(caught.value)[0] == "IllegalLocationConstraintException"
        await east.create_bucket(Bucket="east-bucket")  # again: us-east-1 says OK, as S3 does
        with pytest.raises(eu.exceptions.BucketAlreadyOwnedByYou):
            await eu.create_bucket(
                Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": EU}
            )
        with pytest.raises(east.exceptions.ClientError) as caught:
            await east.head_bucket(Bucket="no-such-bucket")
        assert error_of(caught.value) == ("404", 404)


async def test_bucket_cors(emulator: Any) -> None:
    async with s3_client(emulator.url) as s3:
        await s3.create_bucket(Bucket="cors-bucket")
        with pytest.raises(s3.exceptions.ClientError) as caught:
            await s3.get_bucket_cors(Bucket="cors-bucket")
        assert error_of(caught.value) == ("NoSuchCORSConfiguration", 404)
        await s3.put_bucket_cors(Bucket="cors-bucket", CORSConfiguration=CORS)
        rules = (await s3.get_bucket_cors(Bucket="cors-bucket"))["CORSRules"]
        assert rules[0]["AllowedOrigins"] == ["https://workers.example"]
        assert rules[0]["AllowedMethods"] == ["GET"] and rules[0]["MaxAgeSeconds"] == 3000
        await s3.delete_bucket_cors(Bucket="cors-bucket")
        with pytest.raises(s3.exceptions.ClientError) as caught:
            await s3.get_bucket_cors(Bucket="cors-bucket")
        assert error_of(caught.value)[0] == "NoSuchCORSConfiguration"


# -- objects ----------------------------------------------------------------------------------


async def test_objects_and_listing_with_prefixes_and_continuation(emulator: Any) -> None:
    keys = [f"manifests/2026/{i:02d}.jsonl" for i in range(7)] + ["other/x.json", "top.json"]
    async with s3_client(emulator.url) as s3:
        await s3.create_bucket(Bucket="objects")
        for key in keys:
            await s3.put_object(
                Bucket="objects", Key=key, Body=key.encode(), Metadata={"origin": "test"}
            )
        head = await s3.head_object(Bucket="objects", Key="top.json")
        assert head["ContentLength"] == len(b"top.json") and head["Metadata"] == {"origin": "test"}
        with pytest.raises(s3.exceptions.NoSuchKey):
            await s3.get_object(Bucket="objects", Key="missing.json")
        ranged = await s3.get_object(Bucket="objects", Key="top.json", Range="bytes=0-2")
        assert await ranged["Body"].read() == b"top"

        pages, token = [], None
        while True:
            kwargs: dict[str, Any] = {"Bucket": "objects", "Prefix": "manifests/", "MaxKeys": 3}
            if token:
                kwargs["ContinuationToken"] = token
            page = await s3.list_objects_v2(**kwargs)
            pages.append([o["Key"] for o in page.get("Contents", [])])
            if not page["IsTruncated"]:
                break
            token = page["NextContinuationToken"]
        assert pages == [keys[0:3], keys[3:6], keys[6:7]]
        folders = await s3.list_objects_v2(Bucket="objects", Delimiter="/")
        assert [p["Prefix"] for p in folders["CommonPrefixes"]] == ["manifests/", "other/"]
        assert [o["Key"] for o in folders["Contents"]] == ["top.json"]
        after = await s3.list_objects_v2(Bucket="objects", StartAfter="manifests/2026/05.jsonl")
        assert [o["Key"] for o in after["Contents"]] == keys[6:]
        await s3.delete_objects(
            Bucket="objects", Delete={"Objects": [{"Key": k} for k in keys[:7]]}
        )
        remaining = await s3.list_objects_v2(Bucket="objects")
        assert [o["Key"] for o in remaining["Contents"]] == keys[7:]


async def test_conditional_writes_answer_412_as_s3_does(emulator: Any) -> None:
    async with s3_client(emulator.url) as s3:
        await s3.create_bucket(Bucket="conditional")
        first = await s3.put_object(Bucket="conditional", Key="k", Body=b"1", IfNoneMatch="*")
        with pytest.raises(s3.exceptions.ClientError) as caught:
            await s3.put_object(Bucket="conditional", Key="k", Body=b"2", IfNoneMatch="*")
        assert error_of(caught.value) == ("PreconditionFailed", 412)
        with pytest.raises(s3.exceptions.ClientError) as caught:
            await s3.put_object(Bucket="conditional", Key="k", Body=b"3", IfMatch='"0000"')
        assert error_of(caught.value) == ("PreconditionFailed", 412)
        second = await s3.put_object(
            Bucket="conditional", Key="k", Body=b"4", IfMatch=first["ETag"]
        )
        assert second["ETag"] != first["ETag"]
        assert await body(s3, "conditional", "k") == b"4"
        with pytest.raises(s3.exceptions.ClientError) as caught:
            await s3.put_object(Bucket="conditional", Key="nope", Body=b"5", IfMatch=first["ETag"])
        assert error_of(caught.value)[1] == 404

        # Many writers race to create one key: exactly one wins.
        async def create(n: int) -> bool:
            try:
                await s3.put_object(
                    Bucket="conditional", Key="race", Body=b"%d" % n, IfNoneMatch="*"
                )
            except s3.exceptions.ClientError as exc:
                assert error_of(exc) == ("PreconditionFailed", 412)
                return False
            return True

        wins = await asyncio.gather(*(create(n) for n in range(12)))
        assert wins.count(True) == 1
        assert await body(s3, "conditional", "race") == b"%d" % wins.index(True)


@pytest.mark.parametrize("signature", [None, "s3v4"], ids=["default", "sigv4"])
async def test_a_presigned_url_reads_the_object(emulator: Any, signature: str | None) -> None:
    async with s3_client(emulator.url) as s3:
        await s3.create_bucket(Bucket="presigned")
        await s3.put_object(Bucket="presigned", Key="doc.txt", Body=b"signed in the URL")
    async with client(emulator.url, "s3", signature_version=signature) as signer:
        url = await signer.generate_presigned_url(
            "get_object", Params={"Bucket": "presigned", "Key": "doc.txt"}, ExpiresIn=60
        )
    assert ("X-Amz-Credential" in url) is (signature == "s3v4")
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert await response.read() == b"signed in the URL"


# -- one S3 per emulator ----------------------------------------------------------------------


async def test_each_emulator_has_its_own_buckets(emulator: Any, s3: Any) -> None:
    """Same bucket name in two emulators and in the test session's moto server: no clash."""
    await s3.create_bucket(Bucket="everyones-bucket")  # the conftest moto server, same process
    await s3.put_object(Bucket="everyones-bucket", Key="k", Body=b"moto server")
    async with serve(EmulatorConfig()) as other:
        for url, text in ((emulator.url, b"first"), (other.url, b"second")):
            async with s3_client(url) as mine:
                await mine.create_bucket(Bucket="everyones-bucket")
                await mine.put_object(Bucket="everyones-bucket", Key="k", Body=text)
        for url, text in ((emulator.url, b"first"), (other.url, b"second")):
            async with s3_client(url) as mine:
                assert await body(mine, "everyones-bucket", "k") == text
                names = [b["Name"] for b in (await mine.list_buckets())["Buckets"]]
                assert names == ["everyones-bucket"]
    assert await body(s3, "everyones-bucket", "k") == b"moto server"
    async with s3_client(emulator.url) as mine:  # the other emulator's S3 is gone with it
        assert await body(mine, "everyones-bucket", "k") == b"first"


async def test_reset_forgets_buckets(emulator: Any) -> None:
    async with s3_client(emulator.url) as s3:
        await s3.create_bucket(Bucket="short-lived")
        status, _ = await post(emulator.url, "/_emulator/reset", {})
        assert status == 200
        assert (await s3.list_buckets())["Buckets"] == []
        await s3.create_bucket(Bucket="short-lived")  # the name is free again


@pytest.mark.parametrize("emulator", [{"s3": False}], indirect=True)
async def test_s3_can_be_turned_off(emulator: Any) -> None:
    async with s3_client(emulator.url) as s3, client(emulator.url, A2I) as a2i:
        with pytest.raises(s3.exceptions.ClientError) as caught:
            await s3.list_buckets()
        assert error_of(caught.value) == ("NotImplemented", 501)
        assert "--no-s3" in caught.value.response["Error"]["Message"]
        await a2i.start_human_loop(**start_args("still-served"))


async def test_without_moto_s3_says_what_to_install() -> None:
    """A child process where moto cannot be imported: S3 explains, the rest still works."""
    code = (
        "import sys; sys.modules['moto'] = None\n"
        "from a2ibatch.emulator._cli import main\n"
        "sys.exit(main(['--port', '0']))\n"
    )
    async with await anyio.open_process([sys.executable, "-c", code]) as process:
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive(1)
        url = line.decode().strip().removeprefix("listening on ")
        try:
            async with s3_client(url) as s3, client(url, A2I) as a2i:
                with pytest.raises(s3.exceptions.ClientError) as caught:
                    await s3.create_bucket(Bucket="needs-moto")
                assert error_of(caught.value) == ("NotImplemented", 501)
                assert "a2ibatch[emulator]" in caught.value.response["Error"]["Message"]
                await a2i.start_human_loop(**start_args("no-s3-needed"))
        finally:
            process.terminate()
            with anyio.fail_after(10):
                await process.wait()
