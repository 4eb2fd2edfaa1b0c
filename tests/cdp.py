"""A tiny Chrome DevTools Protocol client for the browser tests.

It talks to headless Chromium over ``--remote-debugging-pipe``: Chromium reads
JSON commands from file descriptor 3 and writes replies and events to file
descriptor 4, each message ending in a NUL byte.  That needs no websocket
library and no port to discover or to race for.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time

# Puts Chromium's pipe ends on fd 3 and 4, then execs Chromium (no preexec_fn: we have threads).
TRAMPOLINE = ("import os, sys; r, w = map(int, sys.argv[1:3]); os.dup2(r, 3); os.dup2(w, 4); "
              "os.close(r); os.close(w); os.execvp(sys.argv[3], sys.argv[3:])")
FLAGS = ("--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--disable-background-networking", "--disable-sync",
         "--disable-component-update", "--disable-default-apps", "--no-first-run",
         "--no-default-browser-check", "--mute-audio", "--window-size=1280,1024")


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process; ``Tab(browser)`` opens a page to drive."""

    def __init__(self, executable, profile_dir, log_path, timeout=30.0):
        self.timeout = timeout
        chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, chrome_w = os.pipe()
        # Chromium's ends, moved above 9 so that the trampoline's dup2 to 3 and 4 clobbers nothing.
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (chrome_r, chrome_w)]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TRAMPOLINE, *map(str, ends), executable, *FLAGS,
             f"--user-data-dir={profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, pass_fds=ends)
        for fd in (chrome_r, chrome_w, *ends):
            os.close(fd)
        self._next_id, self._replies, self._closed = 0, {}, False
        self.events: list[dict] = []                    # every event, in arrival order
        self.cond, self._write_lock = threading.Condition(), threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.version = self.send("Browser.getVersion")
        except CDPError:
            self.close()
            raise

    def _read(self):
        buf = b""
        while chunk := os.read(self._from_chrome, 1 << 16):
            *messages, buf = (buf + chunk).split(b"\0")
            with self.cond:
                for msg in map(json.loads, messages):
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    elif msg["method"] != "Network.dataReceived":     # many, and unused
                        self.events.append(msg)
                self.cond.notify_all()
        os.close(self._from_chrome)
        with self.cond:
            self._closed = True
            self.cond.notify_all()

    def send(self, method, params=None, session=None, timeout=None):
        """Send one command and return its result; raises CDPError on an error reply."""
        with self._write_lock:
            self._next_id += 1
            msg_id = self._next_id
            msg = {"id": msg_id, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            try:
                os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
            except OSError as exc:
                raise CDPError(f"{method}: browser gone ({exc})") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        with self.cond:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    why = "browser exited" if self._closed else "timeout"
                    raise CDPError(f"{method}: no reply ({why})")
                self.cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, predicate, timeout=None, start=0):
        """The first event from index ``start`` on that satisfies ``predicate``, or None."""
        deadline = time.monotonic() + (timeout or self.timeout)
        with self.cond:
            while not self._closed and (left := deadline - time.monotonic()) > 0:
                found = next((e for e in self.events[start:] if predicate(e)), None)
                if found:
                    return found
                self.cond.wait(left)
        return None

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except CDPError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        self._log.close()


class Tab:
    """One page (target) with Page, Runtime, Log and Network events enabled."""

    def __init__(self, browser: Browser):
        self.browser = browser
        self.target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget",
                                    {"targetId": self.target, "flatten": True})["sessionId"]
        self.first_event = len(browser.events)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def send(self, method, params=None, timeout=None):
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def events(self, *methods):
        with self.browser.cond:
            return [e for e in self.browser.events[self.first_event:] if e.get("sessionId")
                    == self.session and (not methods or e["method"] in methods)]

    def goto(self, url, timeout=30.0):
        """Navigate and wait for the load event; raises CDPError when it does not come."""
        start = len(self.browser.events)
        reply = self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise CDPError(f"navigating to {url}: {reply['errorText']}")
        if not self.browser.wait_for(lambda e: e.get("sessionId") == self.session
                                     and e["method"] == "Page.loadEventFired", timeout, start):
            raise CDPError(f"{url}: no load event within {timeout:.0f} s")

    def js(self, expression, timeout=None):
        """Evaluate ``expression`` (awaiting a promise) and return its JSON value."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                               "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in reply:
            raise CDPError(f"{expression[:80]!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def close(self):
        self.browser.send("Target.closeTarget", {"targetId": self.target})
