"""A minimal etcd v3 client over etcd's JSON gateway (/v3/kv/...), standard library only.

Used on nodes by the lab's udp daemon and by netbench to write flannel's layout; etcdctl stays the
tool of choice for people, this is for code that must not depend on anything but python3.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # etcd's range_end for "every key with this prefix"
    return base64.b64encode(bytes(raw)).decode()


class EtcdError(Exception):
    pass


class Etcd:
    def __init__(self, endpoints: list[str] | str, timeout: float = 3.0) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.timeout = timeout

    def _post(self, path: str, body: dict) -> dict:
        errors = []
        for endpoint in self.endpoints:
            request = urllib.request.Request(
                endpoint.rstrip("/") + path,
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"{}")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{endpoint}: {exc}")
        raise EtcdError("; ".join(errors))

    def put(self, key: str, value: str, lease: str | None = None) -> None:
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        self._post("/v3/kv/put", body)

    def put_v2(self, key: str, value: str, ttl_s: int | None = None) -> None:
        """The same key in etcd's v2 store, where flannel <= 0.17 (the seed's) reads its config."""
        form = {"value": value, **({"ttl": str(ttl_s)} if ttl_s else {})}
        errors = []
        for endpoint in self.endpoints:
            request = urllib.request.Request(endpoint.rstrip("/") + "/v2/keys" + key, method="PUT",
                                             data=urllib.parse.urlencode(form).encode())
            try:
                with urllib.request.urlopen(request, timeout=self.timeout):
                    return
            except (urllib.error.URLError, OSError) as exc:
                errors.append(f"{endpoint}: {exc}")
        raise EtcdError("; ".join(errors))

    def get(self, key: str) -> str | None:
        kvs = self._post("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None

    def get_prefix(self, prefix: str) -> dict[str, str]:
        reply = self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return {
            base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
            for kv in reply.get("kvs", [])
        }

    def delete_prefix(self, prefix: str) -> int:
        reply = self._post("/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return int(reply.get("deleted", 0))

    def grant(self, ttl_s: int) -> str:
        return str(self._post("/v3/lease/grant", {"TTL": ttl_s})["ID"])

    def lease_ttl(self, lease_id: str) -> int:
        return int(self._post("/v3/lease/timetolive", {"ID": lease_id}).get("TTL", -1))

    def watch_prefix(self, prefix: str):
        """Yield once when the watch is in place, then once per batch of changes under `prefix`.

        The gateway streams one JSON object per line; the connection stays open, so there is no
        polling traffic on the wire between changes (what flanneld does with its etcd watch).
        """
        body = {"create_request": {"key": _b64(prefix), "range_end": _prefix_end(prefix)}}
        request = urllib.request.Request(
            self.endpoints[0].rstrip("/") + "/v3/watch",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=None) as stream:
                for line in stream:
                    result = json.loads(line).get("result", {})
                    if result.get("created") or result.get("events"):
                        yield result
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise EtcdError(f"watch {prefix}: {exc}") from exc
        raise EtcdError(f"watch {prefix}: stream closed")

    def healthy(self) -> bool:
        try:
            self._post("/v3/maintenance/status", {})
            return True
        except EtcdError:
            return False
