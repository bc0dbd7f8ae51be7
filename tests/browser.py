"""A real headless Chromium for the HTML tests: found on PATH or installed from Debian (as root), and a page
loaded in it with a probe that reports console errors and each image's natural size."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  __errors.push("error: " + (e.message || (e.target && (e.target.src || e.target.tagName)) || "?").slice(0, 200));
}, true);
(function () { var ce = console.error; console.error = function () {
  __errors.push("console.error: " + Array.prototype.join.call(arguments, " ")); ce.apply(console, arguments); }; })();
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, width: i.naturalWidth, height: i.naturalHeight}; });
  var pre = document.createElement("pre"); pre.id = "probe";
  pre.textContent = JSON.stringify({images: images, errors: __errors});
  document.body.appendChild(pre);
});
</script>"""


def find_or_install() -> str:
    """Chromium's path; installed with apt-get where it is missing and this is root (minutes), else skip."""
    names = ("chromium", "chromium-browser")
    found = next(filter(None, map(shutil.which, names)), None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium on PATH, and apt-get is not available as root to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for steps in ((["apt-get", "install", "-y", "chromium"],),
                  (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"])):
        for step in steps:
            try:
                done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                pytest.skip(f"{' '.join(step)} took over 15 minutes")
            log.append(f"{' '.join(step)}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
            if done.returncode:
                break
        found = next(filter(None, map(shutil.which, names)), None)
        if found:
            return found
    pytest.skip("could not install chromium: " + " | ".join(log))


def load_in_browser(page: Path, tmp: Path, chromium: str) -> dict:
    """{"images": [{alt, width, height}], "errors": [...]} for `page` loaded from a folder away from its own
    (anything not embedded cannot load), with every host name unresolvable (no network)."""
    text = Path(page).read_text(encoding="utf-8")
    probe = tmp / "browser" / "probe.html"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(text.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    command = [chromium, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
               "--disable-extensions", "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND",
               f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no probe in the dumped DOM; stderr: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))
