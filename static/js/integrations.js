// The agent builder's connection settings (templates/agents/agent_form.html): an integration's
// block shows while one of its tools is ticked, and ticking a tool ticks the scopes it needs.
// Without script every block is still submitted; the server keeps only those of ticked tools and
// says which scope a ticked tool is missing.
(function () {
  "use strict";

  function toolBoxes() {
    return Array.from(document.querySelectorAll('input[name="tools"][data-integration]'));
  }

  function refresh() {
    const active = new Set(toolBoxes().filter((box) => box.checked).map((box) => box.dataset.integration));
    document.querySelectorAll("[data-integration-setting]").forEach((block) => {
      block.hidden = !active.has(block.dataset.integrationSetting);
    });
  }

  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!box.matches || !box.matches('input[name="tools"][data-integration]')) return;
    if (box.checked) {
      const block = document.querySelector(`[data-integration-setting="${CSS.escape(box.dataset.integration)}"]`);
      const needed = (box.dataset.scopes || "").split(" ").filter(Boolean);
      if (block) {
        needed.forEach((scope) => {
          const input = block.querySelector(`input[data-scope="${CSS.escape(scope)}"]`);
          if (input) input.checked = true;
        });
      }
    }
    refresh();
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", refresh);
  } else {
    refresh();
  }
})();
