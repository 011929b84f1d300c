"""A Node program driven over its stdin and stdout, one JSON object a line
each way (integration/js/*.mjs): the tests of the JavaScript client and of
the demo page use it to run JavaScript beside the cluster the harness starts."""

import asyncio
import json
import os
import shutil

NODE = shutil.which("node") or "/usr/bin/node"
JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")


class JsDriver:
    def __init__(self):
        self.events = []  # every line the program printed, parsed
        self.stderr = b""
        self.proc = None
        self._changed = None
        self._task = None

    async def start(self, script, *args, env=None, node_flags=("--experimental-websocket",)):
        self._changed = asyncio.Condition()
        self.proc = await asyncio.create_subprocess_exec(
            NODE, *node_flags, os.path.join(JS_DIR, script), *args, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        self._task = asyncio.create_task(self._read())
        self._err_task = asyncio.create_task(self._read_err())
        return self

    async def _read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            async with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()
        async with self._changed:
            self.events.append({"ev": "exit"})
            self._changed.notify_all()

    async def _read_err(self):
        self.stderr = await self.proc.stderr.read()

    def send(self, obj):
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    async def wait_for(self, pred, timeout=20.0, after=0):
        """The first event at index >= after for which pred is true; returns (index, event)."""
        async def find():
            async with self._changed:
                while True:
                    for i in range(after, len(self.events)):
                        if pred(self.events[i]):
                            return i, self.events[i]
                    if self.events and self.events[-1].get("ev") == "exit":
                        raise AssertionError(f"driver exited; stderr: {self.stderr.decode(errors='replace')}")
                    await self._changed.wait()
        try:
            return await asyncio.wait_for(find(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no such event within {timeout}s; events: {self.events[after:]}\n"
                                 f"stderr: {self.stderr.decode(errors='replace')}")

    async def request(self, obj, timeout=60.0):
        """Send a command that answers with one {"ev":"reply",...} line; return it."""
        after = len(self.events)
        self.send(obj)
        _, ev = await self.wait_for(lambda e: e.get("ev") == "reply", timeout, after)
        if ev.get("error"):
            raise AssertionError(f"{obj['cmd']} failed: {ev['error']}")
        return ev

    async def stop(self):
        if self.proc and self.proc.returncode is None:
            try:
                self.proc.stdin.close()
                await asyncio.wait_for(self.proc.wait(), 10)
            except (asyncio.TimeoutError, BrokenPipeError, ConnectionResetError):
                self.proc.kill()
                await self.proc.wait()
        if self._task:
            await asyncio.gather(self._task, self._err_task, return_exceptions=True)
