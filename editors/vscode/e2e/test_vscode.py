"""The GLM extension in a real VS Code (code-server) in a real browser, driven as a user would.

The steps share one VS Code window and one glm-lsp server, and run in file order: each scripted
reply in replies.json is consumed by the request of the step that names it. Run by run.sh.
"""

from __future__ import annotations

import re

from conftest import MODEL_WAIT_MS, WAIT_MS, Workbench
from playwright.sync_api import Locator, expect

BUSY = ".codicon-sync.codicon-modifier-spin"
TPS = re.compile(r"GLM \d+(\.\d)? tok/s")
INSTRUCTION = (
    "Rename compute_total to order_total everywhere, and add shop/discounts.py with "
    "apply_discount(prices, tax_rate, percent) built on it."
)


def open_answer(b: Workbench, first_words: str) -> str:
    """The result notification's Open button, then the answer document's text."""
    toast = b.notification(first_words, MODEL_WAIT_MS)
    toast.get_by_role("button", name="Open").click()
    return b.wait_editor_text(r"## Reasoning")


def test_explain_from_the_command_palette(vscode: Workbench) -> None:
    b = vscode
    status = b.status_item()
    expect(status).to_have_text(re.compile(r"GLM"), timeout=MODEL_WAIT_MS)
    b.shot("01-workbench")
    b.open_file("shop/cart.py")
    b.select_lines(18, 19)  # def total(self) ... return compute_total(...)
    b.shot("02-function-selected")

    b.command("GLM: Explain")
    expect(status.locator(BUSY)).to_be_visible(timeout=WAIT_MS)
    b.shot("03-explain-busy")
    text = open_answer(b, "Cart.total returns the cart's price with tax")
    expect(b.active_tab()).to_contain_text("turn-1.md")
    assert "# GLM turn 1 · glm.explain" in text
    assert "It passes the item prices and the cart's tax rate" in text  # the reasoning
    expect(status.locator(BUSY)).to_have_count(0, timeout=WAIT_MS)
    expect(status).to_have_text(TPS, timeout=WAIT_MS)
    b.shot("04-explain-answer-document")
    b.clear_notifications()


def test_explain_from_the_light_bulb(vscode: Workbench) -> None:
    b = vscode
    b.close_all_editors()
    b.open_file("shop/cart.py")
    b.select_lines(18, 19)
    bulb = b.page.locator(".editor-group-container.active .lightBulbWidget.codicon")
    expect(bulb).to_be_visible(timeout=WAIT_MS)
    bulb.click()
    menu = b.page.locator(".action-widget").filter(visible=True)
    expect(menu).to_contain_text("GLM: Explain", timeout=WAIT_MS)
    b.shot("05-light-bulb-actions")
    focused = menu.locator(".monaco-list-row.focused")
    for _ in range(5):  # the keyboard, as the rows sit under group headers
        if "GLM: Explain" in (focused.all_inner_texts() or [""])[0]:
            break
        b.page.keyboard.press("ArrowDown")
    expect(focused).to_contain_text("GLM: Explain", timeout=WAIT_MS)
    b.page.keyboard.press("Enter")
    text = open_answer(b, "From the light bulb")
    expect(b.active_tab()).to_contain_text("turn-2.md")
    assert "Asked again from the light bulb" in text
    b.shot("06-light-bulb-answer-document")
    b.clear_notifications()


def test_refactor_in_the_refactor_preview(vscode: Workbench) -> None:
    b = vscode
    b.close_all_editors()
    root = b.root
    b.open_file("shop/pricing.py")
    b.command("GLM: Refactor…")
    b.quick_input().fill(INSTRUCTION)
    b.shot("07-refactor-instruction")
    b.page.keyboard.press("Enter")

    preview = b.page.locator(".bulk-edit-panel")
    expect(preview).to_be_visible(timeout=MODEL_WAIT_MS)
    rows = preview.locator(".monaco-list-row")
    for name in ("pricing.py", "cart.py", "discounts.py"):
        expect(rows.filter(has_text=name).first).to_be_visible(timeout=WAIT_MS)
    b.shot("08-refactor-preview")

    def checkbox(name: str) -> Locator:
        return rows.filter(has_text=name).first.locator("input[type=checkbox], .monaco-checkbox")

    # Changes that need confirmation start unchecked in VS Code: take every file, then leave the
    # new module out again, so only the rename lands.
    for name in ("pricing.py", "cart.py", "discounts.py"):
        checkbox(name).first.click()
        expect(checkbox(name).first).to_be_checked(timeout=WAIT_MS)
    checkbox("discounts.py").first.click()
    expect(checkbox("discounts.py").first).not_to_be_checked(timeout=WAIT_MS)
    b.shot("09-refactor-preview-one-unchecked")
    preview.get_by_role("button", name="Apply").click()

    b.notification("GLM applied 2 of 3 changes (left discounts.py)", MODEL_WAIT_MS)
    b.shot("10-refactor-applied")
    pricing = (root / "shop" / "pricing.py").read_text()
    cart = (root / "shop" / "cart.py").read_text()
    assert "def order_total(" in pricing and "compute_total" not in pricing
    assert "import order_total" in cart and "return order_total(" in cart
    assert not (root / "shop" / "discounts.py").exists()
    b.clear_notifications()


def test_cancel_mid_generation(vscode: Workbench) -> None:
    b = vscode
    b.close_all_editors()
    status = b.status_item()
    b.open_file("shop/cart.py")
    b.select_lines(18, 19)
    b.command("GLM: Explain")  # the last, long scripted reply
    expect(status.locator(BUSY)).to_be_visible(timeout=WAIT_MS)
    deadline_text = "step 3: item 21"
    expect(b.page.locator(".part.panel .view-lines").first).to_contain_text(
        deadline_text, timeout=MODEL_WAIT_MS
    )
    b.shot("11-generating")
    b.command("GLM: Cancel")
    b.notification("GLM: request cancelled.")
    expect(status.locator(BUSY)).to_have_count(0, timeout=WAIT_MS)
    b.shot("12-cancelled")
    output = b.output_text()
    assert "✖ glm.explain cancelled" in output and "Done." not in output
    b.clear_notifications()


def test_show_thinking(vscode: Workbench) -> None:
    b = vscode
    b.command("GLM: Show Thinking")
    b.wait_editor_text(r"# GLM preserved thinking")
    expect(b.active_tab()).to_contain_text("thinking.md")
    b.shot("13-show-thinking")
    text = b.whole_editor_text()
    assert "## Turn 1 · glm.explain" in text
    assert "## Turn 3 · glm.refactor" in text
    assert "Let me find every use first." in text  # the refactor's reasoning, byte for byte
