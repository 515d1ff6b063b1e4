"""Render received Adaptive Cards to PNG with the official JS renderer in headless Chromium,
so a person can see what on-call would see in Teams without a tenant."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RENDERER = REPO / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.min.js"
# Teams renders a markdown subset in TextBlocks and facts; the JS renderer needs a processor.
MARKDOWN = REPO / "node_modules" / "markdown-it" / "dist" / "markdown-it.min.js"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=3000",
)  # fmt: skip

# Close to Teams' light theme: Segoe-like font, attention/warning colours, compact spacing.
HOST_CONFIG = {
    "fontFamily": "'Segoe UI', 'Helvetica Neue', Arial, sans-serif",
    "containerStyles": {
        "default": {
            "backgroundColor": "#FFFFFF",
            "foregroundColors": {
                "default": {"default": "#242424", "subtle": "#616161"},
                "attention": {"default": "#C4314B", "subtle": "#C4314B"},
                "warning": {"default": "#835B00", "subtle": "#835B00"},
                "good": {"default": "#237B4B", "subtle": "#237B4B"},
                "accent": {"default": "#5B5FC7", "subtle": "#5B5FC7"},
            },
        }
    },
    "actions": {"actionsOrientation": "horizontal", "maxActions": 6},
}

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; padding: 16px; background: #f5f5f5; font-family: 'Segoe UI', Arial, sans-serif; }}
#card {{ width: 560px; border-radius: 6px; box-shadow: 0 1px 3px rgba(0,0,0,.2); overflow: hidden; }}
.ac-pushButton {{ border: 1px solid #d1d1d1; background: #fff; border-radius: 4px; padding: 6px 10px; }}
</style></head><body><div id="card"></div>
<script>{renderer}</script>
<script>{markdown}</script>
<script>
// Teams links bare hosts, addresses and URLs in card text: so does this page, with linkify-it
// made keener than its defaults (any TLD the tests use, bare IPv4 hosts), so a card that shows
// no link here shows none in Teams for the same reason.
const md = window.markdownit({{html: false, linkify: true}});
md.linkify.set({{fuzzyIP: true}}).tlds(["example", "test", "invalid", "localhost"], true);
window.linkifier = md.linkify;
AdaptiveCards.AdaptiveCard.onProcessMarkdown = (text, result) => {{
  result.outputHtml = md.renderInline(text);
  result.didProcess = true;
}};
const card = new AdaptiveCards.AdaptiveCard();
card.hostConfig = new AdaptiveCards.HostConfig({host_config});
card.parse({card});
document.getElementById("card").appendChild(card.render());
</script></body></html>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def card_page(card: dict[str, Any]) -> str:
    """An HTML page that draws `card` (the AdaptiveCard, not the message) into `#card` with the
    Adaptive Cards JS renderer and markdown-it, links detected as Teams detects them. The page
    keeps the link detector as `window.linkifier`, to check text after rendering."""
    for script in (RENDERER, MARKDOWN):
        if not script.exists():
            raise RuntimeError(f"{script} is missing: run `make install` (npm ci)")
    # `</` cannot appear inside the JSON, so no value can close the script element early.
    card_json = json.dumps(card).replace("</", "<\\/")
    return PAGE.format(
        renderer=RENDERER.read_text(encoding="utf-8"),
        markdown=MARKDOWN.read_text(encoding="utf-8"),
        host_config=json.dumps(HOST_CONFIG),
        card=card_json,
    )


def render_card(card: dict[str, Any], png: Path, height: int = 1400) -> Path:
    """Write `png` showing the card as the Adaptive Cards JS renderer draws it."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("chromium is not installed: run `make install-browser` (apt-get install chromium)")
    page = card_page(card)
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="card-") as scratch:
        html = Path(scratch) / "card.html"
        html.write_text(page, encoding="utf-8")
        subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={scratch}/profile", f"--window-size=600,{height}",
             f"--screenshot={png.resolve()}", html.as_uri()],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    return png
