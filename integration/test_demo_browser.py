"""The demo page in a real headless Chromium (Debian's, driven by
puppeteer-core from integration/js/node_modules, which
scripts/install-deps.sh installs): it connects, shows what the page's own
form and `pushctl publish` send, rejoins a restarted pusher by itself and
shows what was published while it was away. A screenshot is kept in
PUSH_ARTIFACTS (the build folder's artifacts/ under ctest)."""

import asyncio
import json
import os
import tempfile

from demo_cluster import DemoClusterTest
from jsdriver import JS_DIR, JsDriver

ARTIFACTS = os.environ.get("PUSH_ARTIFACTS") or tempfile.gettempdir()


class DemoBrowser(DemoClusterTest):

    async def asyncSetUp(self):
        await super().asyncSetUp()
        if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "puppeteer-core")):
            self.fail("puppeteer-core is not installed: run scripts/install-deps.sh")
        self.profile = tempfile.mkdtemp(prefix="push-chromium-", dir=self.c.dir)
        self.b = await JsDriver().start("browser_driver.mjs", self.profile, node_flags=())

    async def asyncTearDown(self):
        try:
            await self.b.request({"cmd": "quit"})
        finally:
            await self.b.stop()
            await super().asyncTearDown()

    async def pushctl_publish(self, *args):
        out = await asyncio.to_thread(self.c.pushctl, "publish", *args)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)["id"]

    async def test_page_connects_shows_form_and_cli_messages_and_rejoins_a_restarted_pusher(self):
        b = self.b
        await b.request({"cmd": "open", "url": self.demo_url + "/?user=alice"})
        await b.request({"cmd": "waitState", "state": "connected"})
        self.assertEqual((await b.request({"cmd": "text", "selector": "#state"}))["text"], "connected")
        self.assertEqual((await b.request({"cmd": "text", "selector": "#user"}))["text"], "alice")

        # 1. The page's form, to the user (the default target is the page's user).
        await b.request({"cmd": "fill", "selector": "#topic", "value": "from-page"})
        await b.request({"cmd": "fill", "selector": "#data", "value": '{"via":"form"}'})
        await b.request({"cmd": "click", "selector": "#send"})
        res = (await b.request({"cmd": "waitText", "selector": "#publish-result", "prefix": "202 "}))["text"]
        form_id = json.loads(res[4:])["id"]
        await b.request({"cmd": "waitCount", "count": 1})

        # 2. The page's form, to everyone.
        await b.request({"cmd": "select", "selector": "#target", "value": "broadcast"})
        await b.request({"cmd": "fill", "selector": "#topic", "value": "news"})
        await b.request({"cmd": "fill", "selector": "#data", "value": "to everyone"})
        await b.request({"cmd": "fill", "selector": "#publish-result", "value": ""})
        await b.request({"cmd": "click", "selector": "#send"})
        res = (await b.request({"cmd": "waitText", "selector": "#publish-result", "prefix": "202 "}))["text"]
        bcast_id = json.loads(res[4:])["id"]
        await b.request({"cmd": "waitCount", "count": 2})

        # 3. pushctl publish.
        cli_id = await self.pushctl_publish("--to", "alice", "--topic", "from-cli", '"hello from pushctl"')
        await b.request({"cmd": "waitCount", "count": 3})

        # 4. The pusher dies; a message published meanwhile is stored; the
        # pusher comes back and the page reconnects by itself.
        n_states = len((await b.request({"cmd": "states"}))["states"])
        port = self.restart_pusher(kill=True)
        await b.request({"cmd": "waitState", "state": "disconnected:1006", "after": n_states})
        away_id = await self.pushctl_publish("--to", "alice", "--topic", "while-away", '{"n":4}')
        self.start_pusher_again(port)
        await b.request({"cmd": "waitState", "state": "connected", "after": n_states, "timeout": 60000})
        msgs = (await b.request({"cmd": "waitCount", "count": 4}))["messages"]

        self.assertEqual([(m["id"], m["topic"], m["data"]) for m in msgs], [
            (form_id, "from-page", '{"via":"form"}'),
            (bcast_id, "news", "to everyone"),
            (cli_id, "from-cli", "hello from pushctl"),
            (away_id, "while-away", '{"n":4}'),
        ])
        self.assertTrue(all(m["time"] for m in msgs))
        self.assertEqual((await b.request({"cmd": "text", "selector": "#state"}))["text"], "connected")

        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "demo_page.png")
        await b.request({"cmd": "screenshot", "path": shot})
        self.assertGreater(os.path.getsize(shot), 10000)
        print(f"screenshot: {shot}")
